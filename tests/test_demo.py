"""The demo page without a browser or a server: what it computes (the classes found and their
shares, the overlay at an opacity, the refusal of a non-image) and ``setr demo``'s refusals, which
come before the model loads and before Gradio is imported. tests/test_demo_browser.py drives the
page itself."""

from __future__ import annotations

import importlib.util
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr.cli import build_parser, main
from setr.integrations import demo_page
from setr.integrations.demo_page import NotAnImage, blend, class_shares, read_upload, segment

from .conftest import small

ROOT = Path(__file__).resolve().parents[1]
TINY = small(depth=2, narrow_heads=True, decode_index=1)


@pytest.fixture(scope="module")
def tiny() -> setr.SETR:
    return setr.create_model("setr_naive_vitl_cityscapes", **TINY).eval()


@pytest.fixture
def no_gradio(monkeypatch):
    """Fail any use of Gradio: the refusals must all come first."""

    def refuse():
        raise AssertionError("Gradio was imported")

    monkeypatch.setattr(demo_page, "_gradio", refuse)


def photo(height: int = 37, width: int = 53) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, height, width), dtype=np.uint8))


def test_class_shares_name_each_class_found_and_sum_to_one(tiny):
    mask = torch.zeros(10, 10, dtype=torch.uint8)
    mask[:, :3] = 13  # car, 30 %
    mask[0, 9] = 18  # bicycle, 1 %
    info = tiny.info
    found = class_shares(mask, tiny.num_classes, info.class_names, info.palette)
    assert [(c.index, c.name, c.share) for c in found] == [(0, "road", 0.69), (13, "car", 0.3), (18, "bicycle", 0.01)]
    assert found[1].colour == (0, 0, 142) == tuple(info.palette[13])
    assert sum(c.share for c in found) == pytest.approx(1.0)
    assert [c.name for c in class_shares(mask, 19)][:2] == ["class 0", "class 13"]  # a model without names


def test_segment_summarises_what_the_predictor_finds(tiny):
    predictor = setr.Predictor(tiny, crop=32, stride=21, test_scale=None)
    image = photo()
    mask, summary = segment(predictor, image)
    expected = predictor(image).mask
    assert torch.equal(mask, expected) and summary.size == (37, 53)
    counts = torch.bincount(expected.reshape(-1).long(), minlength=19)
    assert {c.name: c.share for c in summary.classes} == {
        tiny.info.class_names[i]: int(counts[i]) / expected.numel() for i in torch.nonzero(counts)[:, 0]
    }
    assert sum(c.share for c in summary.classes) == pytest.approx(1.0)
    assert summary.precision == "fp32" and summary.device == "cpu" and summary.seconds > 0
    assert summary.protocol.startswith("sliding window 32/21, no test resize") and "single-scale" in summary.protocol
    text = demo_page.summary_markdown(summary)
    assert f"{len(summary.classes)} classes found" in text and "fp32 on cpu" in text
    legend = demo_page.legend_html(summary.classes)
    assert legend.count('class="setr-class"') == len(summary.classes)


def test_the_opacity_slider_reblends_without_the_network(tiny, monkeypatch):
    image = photo()
    mask = torch.randint(0, 19, (37, 53), dtype=torch.uint8)
    monkeypatch.setattr(tiny, "forward", lambda *a, **k: pytest.fail("the network ran"))
    assert np.array_equal(np.asarray(blend(image, mask, tiny, 0.0)), image.permute(1, 2, 0).numpy())
    colours = np.asarray(tiny.info.palette, dtype=np.uint8)[mask.long().numpy()]
    assert np.array_equal(np.asarray(blend(image, mask, tiny, 1.0)), colours)
    half = np.asarray(blend(image, mask, tiny, 0.5), dtype=float)
    assert np.abs(half - (image.permute(1, 2, 0).numpy() + colours.astype(float)) / 2).max() <= 0.5
    assert blend(image, mask, tiny, 0.3).size == (53, 37)


def test_a_non_image_upload_is_refused_in_one_line(tmp_path, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(NotAnImage) as refused:
        read_upload(notes)
    message = str(refused.value)
    assert message.startswith("notes.txt is not an image this page can read: upload a photo (JPG, PNG")
    assert "\n" not in message and str(tmp_path) not in message
    Image.new("RGB", (5, 4)).save(tmp_path / "ok.png")
    assert read_upload(tmp_path / "ok.png").shape == (3, 4, 5)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # the page reads twice this: 10 pixels
    with pytest.raises(NotAnImage, match=r"^ok.png: 5x4 = 20 pixels is more than max_pixels=10"):
        read_upload(tmp_path / "ok.png")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "setr_pup_vitl_citiscapes"], "unknown model 'setr_pup_vitl_citiscapes'"),
        (["--model", "setr_pup_vitl", "--port", "70000"], "a port is a number from 1 to 65535"),
        (["--model", "setr_pup_vitl", "--port", "web"], "expected a port number, got 'web'"),
        (["--model", "setr_pup_vitl", "--batch-size", "0"], "--batch-size 0"),
        (["--model", "setr_pup_vitl", "--device", "cuda:7"], "--device"),
    ],
)
def test_setr_demo_refuses_bad_arguments_in_one_line_before_gradio(argv, message, no_gradio, capsys):
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("setr: error:") and err.count("\n") == 1


def test_setr_demo_refuses_a_port_in_use(no_gradio, capsys, monkeypatch):
    monkeypatch.setattr(setr, "create_model", lambda *a, **k: pytest.fail("the model loaded"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["demo", "--model", "setr_pup_vitl", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: another program uses it; pick another with --port N" in err and err.count("\n") == 1


def test_setr_demo_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    monkeypatch.setattr(setr, "create_model", lambda *a, **k: pytest.fail("the model loaded"))
    assert main(["demo", "--model", "setr_pup_vitl"]) == 2
    assert capsys.readouterr().err == 'setr: error: setr demo needs Gradio: pip install "setr-pytorch[demo]"\n'


@pytest.mark.slow  # imports Gradio (seconds)
def test_setr_demo_serves_the_folder_it_is_given(tmp_path, tiny, monkeypatch, capsys):
    tiny.save_pretrained(tmp_path / "tiny")
    served = {}

    def launch(page, host=None, port=None, block=True):
        served.update(page=page, host=host, port=port, block=block)
        return "http://127.0.0.1:7860/"

    monkeypatch.setattr(demo_page, "launch", launch)
    assert main(["demo", "--model", str(tmp_path / "tiny"), "--device", "cpu", "--port", "7861", "--host"]) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 7861 and served["block"]
    import gradio

    assert isinstance(served["page"], gradio.Blocks) and not served["page"].analytics_enabled


@pytest.mark.slow
def test_importing_setr_and_its_command_line_leaves_gradio_alone():
    code = "import sys, setr, setr.cli, setr.integrations.demo_page; print('gradio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


def test_the_space_app_runs_offline_without_a_model(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "examples" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.chdir(tmp_path)  # no runs/train/final here
    model, notice = app.load(None)
    assert notice == app.UNTRAINED and "Random weights" in notice
    assert model.info.class_names[:2] == ("background", "stripes") and model.num_classes == 7
    setr.create_model("setr_naive_vitl", **TINY).save_pretrained(tmp_path / "runs" / "train" / "final")
    model, notice = app.load(None)
    assert notice is None and model.config.embed_dim == TINY["embed_dim"]


def test_every_setr_demo_line_of_the_docs_parses():
    """docs/demo.md shows its commands in ``shell`` blocks (a page serves until Ctrl-C, so the docs
    run cannot run them); the real parser still reads every one."""
    lines = [line.split("#")[0] for line in (ROOT / "docs" / "demo.md").read_text().splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("setr demo")]
    assert len(commands) >= 2
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.command == "demo"

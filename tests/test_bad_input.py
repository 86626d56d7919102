"""Bad input gets a clear error before any expensive work, and a user's files are never lost.

The first tests follow the rows of the "nothing lost, nothing silent" table (one test each); the
rest cover more images, checkpoints, datasets, command-line arguments and interrupted writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import setr
from setr.cli import main
from setr.convert import ConversionError
from setr.data.io import ImageReadError, read_image
from setr.files import OutputExistsError, atomic_write
from setr.inference import Predictor, to_rgb_tensor

from .conftest import small

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "examples" / "train.py"
TINY = small(depth=2, decode_index=1, aux_indices=[0])
TINY_OVERRIDES = [arg for k, v in TINY.items() for arg in ("--override", f"{k}={json.dumps(v)}")]
MODEL = "setr_pup_vitl_cityscapes"


def tiny_model(**extra) -> setr.SETR:
    return setr.create_model(MODEL, **{**TINY, **extra}).eval()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``setr ARGS`` through ``setr.cli.main`` in this process (what the console script calls), with
    its exit status and what it printed: an uncaught exception fails the test with its traceback."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd or ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["setr", *args], code, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("setr: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model().state_dict(), path)
    return path


# ------------------------------------------------------------------------- the table's rows
@pytest.mark.slow
def test_row1_train_refuses_an_out_that_holds_a_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run's checkpoint")
    (out / "log.csv").write_text("iteration\n60\n")
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--out", str(out), "--iters", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "holds a run (last.pt, log.csv)" in result.stderr and "--resume auto" in result.stderr
    assert (out / "last.pt").read_bytes() == b"an earlier run's checkpoint"
    assert (out / "log.csv").read_text() == "iteration\n60\n"


def test_row2_convert_refuses_to_replace_a_model_and_keeps_a_readme(tmp_path, checkpoint):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    (out / "README.md").write_text("my notes")
    result = run_cli("convert", "--model", MODEL, "--checkpoint", str(checkpoint), "--out", str(out), *TINY_OVERRIDES)
    assert_one_line_error(result, "config.json already exist", "--force")
    assert (out / "config.json").read_text() == '{"mine": true}'
    with pytest.warns(UserWarning, match="README.md already exists and was kept"):
        setr.zoo.convert_checkpoint(MODEL, checkpoint, out, force=True, **TINY)
    assert json.loads((out / "config.json").read_text())["embed_dim"] == 32
    assert (out / "README.md").read_text() == "my notes"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files are left"


def test_row3_sixteen_bit_png_reads_as_the_official_pipeline_does(tmp_path):
    values = np.array([[0, 255, 256, 32768], [40000, 65535, 511, 4096]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    image = read_image(path)
    expected = torch.from_numpy((values >> 8).astype(np.uint8))
    assert image.shape == (3, 2, 4)
    assert all(torch.equal(image[c], expected) for c in range(3))


def test_row4_nan_or_inf_images_are_refused():
    model = tiny_model()
    image = torch.rand(3, 32, 40) * 255
    image[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        Predictor(model)(image)
    with pytest.raises(ValueError, match="NaN or infinite"), torch.no_grad():
        model(torch.full((1, 3, 32, 32), float("inf")))
    array = np.full((8, 8, 3), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_rgb_tensor(array)


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_row5_an_empty_batch_gives_an_empty_result_everywhere(head):
    taps = dict(mla_indices=[0, 1, 1, 1]) if head == "mla" else dict(decode_index=1, aux_indices=[0])
    model = setr.SETR(head=head, img_size=32, embed_dim=32, depth=2, num_heads=2, num_classes=3, **taps).eval()
    empty = torch.zeros(0, 3, 40, 48)
    with torch.no_grad():
        for net in (model, setr.optimize_for_inference(model)):
            logits, aux = net(empty, return_aux=True)
            assert logits.shape == (0, 3, 40, 48) and all(a.shape == (0, 3, 40, 48) for a in aux)
    predictor = Predictor(model)
    assert predictor([]) == []
    assert predictor.network(empty).shape == (0, 3, 40, 48)
    assert Predictor(model, mode="whole").network(empty).shape == (0, 3, 40, 48)


def test_row6_predict_checks_its_outputs_before_loading_the_model(tmp_path, checkpoint):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"an earlier mask")
    result = run_cli("predict", str(image), "--out", str(out), "--model", MODEL, "--checkpoint", str(checkpoint))
    assert_one_line_error(result, "a.png already exist", "--force")
    assert (out / "a.png").read_bytes() == b"an earlier mask"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = run_cli("predict", str(image), "--out", str(blocker), "--model", MODEL, "--checkpoint", "nothere.pth")
    assert_one_line_error(result, "is a file, not a folder")  # before the checkpoint is even looked at


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=2.5), "SETR(num_classes=2.5): expected a positive integer"),
        (dict(num_classes="5"), "SETR(num_classes='5'): expected a positive integer"),
        (dict(depth="abc"), "SETR(depth='abc'): expected a positive integer"),
        (dict(qkv_bias=1), "SETR(qkv_bias=1): expected True or False"),
        (dict(aux_indices=[1.5]), "expected a list of non-negative integers"),
        (dict(drop_path_rate=1.5), "expected a number in [0, 1)"),
        (dict(head=3), "SETR(head=3)"),
    ],
)
def test_row7_config_values_are_type_checked_with_name_and_value(kwargs, message):
    with pytest.raises(TypeError) as error:
        setr.SETR(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["img_size", "num_classes", "embed_dim", "depth", "head_channels"])
def test_row7_sizes_must_be_positive(name):
    with pytest.raises(ValueError, match=rf"SETR\({name}=-16\): {name} must be at least 1"):
        setr.SETR(**{name: -16})


def test_row7_an_override_of_the_wrong_type_is_one_line_on_the_command_line(tmp_path, checkpoint):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    result = run_cli("predict", str(image), "--out", str(tmp_path / "o"), "--model", MODEL,
                     "--override", "depth=abc")  # fmt: skip
    assert_one_line_error(result, "SETR(depth='abc'): expected a positive integer")


def test_row8_folders_where_files_are_expected(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder without model.safetensors"):
        setr.create_model(MODEL, checkpoint_path=empty, **TINY)
    with pytest.raises(ImageReadError, match="a folder, not an image file"):
        Predictor(tiny_model())(empty)


def test_row9_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match="a model name is a string"):
        setr.create_model(None)


def test_row10_a_local_looking_path_never_goes_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "ck").mkdir()
    start = time.perf_counter()
    for name in ("ck/nothere", "./nothere", "a/b/c", str(tmp_path / "nothere")):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            setr.from_pretrained(name)
    assert time.perf_counter() - start < 2, "no network round trips"


def test_row11_an_mmseg_12_checkpoint_loads_with_an_explicit_choice(tmp_path):
    source = tiny_model()
    state = {k: v for k, v in source.state_dict().items() if k != "encoder.patch_embed.proj.bias"}
    mmseg_state = {
        k.replace("encoder.patch_embed.proj.", "backbone.patch_embed.projection."): v for k, v in state.items()
    }
    assert "backbone.patch_embed.projection.weight" in mmseg_state
    # (the rest of the mmseg key names are checked in test_convert_mmseg; here only the bias choice)
    from setr.convert.mmseg import convert_mmseg

    with pytest.raises(ConversionError, match="patch_bias=False"):
        convert_mmseg(mmseg_state, tiny_model().config.to_dict())
    without = tiny_model(patch_bias=False)
    assert without.encoder.patch_embed.proj.bias is None and without.config.patch_bias is False
    # a checkpoint that has the bias never loads into a model without one (never silently dropped)
    path = tmp_path / "with_bias.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with pytest.raises(ConversionError, match="not in the model: encoder.patch_embed.proj.bias"):
        setr.convert.load_checkpoint(without, path)


# ------------------------------------------------------------------------------- more images
def _saved(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_palette_grey_alpha_and_cmyk_images_read_as_rgb(tmp_path):
    palette = Image.new("P", (4, 3))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    rgb = read_image(_saved(palette, tmp_path / "p.png"))
    assert rgb[:, 0, 0].tolist() == [255, 0, 0] and rgb[:, 1, 1].tolist() == [0, 255, 0]
    grey_alpha = Image.new("LA", (4, 3), (77, 10))
    assert read_image(_saved(grey_alpha, tmp_path / "la.png"))[:, 2, 3].tolist() == [77, 77, 77]
    cmyk = Image.new("CMYK", (4, 3), (0, 255, 255, 0))  # pure red in CMYK
    assert read_image(_saved(cmyk, tmp_path / "c.jpg", quality=100))[:, 1, 1].tolist()[0] > 240


def test_exif_rotated_images_are_turned_upright(tmp_path):
    image = Image.new("RGB", (6, 2), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert read_image(path).shape == (3, 6, 2)


def test_float_and_32_bit_images_are_refused_with_the_reason(tmp_path):
    floating = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    with pytest.raises(ImageReadError, match="floating-point image has no fixed 0-255 scale"):
        read_image(_saved(floating, tmp_path / "f.tiff"))


def test_rgba_arrays_drop_alpha_and_empty_images_are_refused():
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_rgb_tensor(rgba).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="empty image"):
        to_rgb_tensor(np.zeros((0, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_rgb_tensor(torch.zeros(5, 8, 8))
    with pytest.raises(TypeError, match="unsupported image type"):
        to_rgb_tensor(42)


def test_not_an_image_file_is_named(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: cannot read as an image"):
        read_image(path)


# -------------------------------------------------------------------------- model inputs
def test_wrong_channel_count_and_rank_are_explained():
    model = tiny_model()
    for bad in (torch.zeros(1, 4, 32, 32), torch.zeros(3, 32, 32), np.zeros((1, 3, 32, 32))):
        with pytest.raises(ValueError, match=r"expects a normalised image batch of shape \(B, 3, H, W\)"):
            model(bad)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_of_another_model_size_says_what_to_check(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model().state_dict().items()}, str(path))
    with pytest.raises(ConversionError, match="shape mismatch"):
        setr.create_model(MODEL, checkpoint_path=path, **{**TINY, "embed_dim": 64})


def test_pretrained_and_checkpoint_together_are_refused(checkpoint):
    with pytest.raises(ValueError, match="either pretrained=True or checkpoint_path"):
        setr.create_model(MODEL, pretrained=True, checkpoint_path=checkpoint)


def test_from_pretrained_on_a_file_says_what_to_use(checkpoint):
    with pytest.raises(FileNotFoundError, match="is a file: from_pretrained takes a folder"):
        setr.from_pretrained(checkpoint)


# ------------------------------------------------------------------------------ datasets
def test_unknown_dataset_and_missing_root_are_one_line(tmp_path, checkpoint):
    result = run_cli("eval", "--dataset", "cityscapes", "--root", str(tmp_path / "nothere"), "--model", MODEL,
                     "--checkpoint", str(checkpoint), *TINY_OVERRIDES)  # fmt: skip
    assert_one_line_error(result, "--dataset cityscapes")


# ---------------------------------------------------------------------- command-line arguments
@pytest.mark.parametrize(
    "args, needle",
    [
        (["predict", "nothere.png", "--out", "o", "--model", MODEL], "no images to segment"),
        (["convert", "--model", MODEL, "--checkpoint", "nothere.pth", "--out", "o"], "checkpoint not found"),
        (["convert", "--model", "setr_pup_vitl_cityscape", "--checkpoint", __file__, "--out", "{tmp}/o"],
         "Did you mean: setr_pup_vitl_cityscapes"),
    ],
)  # fmt: skip
def test_command_line_mistakes_are_one_line(tmp_path, args, needle):
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], cwd=tmp_path)
    assert_one_line_error(result, needle)


def test_eval_refuses_to_replace_its_result_file(tmp_path, checkpoint):
    result_file = tmp_path / "result.json"
    result_file.write_text('{"mIoU": 0.77}')
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(str(i) for i in range(19)))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "a.png")
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--model", MODEL, "--checkpoint", str(checkpoint),
                 "--json", str(result_file), *TINY_OVERRIDES]) == 2  # fmt: skip
    assert result_file.read_text() == '{"mIoU": 0.77}'


@pytest.mark.slow
def test_train_resume_and_overwrite_mistakes(tmp_path):
    out = tmp_path / "run"
    for args, needle in (
        (["--resume", str(tmp_path / "nothere.pt")], "no such checkpoint"),
        (["--resume", "auto", "--overwrite"], "give one of them"),
    ):
        result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--out", str(out), *args],
                                capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
        assert result.returncode == 1 and needle in result.stderr and "Traceback" not in result.stderr


def test_overwrite_starts_afresh_without_stale_outputs(tmp_path):
    from setr.training import prepare_run_dir

    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "final" / "model.safetensors").write_bytes(b"old")
    (out / "last.pt").write_bytes(b"old")
    (out / "mine.txt").write_text("not a run file")
    with pytest.raises(OutputExistsError):
        prepare_run_dir(out)
    assert prepare_run_dir(out, overwrite=True) is None
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


# --------------------------------------------------------------------------- interrupted writes
def test_an_interrupted_atomic_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


@pytest.mark.slow
def test_killing_convert_mid_write_leaves_the_old_folder_intact(tmp_path):
    """A larger model, so the kill lands while the new weights are being written."""
    sizes = dict(embed_dim=256, depth=12, num_heads=4, img_size=64, decode_index=11, aux_indices=[])
    torch.manual_seed(0)
    model = setr.create_model(MODEL, **sizes).eval()
    old_checkpoint, checkpoint = tmp_path / "old.pth", tmp_path / "new.pth"
    torch.save(model.state_dict(), old_checkpoint)
    torch.save(setr.create_model(MODEL, **sizes).state_dict(), checkpoint)  # other weights
    out = tmp_path / "out"
    setr.zoo.convert_checkpoint(MODEL, old_checkpoint, out, **sizes)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    overrides = [arg for k, v in sizes.items() for arg in ("--override", f"{k}={json.dumps(v)}")]
    command = [sys.executable, "-m", "setr.cli", "convert", "--model", MODEL, "--checkpoint", str(checkpoint),
               "--out", str(out), "--force", *overrides]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".setr-save-") for p in out.iterdir()):
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before, "the old folder is intact"
    assert process.returncode == -signal.SIGKILL
    assert torch.equal(load_file(out / "model.safetensors")["decode_head.classifier.weight"],
                       model.decode_head.classifier.weight)  # fmt: skip
    # and the interrupted command can simply be run again, which clears the killed run's staging
    assert any(p.name.startswith(".setr-save-") for p in out.iterdir()), "the kill left its staging"
    setr.zoo.convert_checkpoint(MODEL, checkpoint, out, force=True, **sizes)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no staging is left behind"


def test_save_pretrained_into_a_file_path_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("a file")
    with pytest.raises(OSError):
        tiny_model().save_pretrained(target)
    assert target.read_text() == "a file"


def test_predict_output_written_atomically(tmp_path, checkpoint):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["predict", str(image), "--out", str(out), "--model", MODEL, "--checkpoint", str(checkpoint),
                 "--crop", "32", "--stride", "21", "--protocol", "test_scale=null", *TINY_OVERRIDES]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_overlay.jpg"]
    assert Image.open(io.BytesIO((out / "a.png").read_bytes())).size == (20, 20)


# ------------------------------------------------------------------------ more arguments
@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--crop", "32", "--stride", "64"], "need 0 < stride <= crop"),
        (["--protocol", "colour=red"], "unknown protocol fields ['colour']"),
    ],
)
def test_predict_argument_mistakes_are_one_line(tmp_path, checkpoint, capsys, extra, needle):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    code = main(["predict", str(image), "--out", str(tmp_path / "o"), "--model", MODEL, "--checkpoint",
                 str(checkpoint), *TINY_OVERRIDES, *extra])  # fmt: skip
    assert code == 2 and needle in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_it_is_one_line(tmp_path, checkpoint, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    assert main(["predict", str(image), "--out", str(tmp_path / "o"), "--model", MODEL, "--device", "cuda"]) == 2
    assert "--device cuda: this machine has no CUDA device; devices here: cpu" in capsys.readouterr().err


@pytest.mark.slow
def test_train_out_that_is_a_file(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--out", str(blocker)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 1 and "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr


def test_resuming_into_another_model_names_the_difference(tmp_path):
    from setr import training

    model = tiny_model()
    optimizer = training.build_optimizer(model, 0.01)
    scheduler = training.PolyLR(optimizer, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = training.save_training_checkpoint(tmp_path / "last.pt",
                                             training.training_state(model, optimizer, scheduler, scaler, 3))  # fmt: skip
    other = tiny_model(depth=3, decode_index=2)
    with pytest.raises(ValueError, match=r"differs in decode_index, depth"):
        training.restore_training_state(path, other, training.build_optimizer(other, 0.01), scheduler, scaler)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="not a readable training checkpoint"):
        training.restore_training_state(path, model, optimizer, scheduler, scaler)

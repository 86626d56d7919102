"""Images at the extremes: strips, decompression bombs, non-finite logits, and bounded memory on large images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr.data.io import ImageReadError, read_image
from setr.inference import Predictor
from setr.inference.resize import rescale_size

from .conftest import small


def ade20k_tiny() -> setr.SETR:
    """A 150-class model with the ADE20K protocol (test_scale (2048, 512), slide), tiny widths."""
    torch.manual_seed(0)
    return setr.create_model("setr_naive_vitl_ade20k", **small(decode_index=1, narrow_heads=True)).eval()


def png_header(path: Path, width: int, height: int) -> Path:
    """A grey PNG that declares ``width x height`` but holds one compressed empty row: PIL's size check
    reads the header, so a bomb-sized declaration costs a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (3, 30000), (30000, 3)])
def test_strips_segment_at_their_own_size(shape):
    model = ade20k_tiny()
    predictor = Predictor(model, crop=64, stride=43)  # the zoo's test_scale (2048, 512) stays
    image = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    seg = predictor(image)
    assert tuple(seg.mask.shape) == shape and seg.mask.dtype == torch.int64
    assert 0 <= int(seg.mask.min()) and int(seg.mask.max()) < 150


def test_the_test_resize_never_gives_a_side_of_zero():
    # the official rule int(side * factor + 0.5) rounds a 1-pixel side scaled by 0.41 to 0 rows
    assert rescale_size(1, 5000, (2048, 512)) == (1, 2048)
    assert rescale_size(30000, 3, (2048, 512)) == (2048, 1)
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)  # ordinary sizes as before


def test_a_strip_without_test_resize_segments():
    predictor = Predictor(ade20k_tiny(), crop=64, stride=64, test_scale=None)
    seg = predictor(torch.zeros(3, 3, 3000, dtype=torch.uint8))
    assert tuple(seg.mask.shape) == (3, 3000)


def test_a_decompression_bomb_is_refused_naming_the_file_and_the_limit(tmp_path):
    bomb = png_header(tmp_path / "bomb.png", 15000, 15000)
    with pytest.raises(ImageReadError, match=r"bomb\.png: 15000x15000 .*max_pixels=.*--max-pixels 225000000"):
        read_image(bomb)


def test_max_pixels_refuses_and_allows(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((200, 300, 3), 7, np.uint8)).save(path)
    with pytest.raises(ImageReadError, match=r"photo\.png: 300x200 = 60000 pixels .* max_pixels=59999"):
        read_image(path, max_pixels=59999)
    assert tuple(read_image(path, max_pixels=60000).shape) == (3, 200, 300)
    assert tuple(read_image(path).shape) == (3, 200, 300)
    # a declared size above PIL's own limit is read when max_pixels allows it (PIL's check is lifted)
    big = png_header(tmp_path / "big.png", 15000, 15000)
    with pytest.raises(ImageReadError, match="cannot read as an image"):  # past the size check: the data is short
        read_image(big, max_pixels=15000 * 15000)
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's global is restored


def test_non_finite_logits_are_refused():
    model = ade20k_tiny()
    with torch.no_grad():
        model.decode_head.classifier.bias[3] = float("nan")
    predictor = Predictor(model, crop=32, stride=32, test_scale=None)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        predictor(torch.zeros(3, 40, 40, dtype=torch.uint8))
    with torch.no_grad():
        model.decode_head.classifier.bias[3] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        predictor(torch.zeros(3, 40, 40, dtype=torch.uint8), ms_flip=True)


@pytest.mark.parametrize("source, size", [((40, 53), (301, 411)), ((64, 85), (150, 203)), ((90, 70), (45, 140))])
def test_the_banded_argmax_is_the_argmax_of_the_full_resize(source, size, monkeypatch):
    from setr.inference import resize as resize_module

    if resize_module._row_combiner(source, size) is None:
        pytest.skip("PyTorch's resize is not reproduced band by band on this machine (the plain path runs)")
    generator = torch.Generator().manual_seed(size[0])
    smooth = torch.randn(150, *source, generator=generator).cumsum(1).cumsum(2)  # a non-trivial, smooth map
    tied = torch.randint(0, 3, (150, *source), generator=generator).float()  # exact ties across classes and chunks
    monkeypatch.setattr(resize_module, "_chunked_argmax", None)  # the bands must be used
    for logits in (smooth, tied):
        expected = resize_module.resize_logits(logits[None], size)[0].argmax(0)
        for band_bytes in (30_000, 300_000):
            assert torch.equal(resize_module.resized_argmax(logits, size, band_bytes=band_bytes), expected)


def test_the_overlay_in_bands_equals_the_overlay_at_once(monkeypatch):
    from setr.inference import visualize

    image = torch.randint(0, 256, (3, 37, 29), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mask = torch.randint(0, 150, (37, 29), generator=torch.Generator().manual_seed(1))
    palette = visualize.palette_for(150)
    whole = np.asarray(visualize.overlay(image, mask, palette, 0.3))
    monkeypatch.setattr(visualize, "_BAND_PIXELS", 50)
    assert np.array_equal(np.asarray(visualize.overlay(image, mask, palette, 0.3)), whole)
    expected = np.clip(0.7 * image.permute(1, 2, 0).numpy() + 0.3 * palette[mask.numpy()] + 0.5, 0, 255)
    assert np.abs(whole.astype(int) - expected.astype(np.uint8).astype(int)).max() <= 1


_PEAK_WORKER = """
import sys, torch, setr
from setr.inference import Predictor
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
torch.manual_seed(0)
model = setr.create_model("setr_naive_vitl_ade20k", img_size=32, embed_dim=32, depth=2, num_heads=2,
                          head_channels=16, decode_index=1).eval()
image = torch.randint(0, 256, (3, 3000, 4000), dtype=torch.uint8)
predictor = Predictor(model)
predictor(torch.zeros(3, 512, 683, dtype=torch.uint8))  # the network input of 4000x3000: its own peak
base = status("VmRSS")
mask = predictor(image).mask
assert tuple(mask.shape) == (3000, 4000)
print(status("VmHWM") - base)
"""


@pytest.mark.slow
def test_a_large_image_is_predicted_in_memory_that_follows_the_network_input():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _PEAK_WORKER], capture_output=True, text=True, check=True)
    peak = int(result.stdout.strip().splitlines()[-1])
    # 12 MP, 150 classes seen at 512x683: measured 601 MiB, most of it the network's own windows (4 x 150
    # classes x 512 x 512 logits, the same for any source size), then the int64 mask (92 MiB) and the
    # bands; the whole-size resize of 16 classes at a time (before the bands) measured 1455 MiB
    assert peak < 800 * 2**20, f"peak {peak / 2**20:.0f} MiB above the predictor before the image"


def test_setr_predict_skips_an_image_over_max_pixels_and_reads_it_when_allowed(tmp_path):
    """--max-pixels reaches read_image: an image above it is skipped and named, the run goes on."""
    from setr.cli import main

    setr.create_model("setr_pup_vitl_cityscapes", img_size=32, embed_dim=32, depth=2, num_heads=2,
                      decode_index=1).save_pretrained(tmp_path / "model")  # fmt: skip
    Image.new("RGB", (60, 50), (10, 20, 30)).save(tmp_path / "big.png")
    Image.new("RGB", (20, 10), (10, 20, 30)).save(tmp_path / "small.png")
    args = ["predict", str(tmp_path / "big.png"), str(tmp_path / "small.png"), "--model", str(tmp_path / "model"),
            "--protocol", "mode=whole", "--protocol", "test_scale=null"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "limited"), "--max-pixels", "1000"]) == 1
    assert sorted(p.name for p in (tmp_path / "limited").glob("*.png")) == ["small.png"]
    assert main([*args, "--out", str(tmp_path / "allowed"), "--max-pixels", "3000"]) == 0
    assert sorted(p.name for p in (tmp_path / "allowed").glob("*.png")) == ["big.png", "small.png"]


def test_a_uint8_mask_holds_the_same_classes_and_a_too_small_dtype_is_refused():
    model = setr.create_model("setr_pup_vitl_ade20k", img_size=32, embed_dim=32, depth=2, num_heads=2,
                              decode_index=1).eval()  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    plain = setr.Predictor(model)(image).mask
    small = setr.Predictor(model, mask_dtype=torch.uint8)(image).mask
    assert plain.dtype == torch.int64 and small.dtype == torch.uint8 and torch.equal(small.long(), plain)
    with pytest.raises(TypeError, match="integer torch dtype"):
        setr.Predictor(model, mask_dtype=torch.float32)
    with pytest.raises(ValueError, match="150 classes do not fit"):
        setr.Predictor(model, mask_dtype=torch.int8)

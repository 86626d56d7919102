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

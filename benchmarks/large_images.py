"""Peak memory and time of ``setr predict`` on a 48-megapixel photo, one fresh process per case.

    python benchmarks/large_images.py                       # 8000x6000 JPEG, tiny-width 150-class model
    python benchmarks/large_images.py --vitl                # + the real ViT-L widths (minutes on a CPU)
    python benchmarks/large_images.py --src /tmp/old-setr   # measure another checkout (its setr/ folder)

The model is ``setr_pup_vitl_ade20k`` (150 classes, the ADE20K protocol: keep-ratio resize into
(2048, 512), so 8000x6000 is seen at 683x512, then 512x512 sliding windows), random weights; by
default with tiny widths (``create_model(name, embed_dim=64, depth=2, num_heads=2)``, so that a
case runs in seconds on two cores: the network input, and so what the network itself holds, is the
same 683x512 whatever the widths). Each case runs ``setr predict IMAGE --model FOLDER --out OUT
--device cpu`` in-process in a fresh Python, after ``import setr``, and reports the peak RSS
(``VmHWM`` of ``/proc/self/status``) above the RSS right after ``import setr``, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

TINY = dict(embed_dim=64, depth=2, num_heads=2)
NAME = "setr_pup_vitl_ade20k"

# The measured process: ``import setr`` first, then the command line in-process.
_WORKER = """
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
import setr, setr.cli
base = status("VmRSS")
start = time.perf_counter()
code = setr.cli.main(sys.argv[1:])
seconds = time.perf_counter() - start
print(json.dumps(dict(code=code, seconds=seconds, peak=status("VmHWM"), base=base, setr=setr.__file__)))
"""


def photo(path: Path, width: int, height: int) -> Path:
    """A photo-like JPEG: smooth colour gradients with some noise (quality 90)."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = [np.sin(6 * x + 3 * y + phase) * 100 + 128 for phase in (0.0, 1.0, 2.0)]
    image = np.stack(channels, axis=-1)
    image += rng.normal(0, 8, (height, 1, 1)).astype(np.float32)  # row noise: cheap, keeps the JPEG photo-sized
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def save_model(folder: Path, tiny: bool) -> None:
    import torch

    import setr

    torch.manual_seed(0)
    setr.create_model(NAME, **(TINY if tiny else {})).save_pretrained(folder)


def run_case(src: Path | None, image: Path, model: Path, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, "-c", _WORKER, "predict", str(image), "--model", str(model), "--out", str(out),
               "--force", "--device", "cpu", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["killed"])[-1]
        return dict(failed=f"exit {result.returncode}: {tail[:120]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="8000x6000", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--src", type=Path, help="a checkout whose setr/ to measure (default: this one)")
    parser.add_argument("--vitl", action="store_true", help="also the real ViT-L widths")
    parser.add_argument("--no-overlay", action="store_true", help="pass --no-overlay (masks only)")
    parser.add_argument("--compare-mask", type=Path, help="a mask PNG to compare the written mask with")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    extra = ["--no-overlay"] if args.no_overlay else []
    with tempfile.TemporaryDirectory(prefix="setr-bench-large-") as tmp:
        tmp = Path(tmp)
        image = photo(tmp / "photo.jpg", width, height)
        print(f"image: {width}x{height} JPEG, {image.stat().st_size / 2**20:.1f} MiB; setr from {args.src or 'here'}")
        for tiny in (True, False) if args.vitl else (True,):
            model = tmp / ("tiny" if tiny else "vitl")
            save_model(model, tiny)
            report = run_case(args.src, image, model, tmp / "out", extra)
            label = f"{NAME} {'tiny widths ' + str(TINY) if tiny else 'ViT-L'}"
            if "failed" in report:
                print(f"{label}: {report['failed']}")
                continue
            peak = (report["peak"] - report["base"]) / 2**30
            print(f"{label}: peak RSS {peak:.2f} GiB above import setr ({report['peak'] / 2**30:.2f} GiB in all), "
                  f"{report['seconds']:.1f} s, exit {report['code']}")  # fmt: skip
            mask = np.asarray(Image.open(tmp / "out" / "photo.png"))
            if args.compare_mask is not None and tiny:
                other = np.asarray(Image.open(args.compare_mask))
                print(f"  mask equal to {args.compare_mask}: {bool(np.array_equal(mask, other))}")
            keep = Path(tempfile.gettempdir()) / f"setr-bench-large-mask-{'tiny' if tiny else 'vitl'}.png"
            Image.open(tmp / "out" / "photo.png").save(keep)
            print(f"  mask kept as {keep}")


if __name__ == "__main__":
    main()

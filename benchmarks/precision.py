"""Inference precision on the CPU: fp32 optimised vs bf16 vs int8, one fresh process per run.

    python benchmarks/precision.py                          # PUP 768, MLA 512, Naive 768 (ViT-L)
    python benchmarks/precision.py --cases mla:512 --precisions fp32 bf16
    python benchmarks/precision.py --quick                  # a tiny model, seconds
    python benchmarks/precision.py --predict-rss            # + peak RSS of `setr predict` per precision

Each process loads the model from a ``save_pretrained`` folder (random weights, written once per
case into a temporary folder) with the precision's loading path (bf16: ``dtype=torch.bfloat16``),
applies ``optimize_for_inference(precision=...)``, runs a warm-up and ``--repeats`` forwards of one
image. It reports the median latency, the model's FLOP rate as a fraction of the matching 4096^3
matmul (fp32 ``mm`` for fp32, bf16 ``mm`` for bf16, ``torch._int_mm`` for int8) timed around each
run, and the process's peak RSS from start to the end of the warm-up (import, load and one forward;
the probe's operands are allocated after it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import QUICK, count_flops, model_spec, print_machine, table
from _worker import MatmulProbe, median_latency_and_fraction, probed_runs
from PIL import Image

import setr
from setr.dtypes import cpu_features

PRECISIONS = ("fp32", "bf16", "int8")
DATASETS = {768: "cityscapes", 512: "ade20k", 480: "pcontext"}


class Int8Probe(MatmulProbe):
    """Times one ``n x n`` int8 matmul (``torch._int_mm``, int32 out)."""

    def __init__(self, n: int) -> None:
        self.n, self.device, self.flops = n, "cpu", 2 * n**3
        self.a = torch.randint(-127, 127, (n, n), dtype=torch.int8)
        self.b = torch.randint(-127, 127, (n, n), dtype=torch.int8)
        self.out = torch.zeros(n, n, dtype=torch.int32)
        self.bytes = 2 * n * n + 4 * n * n

    def time(self) -> tuple[float, float]:
        start = time.perf_counter()
        torch._int_mm(self.a, self.b, out=self.out)
        return time.perf_counter() - start, 0.0


def probe_for(precision: str) -> MatmulProbe:
    if precision == "int8":
        return Int8Probe(4096)
    return MatmulProbe(4096, "cpu", torch.bfloat16 if precision == "bf16" else torch.float32)


def save_case(head: str, size: int, quick: bool, folder: Path) -> None:
    torch.manual_seed(0)
    if quick:
        model = setr.SETR(head=head, img_size=size, num_classes=19, **QUICK)
    else:
        model = setr.create_model(f"setr_{head}_vitl_{DATASETS[size]}")
    model.save_pretrained(folder)


def worker(folder: str, precision: str, size: int, repeats: int) -> dict:
    start = time.perf_counter()
    model = setr.create_model(folder, dtype=torch.bfloat16 if precision == "bf16" else None)
    network = setr.optimize_for_inference(model, precision=precision)
    del model
    x = torch.randn(1, 3, size, size, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    with torch.inference_mode():
        network(x)
        prepared = time.perf_counter() - start
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the probe's operands
        probe = probe_for(precision)
        seconds, probes = probed_runs(lambda: network(x), probe, repeats)
    return dict(precision=precision, seconds=seconds, probes=probes, mm_flops=probe.flops, prepare_seconds=prepared,
                peak_rss=peak_rss)  # fmt: skip


def peak_rss_of(command: list[str]) -> int:
    """Peak RSS (bytes) of ``command`` run as a child of a fresh process."""
    wrapper = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


def predict_rss(folder: Path, size: int, precisions: list[str]) -> list[list[str]]:
    """Peak RSS of ``setr predict`` on one ``size x size`` image per precision, and of ``import setr``."""
    image = folder.parent / "image.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(image)
    baseline = peak_rss_of([sys.executable, "-c", "import setr"])
    rows = [["import setr only", f"{baseline / 2**30:.2f} GiB", "-"]]
    setr_command = str(Path(sys.executable).parent / "setr")
    for precision in precisions:
        out = folder.parent / f"predict-{precision}"
        peak = peak_rss_of([setr_command, "predict", str(image), "--model", str(folder), "--precision", precision,
                            "--out", str(out), "--force", "--device", "cpu", "--batch-size", "1"])  # fmt: skip
        rows.append([f"setr predict --precision {precision}", f"{peak / 2**30:.2f} GiB",
                     f"{(peak - baseline) / 2**30:.2f} GiB"])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["pup:768", "mla:512", "naive:768"], help="HEAD:SIZE")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny model (seconds)")
    parser.add_argument("--predict-rss", action="store_true", help="also the peak RSS of `setr predict` per precision")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--worker", nargs=3, metavar=("FOLDER", "PRECISION", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder, precision, size = args.worker
        print(json.dumps(worker(folder, precision, int(size), args.repeats)))
        return
    print_machine("cpu")
    flags = sorted(cpu_features() & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16"})
    print(f"cpu flags: {' '.join(flags) or 'unknown'}; native bf16: {setr.fast.cpu_has_native_bf16()}")
    raw = []
    for case in args.cases:
        head, size_text = case.split(":")
        size = int(size_text)
        flops = count_flops(model_spec(head, size, args.quick), size, size)["total"]
        with tempfile.TemporaryDirectory(prefix="setr-bench-precision-") as tmp:
            folder = Path(tmp) / "model"
            save_case(head, size, args.quick, folder)
            rows, fp32 = [], None
            for precision in args.precisions:
                command = [sys.executable, __file__, "--worker", str(folder), precision, str(size),
                           "--repeats", str(args.repeats)]  # fmt: skip
                result = subprocess.run(command, capture_output=True, text=True,
                                        env=dict(os.environ, PYTHONWARNINGS="ignore"))  # fmt: skip
                if result.returncode != 0:
                    rows.append([precision, "failed: " + result.stderr.strip().splitlines()[-1][:80], "", "", "", ""])
                    continue
                report = json.loads(result.stdout.strip().splitlines()[-1])
                raw.append(dict(report, case=case))
                latency, fraction = median_latency_and_fraction(report, flops)
                fp32 = latency if precision == "fp32" else fp32
                rows.append([precision, f"{latency:.2f} s", f"{fraction:.0%}",
                             f"{report['peak_rss'] / 2**30:.2f} GiB", f"{report['prepare_seconds']:.0f} s",
                             f"{fp32 / latency:.2f}x" if fp32 else "-"])  # fmt: skip
            print(f"\n## {case} (batch 1, optimize_for_inference, {args.repeats} runs after a warm-up)\n")
            print(table(["precision", "latency (median)", "of its matmul", "peak RSS (from start)",
                         "load + warm-up", "speed-up vs fp32"], rows))  # fmt: skip
            if args.predict_rss:
                print(f"\n`setr predict` on one {size}x{size} image (slide, batch 1):\n")
                print(table(["process", "peak RSS", "minus import setr"],
                            predict_rss(folder, size, args.precisions)))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()

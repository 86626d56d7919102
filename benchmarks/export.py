"""Exported runtimes on the CPU: our eager optimised path vs ONNX Runtime (dynamic and static graphs)
vs an AOTInductor package vs ``torch.compile``, one fresh process per runtime.

    python benchmarks/export.py                          # PUP ViT-L at 768, MLA ViT-L at 512
    python benchmarks/export.py --cases pup:768 --runtimes eager onnx-dynamic onnx-static
    python benchmarks/export.py --quick                  # a tiny model, seconds

Each runtime reports the median forward latency of ``--repeats`` runs after a warm-up, the model's
FLOP rate as a fraction of a 4096^3 fp32 matmul timed before and after each run, the process's peak
RSS (model build, export and runs included), the export or compile time and the file size.
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

import torch
from _common import QUICK, count_flops, model_spec, print_machine, table
from _worker import MatmulProbe, median_latency_and_fraction, probed_runs

import setr
from setr.export import export_model, load_exported

RUNTIMES = ("eager", "onnx-dynamic", "onnx-static", "aoti", "compile")


def build(head: str, size: int, quick: bool) -> setr.SETR:
    torch.manual_seed(0)
    if quick:
        return setr.SETR(head=head, img_size=size, num_classes=19, **QUICK).eval()
    dataset = {768: "cityscapes", 512: "ade20k", 480: "pcontext"}[size]
    return setr.create_model(f"setr_{head}_vitl_{dataset}").eval()


def worker(runtime: str, head: str, size: int, quick: bool, repeats: int) -> dict:
    """One runtime in this process: returns the timings, memory and export figures."""
    model = build(head, size, quick)
    x = torch.randn(1, 3, size, size)
    folder = Path(tempfile.mkdtemp(prefix="setr-bench-export-"))
    start = time.perf_counter()
    file_bytes = None
    if runtime == "eager":
        network = setr.optimize_for_inference(model)
    elif runtime == "compile":
        network = torch.compile(model, dynamic=True)
    else:
        fmt = "aoti" if runtime == "aoti" else "onnx"
        path = folder / ("m.pt2" if fmt == "aoti" else "m.onnx")
        export_model(model, path, fmt, dynamic=runtime != "onnx-static", size=(size, size))
        file_bytes = path.stat().st_size + sum(p.stat().st_size for p in folder.glob("*.data"))
        del model
        network = load_exported(path)
    probe = MatmulProbe(4096, "cpu", torch.float32)
    with torch.inference_mode():
        network(x)  # warm-up (and compilation, for torch.compile)
        prepared = time.perf_counter() - start
        seconds, probes = probed_runs(lambda: network(x), probe, repeats)
    return dict(runtime=runtime, seconds=seconds, probes=probes, mm_flops=probe.flops, prepare_seconds=prepared,
                file_bytes=file_bytes, peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["pup:768", "mla:512"], help="HEAD:SIZE")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny model (seconds)")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        head, size = args.cases[0].split(":")
        print(json.dumps(worker(args.worker, head, int(size), args.quick, args.repeats)))
        return
    print_machine("cpu")
    raw = []
    for case in args.cases:
        head, size = case.split(":")
        flops = count_flops(model_spec(head, int(size), args.quick), int(size), int(size))["total"]
        rows, eager = [], None
        for runtime in args.runtimes:
            command = [sys.executable, __file__, "--worker", runtime, "--cases", case, "--repeats", str(args.repeats)]
            result = subprocess.run(command + (["--quick"] if args.quick else []), capture_output=True, text=True,
                                    env=dict(os.environ, PYTHONWARNINGS="ignore"))  # fmt: skip
            if result.returncode != 0:
                rows.append([runtime, "failed: " + result.stderr.strip().splitlines()[-1][:80], "", "", "", "", ""])
                continue
            report = json.loads(result.stdout.strip().splitlines()[-1])
            raw.append(dict(report, case=case))
            latency, fraction = median_latency_and_fraction(report, flops)
            eager = latency if runtime == "eager" else eager
            size_text = f"{report['file_bytes'] / 2**20:.0f} MiB" if report["file_bytes"] else "-"
            rows.append([runtime, f"{latency:.2f} s", f"{fraction:.0%}",
                         f"{report['peak_rss'] / 2**30:.2f} GiB", f"{report['prepare_seconds']:.0f} s", size_text,
                         f"{latency / eager:.2f}x" if eager else "-"])  # fmt: skip
        print(f"\n## {case} (batch 1, fp32, {args.repeats} runs after a warm-up)\n")
        print(table(["runtime", "latency (median)", "of matmul", "peak RSS", "export/compile + warm-up",
                     "file", "vs eager optimised"], rows))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()

"""Naive, PUP and MLA at their zoo sizes: parameters, FLOPs, latency, throughput, peak memory, the
fraction of this machine's matmul rate the forward achieves, and the explicit-attention reference.

    python benchmarks/models.py --quick            # the small model, a minute or two
    python benchmarks/models.py                    # ViT-L at 768 (Cityscapes) and 512 (ADE20K)
    python benchmarks/models.py --heads pup --sizes 768 --reference pup:768 --json pup768.json
    python benchmarks/models.py --from-json pup768.json      # print the tables of a saved run again
    python benchmarks/models.py --device cuda --precision bf16 --sdpa-backend flash --compile
    python benchmarks/models.py --paths plain     # the plain reference model only

Each model runs as ``setr.optimize_for_inference`` makes it and as the plain reference model (same
weights); the explicit-attention reference runs plain.

Each configuration runs in a fresh process. Inside it, a dense ``n x n`` matmul (fp32, or bf16
with ``--precision bf16*``) is timed before every forward and after the last, and each forward's
FLOP rate is divided by the mean rate of the probes either side of it: the model and the
machine's limit are measured under the same load. Latency: median of ``--repeats`` runs after
``--warmup``. Peak memory: process RSS on CPU (``max_memory_allocated`` on CUDA), in total and
above the level with the model and input loaded; the probe's operands are subtracted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import (
    ANCHORS_GFLOPS,
    HEADS,
    QUICK_SIZE,
    base_case,
    common_arguments,
    count_flops,
    count_params,
    fmt_bytes,
    fmt_seconds,
    matmul_fractions,
    median,
    model_name,
    model_spec,
    print_machine,
    require_device,
    run_case,
    save_json,
    spread,
    table,
)


def summarise(result: dict) -> dict:
    flops = result["flops"]["total"]
    latency = median(result["seconds"])
    fractions = matmul_fractions(result, flops)
    return dict(
        latency=latency,
        spread=spread(result["seconds"]),
        throughput=result["case"]["batch"] / latency,
        rate=flops / latency,
        mm_rate=fractions["mm_rate"],
        fraction=fractions["wall"],
        cpu_fraction=fractions["cpu"],
        peak=result["peak_bytes"] - result["probe_bytes"],
        activations=result["peak_bytes"] - result["baseline_bytes"],
    )


def size_rows(specs: list[dict], batch: int) -> list[list]:
    rows = []
    for spec in specs:
        size = spec["size"]
        flops = count_flops(spec, size, size, batch)
        anchor = None if spec["quick"] else ANCHORS_GFLOPS.get((spec["head"], size))
        rows.append([
            model_name(spec), f"{size}x{size}", f"{count_params(spec) / 1e6:.1f}M",
            f"{count_params(dict(spec, aux=True)) / 1e6:.1f}M", f"{flops['encoder'] / 1e9:.1f}",
            f"{flops['heads'] / 1e9:.1f}", f"{flops['total'] / 1e9:.1f}",
            "-" if anchor is None else f"{anchor:.1f} ({flops['total'] / 1e9 / batch / anchor - 1:+.1%})",
        ])  # fmt: skip
    return rows


def _path(result: dict) -> str:
    return result["case"].get("path", "plain")


def print_results(results: list[dict]) -> None:
    sdpa = [r for r in results if r["case"]["attention"] == "sdpa"]
    if not sdpa:
        return
    ours = [r for r in sdpa if _path(r) == "optimized"] or sdpa
    first = sdpa[0]["case"]
    print(f"\n## Speed and memory ({first['device']}, {first['precision']}, batch {first['batch']}, "
          f"{first['repeats']} runs after {first['warmup']} warm-up)\n")  # fmt: skip
    rows = []
    for r in sdpa:
        s, spec = summarise(r), r["case"]["model"]
        rows.append([
            model_name(spec), f"{spec['size']}x{spec['size']}", _path(r), fmt_seconds(s["latency"]), s["spread"],
            f"{s['throughput']:.3g}", f"{s['rate'] / 1e9:.0f}", f"{s['mm_rate'] / 1e9:.0f}", f"{s['fraction']:.0%}",
            f"{s['cpu_fraction']:.0%}", fmt_bytes(s["peak"]), fmt_bytes(s["activations"]),
        ])  # fmt: skip
    print(table(["model", "input", "path", "latency (median)", "spread", "img/s", "GFLOP/s", "matmul GFLOP/s",
                 "of matmul (wall)", "of matmul (CPU time)", "peak memory", "above loaded model"], rows))  # fmt: skip
    print_plain_vs_optimized(sdpa)
    pairs = []
    for ref in (r for r in results if r["case"]["attention"] == "explicit"):
        mate = [r for r in ours if r["case"]["model"] == ref["case"]["model"]]
        if mate:
            pairs.append((mate[0], ref))
    if not pairs:
        return
    rows = []
    for mine, ref in pairs:
        s, r, spec = summarise(mine), summarise(ref), ref["case"]["model"]
        rows.append([
            model_name(spec), f"{spec['size']}x{spec['size']}", fmt_seconds(s["latency"]), fmt_seconds(r["latency"]),
            f"{r['latency'] / s['latency']:.2f}x", f"{s['fraction'] / r['fraction']:.2f}x",
            f"{s['cpu_fraction'] / r['cpu_fraction']:.2f}x", fmt_bytes(s["peak"]), fmt_bytes(r["peak"]),
            f"{s['peak'] / r['peak']:.2f}", fmt_bytes(s["activations"]), fmt_bytes(r["activations"]),
            f"{s['activations'] / r['activations']:.2f}",
        ])  # fmt: skip
    print("\n## Against explicit softmax(QK^T)V attention (same weights, same run)\n")
    print(table(["model", "input", "ours", "explicit", "speed-up", "speed-up (load-normalised)",
                 "speed-up (CPU time)", "peak ours", "peak explicit", "ratio", "above model, ours",
                 "above model, explicit", "ratio"], rows))  # fmt: skip


def print_plain_vs_optimized(sdpa: list[dict]) -> None:
    """The optimised model (``setr.optimize_for_inference``) against the plain reference, same run."""
    rows = []
    for fast in (r for r in sdpa if _path(r) == "optimized"):
        plain = [r for r in sdpa if _path(r) == "plain" and r["case"]["model"] == fast["case"]["model"]]
        if not plain:
            continue
        f, p, spec = summarise(fast), summarise(plain[0]), fast["case"]["model"]
        rows.append([
            model_name(spec), f"{spec['size']}x{spec['size']}", fmt_seconds(p["latency"]), fmt_seconds(f["latency"]),
            f"{p['latency'] / f['latency']:.2f}x", f"{f['fraction'] / p['fraction']:.2f}x",
            fmt_bytes(p["peak"]), fmt_bytes(f["peak"]), f"{f['peak'] / p['peak']:.2f}",
        ])  # fmt: skip
    if rows:
        print("\n## Optimised (setr.optimize_for_inference) against the plain model (same weights, same run)\n")
        print(table(["model", "input", "plain", "optimised", "speed-up", "speed-up (load-normalised)",
                     "peak plain", "peak optimised", "ratio"], rows))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=None,
        help="zoo sizes: 768 (Cityscapes), 512 (ADE20K), 480 (Pascal Context)",
    )
    parser.add_argument("--reference", nargs="*", default=None, help="head:size pairs also run with explicit attention")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--paths", nargs="+", default=["optimized", "plain"], choices=["optimized", "plain"],
        help="run the model as optimize_for_inference makes it, as the plain reference, or both",
    )  # fmt: skip
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "bf16-autocast"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the warm-up compiles)")
    parser.add_argument("--sdpa-backend", choices=["flash", "efficient", "math", "cudnn"], help="force one SDPA kernel")
    parser.add_argument("--mm-size", type=int, default=None, help="side of the matmul probe (4096 CPU, 8192 CUDA)")
    parser.add_argument("--no-run", action="store_true", help="parameters and FLOPs only")
    parser.add_argument("--from-json", help="print the tables of a run saved with --json, running nothing")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if results:
            print("machine: " + ", ".join(f"{k}={v}" for k, v in results[0]["machine"].items()))
        print_results(results)
        return
    if not require_device(args.device):
        return
    sizes = args.sizes or ([QUICK_SIZE] if args.quick else [768, 512])
    if args.reference is None:
        args.reference = [f"{h}:{sizes[0]}" for h in HEADS] if args.quick else ["pup:768"]
    print_machine(args.device)
    specs = [model_spec(head, size, args.quick) for size in sizes for head in args.heads]
    print("\n## Size\n")
    print(table(["model", "input", "params (inference)", "params (with aux)", "encoder GFLOPs", "heads GFLOPs",
                 "total GFLOPs", "mmseg anchor (ours vs it)"], size_rows(specs, args.batch)))  # fmt: skip
    if args.no_run:
        return
    results = []
    for spec in specs:
        runs = [("sdpa", path) for path in args.paths]
        if f"{spec['head']}:{spec['size']}" in args.reference:
            runs.append(("explicit", "plain"))
        for attention, path in runs:
            label = f"{model_name(spec)} {spec['size']}x{spec['size']} {attention} {path}"
            case = dict(base_case(args), kind="forward", label=label, model=spec, height=spec["size"],
                        width=spec["size"], batch=args.batch, attention=attention, path=path)  # fmt: skip
            result = run_case(case)
            result["flops"] = count_flops(spec, spec["size"], spec["size"], args.batch)
            results.append(result)
    print_results(results)
    save_json(args.json, results)


if __name__ == "__main__":
    sys.exit(main())

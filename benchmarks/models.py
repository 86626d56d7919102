"""Naive, PUP and MLA at their zoo sizes: parameters, FLOPs, latency, throughput, peak memory, the
fraction of this machine's matmul rate the forward achieves, and the explicit-attention reference.

    python benchmarks/models.py --quick            # the small model, a minute
    python benchmarks/models.py                    # ViT-L at 768 (Cityscapes) and 512 (ADE20K)
    python benchmarks/models.py --heads pup --sizes 768 --reference pup:768
    python benchmarks/models.py --device cuda --precision bf16 --sdpa-backend flash --compile

Each configuration runs in a fresh process. Inside it, every timed forward is preceded by one
dense fp32 (or bf16) ``n x n`` matmul, so the model's FLOP rate is compared with the machine's
rate measured under the same load. Latency: median of ``--repeats`` runs after ``--warmup``.
Peak memory: process RSS on CPU (``max_memory_allocated`` on CUDA), total and above the level
with the model and input loaded; the matmul operands are subtracted from the total.
"""

from __future__ import annotations

import argparse
import sys

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


def forward_case(args, spec: dict, attention: str) -> dict:
    size = spec["size"]
    label = f"{model_name(spec)} {size}x{size} {attention}"
    return dict(base_case(args), kind="forward", label=label, model=spec, height=size, width=size,
                batch=args.batch, attention=attention)  # fmt: skip


def summarise(result: dict, flops: float) -> dict:
    latency = median(result["seconds"])
    mm_rate = median(result["mm_flops_per_s"])
    return dict(
        latency=latency,
        spread=spread(result["seconds"]),
        throughput=result["case"]["batch"] / latency,
        rate=flops / latency,
        mm_rate=mm_rate,
        fraction=flops / latency / mm_rate,
        best_fraction=flops / min(result["seconds"]) / max(result["mm_flops_per_s"]),
        peak=result["peak_bytes"] - result["probe_bytes"],
        activations=result["peak_bytes"] - result["baseline_bytes"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="zoo sizes: 768 (Cityscapes), 512 (ADE20K)")
    parser.add_argument(
        "--reference", nargs="*", default=None, help="head:size pairs also timed with explicit attention"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "bf16-autocast"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the warm-up compiles)")
    parser.add_argument("--sdpa-backend", choices=["flash", "efficient", "math", "cudnn"], help="force one SDPA kernel")
    parser.add_argument("--mm-size", type=int, default=None, help="side of the matmul probe (4096 CPU, 8192 CUDA)")
    parser.add_argument("--no-run", action="store_true", help="parameters and FLOPs only")
    args = parser.parse_args()
    if not require_device(args.device):
        return
    sizes = args.sizes or ([QUICK_SIZE] if args.quick else [768, 512])
    if args.reference is None:
        args.reference = [f"{h}:{sizes[0]}" for h in HEADS] if args.quick else ["pup:768"]
    print_machine(args.device)
    print(f"precision={args.precision} batch={args.batch} warmup={args.warmup} repeats={args.repeats} "
          f"compile={args.compile} sdpa_backend={args.sdpa_backend or 'default'} matmul probe={base_case(args)['mm_size']}^3")  # fmt: skip

    size_rows, speed_rows, ref_rows, raw = [], [], [], []
    for size in sizes:
        for head in args.heads:
            spec = model_spec(head, size, args.quick)
            flops = count_flops(spec, size, size, args.batch)
            params = count_params(spec)
            params_aux = count_params(model_spec(head, size, args.quick, aux=True))
            anchor = None if args.quick else ANCHORS_GFLOPS.get((head, size))
            size_rows.append([
                model_name(spec), f"{size}x{size}", f"{params / 1e6:.1f}M", f"{params_aux / 1e6:.1f}M",
                f"{flops['encoder'] / 1e9:.1f}", f"{flops['heads'] / 1e9:.1f}", f"{flops['total'] / 1e9:.1f}",
                "-" if anchor is None else f"{anchor:.1f} ({flops['total'] / 1e9 / args.batch / anchor - 1:+.1%})",
            ])  # fmt: skip
            if args.no_run:
                continue
            ours = run_case(forward_case(args, spec, "sdpa"))
            s = summarise(ours, flops["total"])
            raw.append(dict(ours, flops=flops))
            speed_rows.append([
                model_name(spec), f"{size}x{size}", fmt_seconds(s["latency"]), s["spread"],
                f"{s['throughput']:.3g}", f"{s['rate'] / 1e9:.0f}", f"{s['mm_rate'] / 1e9:.0f}",
                f"{s['fraction']:.0%}", f"{s['best_fraction']:.0%}", fmt_bytes(s["peak"]), fmt_bytes(s["activations"]),
            ])  # fmt: skip
            if f"{head}:{size}" in args.reference:
                ref = run_case(forward_case(args, spec, "explicit"))
                r = summarise(ref, flops["total"])
                raw.append(dict(ref, flops=flops))
                ref_rows.append([
                    model_name(spec), f"{size}x{size}", fmt_seconds(s["latency"]), fmt_seconds(r["latency"]),
                    f"{r['latency'] / s['latency']:.2f}x", f"{s['fraction'] / r['fraction']:.2f}x",
                    fmt_bytes(s["peak"]), fmt_bytes(r["peak"]), f"{s['peak'] / r['peak']:.2f}",
                    fmt_bytes(s["activations"]), fmt_bytes(r["activations"]), f"{s['activations'] / r['activations']:.2f}",
                ])  # fmt: skip

    print("\n## Size\n")
    print(table(["model", "input", "params (inference)", "params (with aux)", "encoder GFLOPs", "heads GFLOPs",
                 "total GFLOPs", "mmseg anchor (ours vs it)"], size_rows))  # fmt: skip
    if speed_rows:
        print(f"\n## Speed and memory ({args.device}, {args.precision}, batch {args.batch})\n")
        print(table(["model", "input", "latency (median)", "spread", "img/s", "GFLOP/s", "matmul GFLOP/s",
                     "of matmul (medians)", "of matmul (best)", "peak memory", "above loaded model"], speed_rows))  # fmt: skip
    if ref_rows:
        print("\n## Against explicit softmax(QK^T)V attention (same weights, same run)\n")
        print(table(["model", "input", "ours", "explicit", "speed-up", "speed-up (load-normalised)",
                     "peak ours", "peak explicit", "ratio", "above model, ours", "above model, explicit", "ratio"],
                    ref_rows))  # fmt: skip
    save_json(args.json, raw)


if __name__ == "__main__":
    sys.exit(main())

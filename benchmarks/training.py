"""A training step (forward with the auxiliary heads, the official loss, backward, SGD with momentum):
time and peak memory, with and without gradient checkpointing, in fp32 and with bf16 autocast.

    python benchmarks/training.py --quick
    python benchmarks/training.py --size 512 --warmup 1 --repeats 2       # PUP ViT-L, ADE20K crop
    python benchmarks/training.py --device cuda --size 768                 # Cityscapes crop on a GPU

Each variant runs in a fresh process. Memory: the peak over all steps (process RSS on CPU,
``max_memory_allocated`` on CUDA), and the forward's own peak above the level at the start of its
step (the activations kept for the backward, and the forward's transients): what checkpointing
trades for compute. On CPU that is taken from the first step of the fresh process: the C allocator
keeps some freed memory after a step and later steps reuse it, so their RSS deltas understate.
"""

from __future__ import annotations

import argparse
import sys

from _common import (
    QUICK_SIZE,
    base_case,
    common_arguments,
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

VARIANTS = {
    "fp32": dict(precision="fp32", checkpointing=False),
    "fp32 + checkpointing": dict(precision="fp32", checkpointing=True),
    "bf16 autocast": dict(precision="bf16-autocast", checkpointing=False),
    "bf16 autocast + checkpointing": dict(precision="bf16-autocast", checkpointing=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--head", default="pup", choices=["naive", "pup", "mla"])
    parser.add_argument("--size", type=int, default=None, help="crop side: 768 (Cityscapes) or 512 (ADE20K)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if not require_device(args.device):
        return
    size = args.size or (QUICK_SIZE if args.quick else 512)
    spec = model_spec(args.head, size, args.quick, aux=True)
    print_machine(args.device)
    print(f"model={model_name(spec)} (with its auxiliary heads) crop={size} batch={args.batch} "
          f"warmup={args.warmup} repeats={args.repeats}")  # fmt: skip
    rows, raw, by_name = [], [], {}
    for name in args.variants:
        case = dict(base_case(args), kind="train", label=f"train {name}", model=spec, height=size, width=size,
                    batch=args.batch, pin_malloc=True, **VARIANTS[name])  # fmt: skip
        result = run_case(case)
        raw.append(result)
        latency = median(result["seconds"])
        activations = result["forward_bytes"][0] if args.device == "cpu" else median(result["forward_bytes"])
        peak = result["peak_bytes"] - result["probe_bytes"]
        by_name[name] = dict(peak=peak, activations=activations)
        rows.append([name, fmt_seconds(latency), spread(result["seconds"]), fmt_seconds(median(result["cpu_seconds"])),
                     f"{args.batch / latency:.3g}", fmt_bytes(peak), fmt_bytes(activations)])  # fmt: skip
    print(f"\n## Training step ({args.device}, crop {size}, batch {args.batch})\n")
    header = ["variant", "step (median)", "spread", "CPU time (median)", "img/s", "peak memory", "forward activations"]
    print(table(header, rows))
    ratios = []
    for plain, ckpt in (("fp32", "fp32 + checkpointing"), ("bf16 autocast", "bf16 autocast + checkpointing")):
        if plain in by_name and ckpt in by_name:
            a, b = by_name[plain], by_name[ckpt]
            ratios.append([ckpt, f"{b['peak'] / a['peak']:.2f}", f"{b['activations'] / a['activations']:.2f}"])
    if ratios:
        print("\n" + table(["checkpointing vs without", "peak memory ratio", "activations ratio"], ratios))
    save_json(args.json, raw)


if __name__ == "__main__":
    sys.exit(main())

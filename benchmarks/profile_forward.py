"""Where the time of one forward goes (torch.profiler), and our fast paths against the plain ones.

    python benchmarks/profile_forward.py --quick
    python benchmarks/profile_forward.py                      # PUP ViT-L at 768x768
    python benchmarks/profile_forward.py --head mla --size 512

Prints the optimised forward's self time by kind of operation and the top operations. Then,
alternating the optimised model (``setr.optimize_for_inference``) and the plain reference model on
the same input: the encoder (fused blocks against timm's blocks as written), and the decode head
alone on the same encoder tokens (channels-last convolutions, BatchNorm folded into the
convolution, PUP's last stage in row strips, against conv, BN and ReLU as three passes on whole
maps, as the official code does).
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import (
    QUICK_SIZE,
    build_model,
    fmt_bytes,
    fmt_seconds,
    median,
    model_spec,
    print_machine,
    require_device,
    spread,
    table,
)
from _worker import Memory, timed
from torch.profiler import ProfilerActivity, profile

import setr

KINDS = [
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "softmax", "bmm", "baddbmm")),
    ("matmul (linear layers)", ("addmm", "aten::mm", "aten::matmul")),
    ("convolution", ("convolution",)),
    ("interpolation", ("upsample",)),
    ("normalisation", ("layer_norm", "batch_norm")),
    ("copies", ("copy_", "contiguous", "clone", "aten::cat", "pad")),
    ("elementwise", ("gelu", "relu", "clamp", "aten::add", "aten::mul", "aten::div", "aten::sub")),
]


def kind_of(name: str) -> str:
    for kind, needles in KINDS:
        if any(needle in name for needle in needles):
            return kind
    return "other"


def profile_forward(model, x, device: str) -> None:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch.inference_mode(), profile(activities=activities) as prof:
        model(x)
        if device == "cuda":
            torch.cuda.synchronize()
    attr = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr) > 0]
    total = sum(getattr(e, attr) for e in events)
    by_kind: dict[str, float] = {}
    for e in events:
        by_kind[kind_of(e.key)] = by_kind.get(kind_of(e.key), 0.0) + getattr(e, attr)
    rows = [[k, fmt_seconds(v / 1e6), f"{v / total:.1%}"] for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    print(
        f"\n## Forward, self {'GPU' if device == 'cuda' else 'CPU'} time by kind (total {fmt_seconds(total / 1e6)})\n"
    )
    print(table(["kind", "time", "share"], rows))
    top = sorted(events, key=lambda e: -getattr(e, attr))[:12]
    print("\n## Top operations\n")
    print(table(["op", "calls", "time", "share"],
                [[e.key, e.count, fmt_seconds(getattr(e, attr) / 1e6), f"{getattr(e, attr) / total:.1%}"] for e in top]))  # fmt: skip


def compare_paths(title: str, paths: dict, device: str, repeats: int) -> None:
    """Time ``paths`` (name -> callable; the first is ours, the second the plain one) alternating,
    check they agree, and print a table of median times and peak memory above the inputs."""
    memory = Memory(device)
    seconds = {name: [] for name in paths}
    peaks = {name: 0 for name in paths}
    with torch.inference_mode():
        ours_out, plain_out = (fn() for fn in paths.values())  # warm-up, and the two must agree
        difference = (ours_out - plain_out).abs().max().item()
        del ours_out, plain_out
        for _ in range(repeats):
            for name, fn in paths.items():
                memory.reset()
                base = memory.current()
                seconds[name].append(timed(fn, device)[0])
                peaks[name] = max(peaks[name], memory.peak() - base)
    ours, plain = (median(s) for s in seconds.values())
    ours_peak, plain_peak = peaks.values()
    print(f"\n## {title}, {repeats} alternating runs\n")
    print(table(["path", "time (median)", "spread", "peak memory above its inputs"],
                [[name, fmt_seconds(median(s)), spread(s), fmt_bytes(peaks[name])] for name, s in seconds.items()]))  # fmt: skip
    print(f"\nplain / ours: time {plain / ours:.2f}x, memory {plain_peak / max(ours_peak, 1):.2f}x; "
          f"max |ours - plain| = {difference:.2e}")  # fmt: skip


def compare_encoder(fast, plain, x, device: str, repeats: int) -> None:
    """The optimised encoder (fused blocks) against the plain one (timm's ``Block.forward``)."""
    indices = plain.config.mla_indices or [plain.config.decode_index]
    paths = {
        "ours": lambda: fast.encoder(x, indices)[0][-1],
        "plain": lambda: plain.encoder(x, indices)[0][-1],
    }
    compare_paths("Encoder alone: fused blocks (ours) vs timm's blocks (plain)", paths, device, repeats)


def compare_heads(fast, plain, x, device: str, repeats: int) -> None:
    with torch.inference_mode():
        features, grid = plain.head_inputs(x)
    out_size = (grid[0] * 16, grid[1] * 16)
    if plain.neck is None:
        paths = {
            "ours": lambda: fast.decode_head(features[0], grid, out_size),
            "plain": lambda: plain.decode_head(features[0], grid, out_size),
        }
    else:
        with torch.inference_mode():
            tokens, _ = plain.encoder(x, plain.config.mla_indices)
        paths = {
            "ours": lambda: fast.decode_head(fast.neck(tokens, grid), out_size),
            "plain": lambda: plain.decode_head(plain.neck(tokens, grid), out_size),
        }
    compare_paths(f"Decode head alone at {out_size[0]}x{out_size[1]} (neck included for MLA)", paths, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--head", default="pup", choices=["naive", "pup", "mla"])
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--head-repeats", type=int, default=3)
    parser.add_argument("--encoder-repeats", type=int, default=3, help="0 skips the encoder comparison")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    if not require_device(args.device):
        return
    size = args.size or (QUICK_SIZE if args.quick else 768)
    print_machine(args.device)
    torch.manual_seed(0)
    plain = build_model(model_spec(args.head, size, args.quick)).eval().to(args.device)
    fast = setr.optimize_for_inference(plain)  # shares the weights
    x = torch.randn(1, 3, size, size, device=args.device)
    print(f"model={args.head} size={size}")
    if not args.skip_profile:
        with torch.inference_mode():
            for _ in range(args.warmup):
                fast(x)
        profile_forward(fast, x, args.device)
    if args.encoder_repeats:
        compare_encoder(fast, plain, x, args.device, args.encoder_repeats)
    compare_heads(fast, plain, x, args.device, args.head_repeats)


if __name__ == "__main__":
    sys.exit(main())

"""Inference modes: sliding windows one by one vs batched, and the whole 1024x2048 image at once.

    python benchmarks/inference.py --quick
    python benchmarks/inference.py                                  # PUP ViT-L, Cityscapes protocol
    python benchmarks/inference.py --image 768 1280 --warmup 0 --repeats 1   # 2 windows: a cheaper run

Sliding windows use ``setr.inference.slide_inference`` with the official placement (crop 768,
stride 512 on Cityscapes: 8 windows on 1024x2048), once with ``batch_size=1`` and once with every
window in one batch. The whole-image run feeds the full image to the network (any size works:
the position embedding is resized); with SDPA the ``N x N`` attention matrix (N = tokens) is
never built, which the peak memory shows: compare it with the size of that matrix.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import (
    QUICK_SIZE,
    base_case,
    common_arguments,
    count_flops,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--head", default="pup", choices=["naive", "pup", "mla"])
    parser.add_argument("--image", nargs=2, type=int, default=None, help="H W of the sliding-window image")
    parser.add_argument("--whole", nargs=2, type=int, default=None, help="H W of the whole-image run")
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["slide", "whole", "resize"])
    args = parser.parse_args()
    if not require_device(args.device):
        return
    crop = args.crop or (QUICK_SIZE if args.quick else 768)
    stride = args.stride or crop * 2 // 3
    image = args.image or ([crop * 3 // 2, 2 * crop] if args.quick else [1024, 2048])
    whole = args.whole or ([2 * crop, 4 * crop] if args.quick else [1024, 2048])
    spec = model_spec(args.head, crop, args.quick)
    print_machine(args.device)
    print(f"model={model_name(spec)} crop={crop} stride={stride} warmup={args.warmup} repeats={args.repeats}")
    raw = []

    if "slide" not in args.skip:
        rows = []
        window_flops = count_flops(spec, crop, crop)["total"]
        for label, batch_size in (("one by one", 1), ("batched (all windows)", 64)):
            case = dict(base_case(args), kind="slide", label=f"slide {label}", model=spec, height=image[0],
                        width=image[1], crop=crop, stride=stride, batch_size=batch_size)  # fmt: skip
            result = run_case(case)
            raw.append(result)
            latency = median(result["seconds"])
            flops = window_flops * result["windows"]
            fractions = matmul_fractions(result, flops)
            rows.append([
                label, f"{image[0]}x{image[1]}", result["windows"], fmt_seconds(latency), spread(result["seconds"]),
                fmt_seconds(median(result["cpu_seconds"])), f"{1 / latency:.3g}",
                f"{fractions['wall']:.0%} / {fractions['cpu']:.0%}",
                fmt_bytes(result["peak_bytes"] - result["probe_bytes"]),
                fmt_bytes(result["peak_bytes"] - result["baseline_bytes"]),
            ])  # fmt: skip
        print(f"\n## Sliding windows (crop {crop}, stride {stride})\n")
        print(table(["windows run", "image", "windows", "latency (median)", "spread", "CPU time", "img/s",
                     "of matmul (wall / CPU)", "peak memory", "above loaded model"], rows))  # fmt: skip

    if "whole" not in args.skip:
        height, width = whole
        case = dict(base_case(args), kind="forward", label=f"whole {height}x{width}", model=spec, height=height,
                    width=width, batch=1, attention="sdpa")  # fmt: skip
        result = run_case(case)
        raw.append(result)
        tokens = -(-height // 16) * -(-width // 16) + (0 if args.head == "mla" else 1)
        heads = 3 if args.quick else 16
        matrix = tokens * tokens * heads * 4
        latency = median(result["seconds"])
        flops = count_flops(spec, height, width)["total"]
        above = result["peak_bytes"] - result["baseline_bytes"]
        print(f"\n## Whole image {height}x{width} (N = {tokens} tokens, {heads} heads)\n")
        fractions = matmul_fractions(result, flops)
        print(table(["latency (median)", "CPU time", "GFLOPs", "of matmul (wall / CPU)", "peak memory",
                     "above loaded model", "one N x N attention matrix (fp32, all heads)", "above-model peak / that matrix"],
                    [[fmt_seconds(latency), fmt_seconds(median(result["cpu_seconds"])), f"{flops / 1e9:.0f}",
                      f"{fractions['wall']:.0%} / {fractions['cpu']:.0%}",
                      fmt_bytes(result["peak_bytes"] - result["probe_bytes"]), fmt_bytes(above),
                      fmt_bytes(matrix), f"{above / matrix:.2f}"]]))  # fmt: skip
    if "resize" not in args.skip:
        print("\n## Test-time resize of the 0-255 image (in this process, median of 15)\n")
        print(table(["resize", "now: OpenCV, uint8 in (Predictor)", "now: OpenCV, float 0-255 in",
                     "before: float bilinear + round", "now (uint8) / before"], resize_rows()))  # fmt: skip
    save_json(args.json, raw)


def resize_rows() -> list[list[str]]:
    """The official OpenCV uint8 resize against the float bilinear + round it replaced."""
    import torch
    import torch.nn.functional as F

    from setr.inference import resize_image

    def before(image: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:  # the replaced resize
        return F.interpolate(image.float(), size=target, mode="bilinear", align_corners=False).round_().clamp_(0, 255)

    rows = []
    for source, target in (((1024, 2048), (1025, 2049)), ((512, 683), (896, 1195)), ((512, 683), (256, 341))):
        image = torch.randint(0, 256, (1, 3, *source), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        as_float = image.float()
        runs = {"uint8": (resize_image, image), "float": (resize_image, as_float), "before": (before, as_float)}
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(15):
            for key, (resize, source_image) in runs.items():
                start = time.perf_counter()
                resize(source_image, target)
                times[key].append(time.perf_counter() - start)
        now, given_float, then = (median(times[key]) for key in ("uint8", "float", "before"))
        label = f"{source[0]}x{source[1]} -> {target[0]}x{target[1]}"
        rows.append([label, f"{now * 1e3:.1f} ms", f"{given_float * 1e3:.1f} ms", f"{then * 1e3:.1f} ms",
                     f"{now / then:.2f}x"])  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())

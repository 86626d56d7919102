"""Shared pieces of the benchmark scripts: models, the machine, FLOPs, subprocess cases, tables.

Every measured configuration runs in a fresh Python process (``_worker.py``), so the peak memory
of one configuration never mixes with another's, and prints one JSON line back.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import setr
from setr.models import official_aux_indices

HERE = Path(__file__).resolve().parent
ZOO_DATASET = {768: "cityscapes", 512: "ade20k", 480: "pcontext"}
"""The zoo size of each dataset: Cityscapes 768 crops, ADE20K 512 crops, Pascal Context 480 crops."""
QUICK = dict(embed_dim=192, depth=6, num_heads=3)
"""The small model of ``--quick`` runs (ViT-Ti width, 6 blocks)."""
QUICK_SIZE = 256
HEADS = ("naive", "pup", "mla")
ANCHORS_GFLOPS = {
    ("naive", 512): 725.8,
    ("pup", 512): 850.4,
    ("mla", 512): 736.3,
    ("naive", 768): 1919.7,
    ("pup", 768): 2163.0,
    ("mla", 768): 1941.6,
}
"""mmsegmentation's SETR ViT-L definitions, batch 1, no aux heads, counted with torch's flop counter
(shared/reference/implementations.md section 5.2). mmseg's heads differ slightly from the official
ones we build (PUP classifier at full instead of half resolution, MLA 1x1 instead of 3x3 classifier)."""


def model_spec(head: str, size: int, quick: bool, aux: bool = False) -> dict[str, Any]:
    """A JSON-able description of a model: ``head``, training ``size``, ``quick`` and ``aux`` heads."""
    return dict(head=head, size=size, quick=quick, aux=aux)


def model_name(spec: dict[str, Any]) -> str:
    if spec["quick"]:
        return f"quick {spec['head']} (D={QUICK['embed_dim']}, depth {QUICK['depth']})"
    return f"setr_{spec['head']}_vitl_{ZOO_DATASET[spec['size']]}"


def build_model(spec: dict[str, Any]) -> setr.SETR:
    """The model of ``spec`` (random weights), built on the current default device."""
    if spec["quick"]:
        aux = official_aux_indices(spec["head"], QUICK["depth"]) if spec["aux"] else []
        return setr.SETR(head=spec["head"], img_size=spec["size"], num_classes=19, aux_indices=aux, **QUICK)
    return setr.create_model(model_name(spec), aux_heads=spec["aux"])


def use_explicit_attention(model: setr.SETR) -> None:
    """Switch every block to the reference attention, ``softmax(q k^T / sqrt(d)) v`` written out
    (timm's non-fused path, which computes attention the way the official code does); the model is
    then left plain (``optimize_for_inference`` does not fuse such blocks)."""
    for block in model.encoder.blocks:
        block.attn.fused_attn = False


def count_params(spec: dict[str, Any]) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(spec).parameters())


def count_flops(spec: dict[str, Any], height: int, width: int, batch: int = 1) -> dict[str, float]:
    """FLOPs (2 x multiply-adds of matmuls, convolutions and attention) of one inference forward.

    Counted on the meta device (no memory, no time) with explicit attention, whose matmuls
    ``torch.utils.flop_counter`` counts (it has no formula for the CPU flash-attention kernel);
    both paths do the same arithmetic. Returns ``total``, ``encoder`` and ``heads`` FLOPs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(spec).eval()
        use_explicit_attention(model)
        x = torch.empty(batch, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    total = counter.get_total_flops()
    encoder = sum(counter.get_flop_counts().get("SETR.encoder", {}).values())
    return dict(total=total, encoder=encoder, heads=total - encoder)


def machine_info(device: str) -> dict[str, Any]:
    """The facts a reader needs to compare figures: CPU model, cores, threads, memory, versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    info = dict(
        cpu=cpu,
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        memory_gib=round(mem_kb / 2**20, 1),
        torch=torch.__version__,
        python=platform.python_version(),
        device=device,
    )
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return info


def print_machine(device: str) -> None:
    info = machine_info(device)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))


def require_device(device: str) -> bool:
    """False (with a message) when ``device`` is ``cuda`` and no GPU is present: the caller skips."""
    if device == "cuda" and not torch.cuda.is_available():
        print("skipped: --device cuda was asked for but CUDA is not available on this machine")
        return False
    return True


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in a fresh process and return its JSON result."""
    label = case.get("label", case["kind"])
    print(f"  ... {label}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(HERE / "_worker.py"), json.dumps(case)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark case {label!r} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1]), machine=machine_info(case["device"]))


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_fractions(result: dict[str, Any], flops: float) -> dict[str, float]:
    """The model's FLOP rate as a fraction of the matmul probe's, from one worker result.

    ``wall``: median over runs of (run rate / mean rate of the probes just before and after it);
    ``cpu``: the same with process CPU time, which leaves out the time other processes held the
    cores (on a shared machine the steadier of the two; not meaningful on CUDA).
    """

    def fraction(run: list[float], probe: list[float]) -> float:
        ratios = []
        for i, seconds in enumerate(run):
            probe_rate = result["mm_flops"] / ((probe[i] + probe[i + 1]) / 2)
            ratios.append(flops / seconds / probe_rate)
        return median(ratios)

    return dict(
        wall=fraction(result["seconds"], result["mm_seconds"]),
        cpu=fraction(result["cpu_seconds"], result["mm_cpu_seconds"]),
        mm_rate=result["mm_flops"] / median(result["mm_seconds"]),
    )


def spread(values: list[float]) -> str:
    """``min-max`` of a list of seconds, in the unit that suits them."""
    return f"{fmt_seconds(min(values))}-{fmt_seconds(max(values))}"


def fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_bytes(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (so the output can go into docs/benchmarks.md as it is)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def common_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"the small model ({QUICK}) at {QUICK_SIZE} px")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every configuration")
    parser.add_argument("--json", help="also write the raw results to this file")


def base_case(args) -> dict[str, Any]:
    """The settings every case of a script shares."""
    return dict(
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        precision=getattr(args, "precision", "fp32"),
        compile=getattr(args, "compile", False),
        sdpa_backend=getattr(args, "sdpa_backend", None),
        mm_size=getattr(args, "mm_size", None) or default_mm_size(args),
    )


def default_mm_size(args) -> int:
    """Side of the matmul probe: large enough to reach the machine's dense rate."""
    if args.device == "cuda":
        return 8192
    return 2048 if args.quick else 4096


def save_json(path: str | None, payload: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))

"""The GPU part of the benchmarks, one prepared run: PUP ViT-L (Cityscapes, random weights) on CUDA.

    python benchmarks/gpu.py                      # every figure, about 5-10 minutes on one H100
    python benchmarks/gpu.py --skip compile ddp   # leave parts out
    python benchmarks/gpu.py --json gpu.json

Prints, with the card's name: the 768x768 forward latency in fp32 (TF32 off) and bf16 with SDPA's
flash kernel, the same under ``torch.compile``, sliding-window images/s at Cityscapes' 2048x1024
(the official protocol, bf16, batch 8 windows), one DDP training step over NCCL (world size 1,
through ``mp.spawn``) with the auxiliary heads and SGD, and the training step's peak memory at
batch 2. Without CUDA it prints one line and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch

PARTS = ("forward", "compile", "slide", "ddp", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device here (benchmarks/gpu.py measures the GPU path only)")
        sys.exit(0)
    figures = dict(card=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda)
    print(f"card: {figures['card']}, torch {figures['torch']}, CUDA {figures['cuda']}", flush=True)
    for part in PARTS:
        if part not in args.skip:
            figures[part] = globals()[f"measure_{part}"](args.repeats)
            print(f"{part}: {json.dumps(figures[part])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


def build(aux: bool = False, dtype: torch.dtype | None = None):
    import setr

    torch.manual_seed(0)
    return setr.create_model("setr_pup_vitl_cityscapes", aux_heads=aux, dtype=dtype).cuda()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after two warm-up calls, synchronised."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure_forward(repeats: int) -> dict:
    """768x768, batch 1: fp32 (TF32 off) and bf16 with SDPA's flash kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = build().eval()
    x = torch.randn(1, 3, 768, 768, device="cuda")
    with torch.inference_mode():
        fp32 = timed(lambda: model(x), repeats)
        half = build(dtype=torch.bfloat16).eval()
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            bf16 = timed(lambda: half(x.bfloat16()), repeats)
    return dict(fp32_s=fp32, bf16_flash_s=bf16, speedup=fp32 / bf16)


def measure_compile(repeats: int) -> dict:
    """768x768, batch 1, bf16: eager vs ``torch.compile`` (default mode), compile time included once."""
    model = build(dtype=torch.bfloat16).eval()
    x = torch.randn(1, 3, 768, 768, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        eager = timed(lambda: model(x), repeats)
        compiled = torch.compile(model)
        start = time.perf_counter()
        compiled(x)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        fast = timed(lambda: compiled(x), repeats)
    return dict(eager_bf16_s=eager, compiled_bf16_s=fast, compile_s=compile_s, speedup=eager / fast)


def measure_slide(repeats: int) -> dict:
    """Sliding-window images/s at 2048x1024 (crop 768, stride 512; bf16, 8 windows a batch)."""
    import setr

    predictor = setr.Predictor(build(), device="cuda", precision="bf16", batch_size=8, test_scale=None)
    image = torch.randint(0, 256, (3, 1024, 2048), dtype=torch.uint8)
    seconds = timed(lambda: predictor(image), max(3, repeats // 2))
    return dict(images_per_s=1 / seconds, seconds_per_image=seconds, protocol=str(predictor.protocol))


def measure_memory(repeats: int) -> dict:
    """Peak allocated memory of one training step at batch 2 (768 crops, aux heads, bf16 autocast, SGD)."""
    model = build(aux=True).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(2, 3, 768, 768, device="cuda")
    y = torch.randint(0, 19, (2, 768, 768), device="cuda")
    step = lambda: train_step(model, optimizer, x, y)  # noqa: E731
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    seconds = timed(step, max(3, repeats // 2))
    return dict(batch=2, peak_gib=torch.cuda.max_memory_allocated() / 2**30, step_s=seconds)


def train_step(model, optimizer, x, y) -> None:
    import torch.nn.functional as F

    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, aux = model(x, return_aux=True)
        loss = F.cross_entropy(logits.float(), y) + 0.4 * sum(F.cross_entropy(a.float(), y) for a in aux)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_ddp(repeats: int) -> dict:
    """One DDP training step over NCCL, world size 1 (``mp.spawn``): the step's time and that it ran."""
    import torch.multiprocessing as mp

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, args=(port, queue, repeats), nprocs=1, join=True)
    return queue.get()


def _ddp_worker(rank: int, port: int, queue, repeats: int) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=1)
    torch.cuda.set_device(rank)
    try:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build(aux=True).train())
        ddp = DistributedDataParallel(model, device_ids=[rank])
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(2, 3, 768, 768, device="cuda")
        y = torch.randint(0, 19, (2, 768, 768), device="cuda")
        seconds = timed(lambda: train_step(ddp, optimizer, x, y), max(3, repeats // 2))
        queue.put(dict(backend=dist.get_backend(), world_size=1, batch=2, step_s=seconds))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

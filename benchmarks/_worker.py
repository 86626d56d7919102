"""One benchmark configuration, run in a fresh process: ``python _worker.py '<json case>'``.

Prints one JSON line: the timings (seconds), the interleaved matmul rates (FLOP/s) and the memory
(bytes). Cases: ``forward`` (inference on one input size), ``slide`` (sliding-window inference of
one image) and ``train`` (a training step with the auxiliary losses and SGD with momentum).
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import build_model, use_explicit_attention

import setr

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-autocast": torch.bfloat16}


class Memory:
    """Peak memory since the last ``reset``: process RSS on CPU, ``max_memory_allocated`` on CUDA."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.resettable = True

    def current(self) -> int:
        if self.device == "cuda":
            return torch.cuda.memory_allocated()
        return self._status("VmRSS")

    def peak(self) -> int:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated()
        try:
            return self._status("VmHWM")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def reset(self) -> None:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # Linux: writing 5 resets the peak RSS (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.resettable = False

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(f"{key} not in /proc/self/status")


class MatmulProbe:
    """Times one dense ``n x n`` matmul; its operands stay allocated (their bytes are reported)."""

    def __init__(self, n: int, device: str, dtype: torch.dtype) -> None:
        self.n = n
        self.a = torch.randn(n, n, device=device, dtype=dtype)
        self.b = torch.randn(n, n, device=device, dtype=dtype)
        self.out = torch.zeros(n, n, device=device, dtype=dtype)  # touched now: resident in the baseline
        self.bytes = 3 * n * n * self.a.element_size()
        self.flops = 2 * n**3
        self.device = device

    def time(self) -> tuple[float, float]:
        """Wall and CPU seconds of one matmul."""
        return timed(lambda: torch.mm(self.a, self.b, out=self.out), self.device)


def probed_runs(run: Callable[[], Any], probe: MatmulProbe, repeats: int) -> tuple[list[float], list[float]]:
    """``repeats`` timed calls of ``run``, the probe's matmul timed before the first and after each:
    ``(seconds per run, probe seconds)`` (one more probe than runs: each run sits between two)."""
    seconds, probes = [], [probe.time()[0]]
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
        probes.append(probe.time()[0])
    return seconds, probes


def median_latency_and_fraction(report: dict[str, Any], flops: float) -> tuple[float, float]:
    """The median latency of a ``probed_runs`` report and the median over its runs of the model's
    FLOP rate as a fraction of the probe's rate around each run (``report["mm_flops"]`` per probe)."""
    seconds, probes = report["seconds"], report["probes"]
    rates = [flops / s / (report["mm_flops"] / ((a + b) / 2)) for s, a, b in zip(seconds, probes, probes[1:])]
    return sorted(seconds)[len(seconds) // 2], sorted(rates)[len(rates) // 2]


def timed(fn: Callable[[], Any], device: str) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()`` (CPU time leaves out the time other processes
    on a shared machine held the cores)."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_context(case: dict[str, Any]) -> contextlib.ExitStack:
    """Autocast and SDPA-backend choice for the case."""
    stack = contextlib.ExitStack()
    if case.get("precision") == "bf16-autocast":
        # With checkpointing, autocast's weight cache would keep a bf16 copy of every weight alive
        # for the whole forward, which checkpointing cannot drop; without it each use casts again.
        cache = not case.get("checkpointing")
        stack.enter_context(torch.autocast(case["device"], dtype=torch.bfloat16, cache_enabled=cache))
    backend = case.get("sdpa_backend")
    if backend:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        names = {
            "flash": "FLASH_ATTENTION",
            "efficient": "EFFICIENT_ATTENTION",
            "math": "MATH",
            "cudnn": "CUDNN_ATTENTION",
        }
        stack.enter_context(sdpa_kernel(getattr(SDPBackend, names[backend])))
    return stack


def prepare_model(case: dict[str, Any], train: bool) -> torch.nn.Module:
    device = case["device"]
    model = build_model(case["model"]).to(device)
    model.train(train)
    if case.get("attention", "sdpa") == "explicit":
        use_explicit_attention(model)
    if case.get("precision") == "bf16":
        model.to(torch.bfloat16)
    if not train and case.get("path", "plain") == "optimized":
        model = setr.optimize_for_inference(model)
    if train:
        model.set_grad_checkpointing(bool(case.get("checkpointing")))
    return model


def measure(case: dict[str, Any], step: Callable[[], Any]) -> dict[str, Any]:
    """Warm-up runs, then timed runs with a matmul probe before each and after the last; peak memory
    over all of them. Run ``i`` is compared with the mean rate of the probes either side of it."""
    device = case["device"]
    probe = MatmulProbe(case.get("mm_size") or 4096, device, DTYPES[case.get("precision") or "fp32"])
    memory = Memory(device)
    memory.reset()
    baseline = memory.current()
    for _ in range(case["warmup"]):
        step()
        probe.time()
    warm_peak = memory.peak()
    after_warmup = memory.current()
    if case.get("reset_after_warmup"):
        memory.reset()
        after_warmup = memory.current()
    runs, probes = [], [probe.time()]
    for _ in range(case["repeats"]):
        runs.append(timed(step, device))
        probes.append(probe.time())
    return dict(
        seconds=[wall for wall, _ in runs],
        cpu_seconds=[cpu for _, cpu in runs],
        mm_seconds=[wall for wall, _ in probes],
        mm_cpu_seconds=[cpu for _, cpu in probes],
        mm_flops=probe.flops,
        probe_bytes=probe.bytes,
        baseline_bytes=baseline,
        after_warmup_bytes=after_warmup,
        warmup_peak_bytes=warm_peak,
        peak_bytes=memory.peak(),
        peak_resettable=memory.resettable,
    )


def forward_case(case: dict[str, Any]) -> dict[str, Any]:
    device = case["device"]
    model = prepare_model(case, train=False)
    dtype = torch.bfloat16 if case.get("precision") == "bf16" else torch.float32
    x = torch.randn(case["batch"], 3, case["height"], case["width"], device=device, dtype=dtype)
    forward = torch.compile(model) if case.get("compile") else model

    def step() -> None:
        with torch.inference_mode(), run_context(case):
            forward(x)

    return measure(case, step)


def slide_case(case: dict[str, Any]) -> dict[str, Any]:
    from setr.inference import slide_inference, window_boxes

    model = prepare_model(case, train=False)
    image = torch.randn(1, 3, case["height"], case["width"], device=case["device"])

    def step() -> None:
        with torch.inference_mode(), run_context(case):
            slide_inference(model, image, case["crop"], case["stride"], batch_size=case["batch_size"])

    result = measure(case, step)
    result["windows"] = len(window_boxes(case["height"], case["width"], case["crop"], case["stride"]))
    return result


def train_case(case: dict[str, Any]) -> dict[str, Any]:
    device = case["device"]
    model = prepare_model(case, train=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batch, height, width = case["batch"], case["height"], case["width"]
    images = torch.randn(batch, 3, height, width, device=device)
    labels = torch.randint(0, model.num_classes, (batch, height, width), device=device)
    memory = Memory(device)
    peaks, forward_bytes = [], []

    def step() -> None:
        # What the forward holds for the backward (plus its transients) is the memory that
        # checkpointing trades for compute; gradients replace it during the backward.
        memory.reset()
        start = memory.current()
        with run_context(case):
            logits, aux = model(images, return_aux=True)
            loss = F.cross_entropy(logits.float(), labels)
            loss = loss + 0.4 * sum(F.cross_entropy(a.float(), labels) for a in aux)
        forward_bytes.append(memory.peak() - start)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        peaks.append(memory.peak())

    result = measure(case, step)
    result["peak_bytes"] = max(peaks)  # every step, the warm-up (which creates the momentum buffers) too
    result["forward_bytes"] = forward_bytes  # every step, the warm-up ones first
    result["param_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    return result


def main() -> None:
    case = json.loads(sys.argv[1])
    torch.manual_seed(0)
    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    if case["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    result = {"forward": forward_case, "slide": slide_case, "train": train_case}[case["kind"]](case)
    print(json.dumps(dict(case=case, **result)))


if __name__ == "__main__":
    main()

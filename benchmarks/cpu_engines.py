"""OpenVINO on the CPU against our eager paths and ONNX Runtime, one fresh process per configuration.

    python benchmarks/cpu_engines.py                                    # PUP 768, Naive 768, MLA 512 (ViT-L)
    python benchmarks/cpu_engines.py --models pup768 --engines eager-fp32 ov-bf16 --profile
    python benchmarks/cpu_engines.py --quick                            # a small model, a minute or two

Engines: ``eager-fp32`` (``optimize_for_inference``, the reference of every ratio), ``eager-bf16``,
``ov-fp32`` / ``ov-bf16`` (one dynamic IR compiled with ``INFERENCE_PRECISION_HINT`` f32 / bf16),
``ov-int8`` (the IR quantized by NNCF on ``--calibration-size`` windows of synthetic scenes) and
``ort-static`` (ONNX Runtime, a static graph at the crop). Each process builds or loads its network,
runs a warm-up and ``--repeats`` forwards of one crop-size image, with a 4096^3 matmul of its
precision (fp32 ``mm``, bf16 ``mm``, ``torch._int_mm``) timed before and after each run, and keeps
its mask for the agreement with ``eager-fp32``. Reported: median latency, speed-up over
``eager-fp32``, the model's FLOP rate as a fraction of that matmul (and of the bf16 matmul, whose
GFLOP/s is printed), mask agreement, peak RSS of the process; ``--predict-rss``: the peak RSS of
``setr predict --exported model.xml`` on one image; ``--profile``: OpenVINO's per-layer counters
(``PERF_COUNT``) summed by layer type, the top ones, to say which layer holds a target back.

The random-weight models, their IRs and the ONNX file are written once under ``--cache`` (default
``benchmarks/results/openvino-cache``) and reused: converting ViT-L takes minutes, compiling an
IR about a second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from _common import HERE, QUICK, QUICK_SIZE, count_flops, model_spec, print_machine, table
from _worker import MatmulProbe, median_latency_and_fraction, probed_runs
from PIL import Image
from precision import Int8Probe, peak_rss_of

import setr
from setr.dtypes import cpu_features, cpu_has_native_bf16

MODELS = {"pup768": ("pup", 768), "naive768": ("naive", 768), "mla512": ("mla", 512)}
ENGINES = ("eager-fp32", "eager-bf16", "ov-fp32", "ov-bf16", "ov-int8", "ort-static")
PROBE_PRECISION = {"eager-fp32": "fp32", "eager-bf16": "bf16", "ov-fp32": "fp32", "ov-bf16": "bf16",
                   "ov-int8": "int8", "ort-static": "fp32"}  # fmt: skip


def case_folder(cache: Path, key: str, quick: bool) -> Path:
    return cache / (f"quick-{key}" if quick else key)


def prepare(key: str, quick: bool, cache: Path, engines: list[str], calibration_size: int) -> None:
    """Write what ``engines`` need for ``key`` into the cache, once: the model folder, the dynamic
    fp32 IR, the int8 IR, the static ONNX file (each skipped when already there)."""
    from setr.export import export_model
    from setr.inference import CalibrationWindows

    head, size = MODELS[key]
    size = QUICK_SIZE if quick else size
    folder = case_folder(cache, key, quick)
    folder.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")  # gigabytes of IRs and models: never committed
    if not (folder / "model" / "config.json").is_file():
        torch.manual_seed(0)
        model = setr.SETR(head=head, img_size=size, num_classes=19, **QUICK) if quick else None
        model = model or setr.create_model(f"setr_{head}_vitl_{ {768: 'cityscapes', 512: 'ade20k'}[size] }")
        model.save_pretrained(folder / "model")
    model = None
    jobs = {
        "fp32.xml": any(e in engines for e in ("ov-fp32", "ov-bf16")) or "ov-int8" in engines,
        "int8.xml": "ov-int8" in engines,
        "static.onnx": "ort-static" in engines,
    }
    for name, wanted in jobs.items():
        if not wanted or (folder / name).is_file():
            continue
        model = model or setr.create_model(str(folder / "model")).eval()
        start = time.perf_counter()
        if name == "fp32.xml":
            export_model(model, folder / name, "openvino", dynamic=True)
        elif name == "int8.xml":
            images = synthetic_images(folder / "calibration", size, calibration_size)
            windows = CalibrationWindows(images, model, calibration_size)
            export_model(model, folder / name, "openvino", precision="int8", calibration=windows)
        else:
            export_model(model, folder / name, "onnx", dynamic=False, size=(size, size))
        print(f"  wrote {folder / name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def synthetic_images(folder: Path, size: int, count: int) -> list[Path]:
    """``count`` generated street-like scenes (``setr.data.synthetic``) at ``size``: calibration input."""
    from setr.data.synthetic import SyntheticShapes

    folder.mkdir(parents=True, exist_ok=True)
    scenes = SyntheticShapes(num_samples=count, size=size)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        if not path.is_file():
            image, _ = scenes[i]
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def probe_for(precision: str) -> MatmulProbe:
    if precision == "int8":
        return Int8Probe(4096)
    return MatmulProbe(4096, "cpu", torch.bfloat16 if precision == "bf16" else torch.float32)


def worker(engine: str, folder: Path, size: int, repeats: int, profile: bool) -> dict:
    """One engine in this process: timings, matmul probes, peak RSS, the mask (saved beside)."""
    from setr.export import load_exported

    start = time.perf_counter()
    if engine.startswith("eager"):
        precision = engine.split("-")[1]
        model = setr.create_model(str(folder / "model"), dtype=torch.bfloat16 if precision == "bf16" else None)
        network = setr.optimize_for_inference(model, precision=precision)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    elif engine.startswith("ov"):
        precision = "fp32" if engine == "ov-fp32" else "bf16"  # int8: its float parts in bf16
        network = load_exported(folder / ("int8.xml" if engine == "ov-int8" else "fp32.xml"), precision=precision)
        if profile:
            network.compile_options = {"PERF_COUNT": True}
        dtype = torch.float32
    else:
        network, dtype = load_exported(folder / "static.onnx"), torch.float32
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.inference_mode():
        logits = network(x).float()
        prepared = time.perf_counter() - start
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the probe's operands
        probe = probe_for(PROBE_PRECISION[engine])
        seconds, probes = probed_runs(lambda: network(x), probe, repeats)
        bf16 = probe_for("bf16")
        bf16_probes = [bf16.time()[0] for _ in range(3)]
    np.save(folder / f"mask-{engine}.npy", logits.argmax(1).numpy().astype(np.uint8))
    report = dict(engine=engine, seconds=seconds, probes=probes, mm_flops=probe.flops, prepare_seconds=prepared,
                  peak_rss=peak_rss, bf16_mm_seconds=float(np.median(bf16_probes)), bf16_mm_flops=bf16.flops)  # fmt: skip
    if profile and engine.startswith("ov"):
        by_type: dict[str, float] = defaultdict(float)
        for layer_type, kernel, layer_seconds in network.layer_times():
            by_type[f"{layer_type} ({kernel})"] += layer_seconds
        report["profile"] = sorted(by_type.items(), key=lambda kv: -kv[1])[:10]
    return report


def predict_rss(folder: Path, size: int, precision: str) -> int:
    """Peak RSS of ``setr predict --exported fp32.xml --precision PRECISION`` on one image."""
    image = folder / "predict-image.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(image)
    setr_command = str(Path(sys.executable).parent / "setr")
    return peak_rss_of([setr_command, "predict", str(image), "--exported", str(folder / "fp32.xml"),
                        "--precision", precision, "--out", str(folder / f"predict-{precision}"), "--force",
                        "--batch-size", "1"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help=f"a small model ({QUICK}) at {QUICK_SIZE} px")
    parser.add_argument("--calibration-size", type=int, default=300, help="int8 calibration windows")
    parser.add_argument("--profile", action="store_true", help="OpenVINO's per-layer times, top layer types")
    parser.add_argument("--predict-rss", action="store_true", help="peak RSS of `setr predict --exported model.xml`")
    parser.add_argument("--cache", type=Path, default=HERE / "results" / "openvino-cache")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "FOLDER", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, folder, size = args.worker
        print(json.dumps(worker(engine, Path(folder), int(size), args.repeats, args.profile)))
        return
    if args.prepare:
        prepare(args.prepare, args.quick, args.cache, args.engines, args.calibration_size)
        return
    print_machine("cpu")
    flags = sorted(
        cpu_features() & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"}
    )
    print(f"cpu flags: {' '.join(flags) or 'unknown'}; native bf16: {cpu_has_native_bf16()}")
    print(f"openvino {_version('openvino')}, nncf {_version('nncf')}, onnxruntime {_version('onnxruntime')}")
    quick = ["--quick"] if args.quick else []
    raw = []
    for key in args.models:
        head, size = MODELS[key]
        size = QUICK_SIZE if args.quick else size
        folder = case_folder(args.cache, key, args.quick)
        command = [sys.executable, __file__, "--prepare", key, "--engines", *args.engines, "--cache", str(args.cache),
                   "--calibration-size", str(args.calibration_size), *quick]  # fmt: skip
        subprocess.run(command, check=True)
        flops = count_flops(model_spec(head, size, args.quick), size, size)["total"]
        rows, reports = [], {}
        for engine in args.engines:
            command = [sys.executable, __file__, "--worker", engine, str(folder), str(size), "--repeats",
                       str(args.repeats), *(["--profile"] if args.profile else [])]  # fmt: skip
            print(f"  ... {key} {engine}", file=sys.stderr, flush=True)
            done = subprocess.run(
                command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore")
            )
            if done.returncode != 0:
                rows.append([engine, "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:90]] + [""] * 6)
                continue
            reports[engine] = report = json.loads(done.stdout.strip().splitlines()[-1])
            raw.append(dict(report, model=key, flops=flops))
        reference = np.load(folder / "mask-eager-fp32.npy") if "eager-fp32" in reports else None
        base = median_latency_and_fraction(reports["eager-fp32"], flops)[0] if "eager-fp32" in reports else None
        for engine, report in reports.items():
            latency, fraction = median_latency_and_fraction(report, flops)
            bf16_rate = report["bf16_mm_flops"] / report["bf16_mm_seconds"]
            agreement = (
                f"{(np.load(folder / f'mask-{engine}.npy') == reference).mean():.2%}" if reference is not None else "-"
            )
            rows.append([engine, f"{latency:.2f} s", f"{base / latency:.2f}x" if base else "-", f"{fraction:.0%}",
                         f"{flops / latency / bf16_rate:.0%}", agreement, f"{report['peak_rss'] / 2**30:.2f} GiB",
                         f"{report['prepare_seconds']:.1f} s"])  # fmt: skip
        bf16_rates = [r["bf16_mm_flops"] / r["bf16_mm_seconds"] for r in reports.values()]
        print(f"\n## {key} ({'quick ' if args.quick else 'ViT-L, '}{size}x{size}, batch 1, {flops / 1e9:.0f} GFLOP, "
              f"median of {args.repeats}; bf16 matmul {np.median(bf16_rates) / 1e9:.0f} GFLOP/s)\n")  # fmt: skip
        print(table(["engine", "latency (median)", "vs eager fp32", "of its matmul", "of the bf16 matmul",
                     "mask = eager fp32", "peak RSS", "load + warm-up"], rows))  # fmt: skip
        for engine, report in reports.items():
            if report.get("profile"):
                total = sum(seconds for _, seconds in report["profile"])
                print(f"\n{engine}, top layer types by time (PERF_COUNT, one forward, {total:.2f} s in these):\n")
                print(table(["layer type (kernel)", "seconds", "share"],
                            [[name, f"{s:.3f}", f"{s / total:.0%}"] for name, s in report["profile"]]))  # fmt: skip
        if args.predict_rss and (folder / "fp32.xml").is_file():
            baseline = peak_rss_of([sys.executable, "-c", "import setr"])
            rss_rows = [["import setr only", f"{baseline / 2**30:.2f} GiB"]]
            for precision in ("fp32", "bf16"):
                peak = predict_rss(folder, size, precision)
                rss_rows.append(
                    [f"setr predict --exported fp32.xml --precision {precision}", f"{peak / 2**30:.2f} GiB"]
                )
            print("\n" + table(["process", "peak RSS"], rss_rows))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()

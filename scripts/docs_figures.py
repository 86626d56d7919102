"""Draw the documentation's figures into ``docs/img/`` (matplotlib); rerun after a change.

    python scripts/docs_figures.py                         # every figure it has inputs for
    python scripts/docs_figures.py --model runs/train/final

- ``decoders.png``: the Naive, PUP and MLA decoders of ViT-L as each model's own modules report
  them: a forward on the ``meta`` device (no memory, no weights) with hooks that record each
  stage's output shape, and the encoder blocks each head and auxiliary head reads.
- ``predictions.png``: image | ground truth | prediction panels of the model ``examples/train.py``
  trains, on its generated validation images, with the palette legend (needs ``--model``).
- ``precision.png``, ``export.png``, ``cpu_engines.png``: latency bars from the JSON the benchmark scripts write
  (``benchmarks/results/precision.json``, ``benchmarks/results/export.json``).
- ``layers.png``: the package's layers as ``pyproject.toml``'s import-linter contract names them,
  with every import between two of its parts read from the code (grimp, the graph import-linter
  checks): grey arrows point down, red ones would point up (there are none while CI is green).
- ``sizes.png``: latency and memory above the loaded model against input size for the three heads,
  and the explicit-attention reference, from ``benchmarks/results/models.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Patch  # noqa: E402

import setr  # noqa: E402
from setr.data.synthetic import SyntheticShapes  # noqa: E402
from setr.inference import palette_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
RESULTS = ROOT / "benchmarks" / "results"
CASES = (("naive", "cityscapes"), ("pup", "cityscapes"), ("mla", "ade20k"))


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(n) for n in tensor.shape[1:])


def _record(shapes: dict[str, str], name: str, output: torch.Tensor) -> None:
    """A forward hook's body: note the shape, return nothing (a value would replace the output)."""
    shapes[name] = _shape(output)


def decoder_stages(head: str, dataset: str) -> tuple[dict, list[tuple[str, str]], list[str]]:
    """``(config, [(stage, output shape C x h x w)], [aux head descriptions])`` of a ViT-L model, by
    a forward on the meta device. MLA's four parallel neck levels and branches are one box each."""
    with torch.device("meta"):
        model = setr.create_model(f"setr_{head}_vitl_{dataset}", aux_heads=True).eval()
    cfg = model.config
    size = cfg.img_size
    shapes: dict[str, str] = {}
    if model.neck is not None:
        taps = ", ".join(str(b) for b in cfg.mla_indices)
        watched = [(f"4 neck levels (blocks {taps}), each", model.neck.smooth[0]),
                   ("4 branches, each (then x4 up, concatenated)", model.decode_head.branches[0])]  # fmt: skip
    else:
        watched = [(f"stage {i}" + (" (then x2 up)" if i < len(model.decode_head.convs) - 1 else ""), m)
                   for i, m in enumerate(model.decode_head.convs)]  # fmt: skip
    watched.append(("classifier", model.decode_head.classifier))
    for name, module in watched:
        module.register_forward_hook(
            lambda _m, _i, out, name=name: None if name in shapes else _record(shapes, name, out)
        )
    aux: list[str] = []
    for index, module in enumerate(model.aux_heads):
        tap = cfg.aux_indices[index]
        label = f"{type(module).__name__} on " + (f"neck level {tap}" if model.neck is not None else f"block {tap}")
        module.register_forward_hook(lambda _m, _i, out, label=label: aux.append(f"{label} -> {_shape(out)}"))
    logits, _ = model(torch.empty(1, 3, size, size, device="meta"), return_aux=True)
    grid = size // cfg.patch_size
    tokens = ("encoder tokens", f"{cfg['embed_dim']}x{grid}x{grid}")
    return cfg, [tokens, *shapes.items(), ("logits (bilinear up)", _shape(logits))], aux


def draw_decoders(path: Path) -> None:
    fig, axes = plt.subplots(len(CASES), 1, figsize=(13, 3.0 * len(CASES)))
    for ax, (head, dataset) in zip(axes, CASES):
        cfg, stages, aux = decoder_stages(head, dataset)
        size = cfg.img_size
        taps = cfg.mla_indices if head == "mla" else [cfg.decode_index]
        name = "Naive" if head == "naive" else head.upper()
        ax.set_title(f"SETR-{name} (ViT-L, {dataset}, {size}x{size} input): reads encoder "
                     f"block{'s' if len(taps) > 1 else ''} {', '.join(str(t) for t in taps)} (0-based); "
                     "shapes are channels x height x width", loc="left", fontsize=10)  # fmt: skip
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 10)
        ax.axis("off")
        boxes = [("image", f"3x{size}x{size}"), *stages]
        width = 96 / len(boxes)
        for i, (label, shape) in enumerate(boxes):
            x = 2 + i * width
            color = (
                "#dbe9f6" if "neck" in label or "encoder" in label else "#fde7c8" if "logits" in label else "#e6f2dc"
            )
            ax.add_patch(FancyBboxPatch((x, 4.8), width * 0.8, 3.6, boxstyle="round,pad=0.2", fc=color, ec="#555"))
            ax.text(x + width * 0.4, 7.2, label.replace(", each", ",\neach").replace(" (", "\n("), ha="center",
                    va="center", fontsize=7.5)  # fmt: skip
            ax.text(x + width * 0.4, 5.5, shape, ha="center", va="center", fontsize=8, family="monospace")
            if i:
                ax.annotate("", (x - 0.2, 6.6), (x - width * 0.2 + 0.2, 6.6), arrowprops=dict(arrowstyle="->"))
        ax.text(2, 3.0, f"encoder: {cfg['depth']} ViT blocks, {cfg['embed_dim']}-d tokens on a "
                f"{size // cfg['patch_size']}x{size // cfg['patch_size']} grid (patch {cfg['patch_size']})",
                fontsize=9)  # fmt: skip
        ax.text(2, 1.4, "auxiliary heads (training only, aux_heads=True): " + "; ".join(aux), fontsize=7.5, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_predictions(model_dir: Path, path: Path, count: int = 3) -> None:
    model = setr.create_model(model_dir).eval()
    info = model.info
    palette = palette_for(model.num_classes, info.palette)
    dataset = SyntheticShapes(count, split="val", size=(160, 160), num_classes=model.num_classes, seed=0)
    predictor = setr.Predictor(model)
    fig, axes = plt.subplots(count, 3, figsize=(7.5, 2.6 * count))
    colours = torch.tensor(palette, dtype=torch.uint8)
    for row, (image, label) in enumerate(dataset):
        mask = predictor(image).mask
        panels = [image.permute(1, 2, 0), colours[label.clamp(0, len(palette) - 1)], colours[mask]]
        for ax, panel, title in zip(axes[row], panels, ("image", "ground truth", "prediction")):
            ax.imshow(panel.numpy())
            ax.set_title(title if row == 0 else "", fontsize=10)
            ax.axis("off")
    names = info.class_names or [str(i) for i in range(model.num_classes)]
    handles = [Patch(color=[c / 255 for c in palette[i]], label=name) for i, name in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def draw_bars(results: Path, key: str, path: Path, title: str) -> None:
    rows = json.loads(results.read_text())
    cases = list(dict.fromkeys(r["case"] for r in rows))
    kinds = list(dict.fromkeys(r[key] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        xs, ys = [], []
        for c, case in enumerate(cases):
            match = [r for r in rows if r["case"] == case and r[key] == kind]
            if match:
                xs.append(c + k * width)
                ys.append(_median(match[0]["seconds"]))
        bars = ax.bar(xs, ys, width, label=kind)
        ax.bar_label(bars, fmt="%.1f s", fontsize=7)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))], [c.replace(":", " ViT-L, ") + " px" for c in cases])
    ax.set_ylabel("seconds per image (median)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_sizes(results: Path, path: Path) -> None:
    """Latency and memory above the loaded model against input size, per head; explicit attention
    (the official code's) where the run has it."""
    rows = json.loads(results.read_text())
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        case = row["case"]
        label = case["model"]["head"] + (" (explicit attention)" if case["attention"] == "explicit" else "")
        above = (row["peak_bytes"] - row["baseline_bytes"]) / 2**20
        series.setdefault(label, []).append((case["model"]["size"], _median(row["seconds"]), above))
    ticks = sorted({p[0] for points in series.values() for p in points})
    position = {size: index for index, size in enumerate(ticks)}  # evenly spaced: 480 and 512 are close
    for label, points in sorted(series.items()):
        points.sort()
        style = "--" if "explicit" in label else "-"
        xs = [position[p[0]] for p in points]
        time_ax.plot(xs, [p[1] for p in points], style, marker="o", label=label)
        memory_ax.plot(xs, [p[2] for p in points], style, marker="o", label=label)
    names = {480: "Pascal Context, 60 classes", 512: "ADE20K, 150 classes", 768: "Cityscapes, 19 classes"}
    for ax in (time_ax, memory_ax):
        ax.set_xticks(range(len(ticks)), [f"{t}x{t}\n{names.get(t, '')}" for t in ticks], fontsize=8)
        ax.set_xlabel("input: the zoo model of that crop")
    time_ax.set(ylabel="seconds per image (median)", title="latency, ViT-L, CPU fp32")
    memory_ax.set(ylabel="MiB above the loaded model", title="peak memory of the forward (logits included)")
    time_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The package's layers, top to bottom, as pyproject.toml's first import-linter contract names them.
LAYERS = (
    ("setr.cli",),
    ("setr.integrations",),
    ("setr.training",),
    ("setr.inference",),
    ("setr.zoo", "setr.fast", "setr.export"),
    ("setr.models",),
    ("setr.convert", "setr.data", "setr.metrics", "setr.distributed", "setr.lock"),
    ("setr.files", "setr.dtypes", "setr.devices", "setr.errors"),
)
_ROLES = {
    "setr.cli": "one module per subcommand", "setr.integrations": "HF transformers, the Gradio page",
    "setr.training": "recipe, loop pieces, checkpoints",
    "setr.inference": "Predictor, protocols, eval report", "setr.zoo": "names, releases, create_model",
    "setr.fast": "optimize_for_inference", "setr.export": "ONNX, pt2, AOTI, runner",
    "setr.models": "SETRConfig, encoder, heads, SETR,\nthe weight pipeline",
    "setr.convert": "readers, strict loader", "setr.data": "datasets, transforms, resize",
    "setr.metrics": "mIoU", "setr.distributed": "torchrun groups",
    "setr.lock": "output-folder lock", "setr.files": "atomic writes",
    "setr.dtypes": "precision words", "setr.devices": "device choice", "setr.errors": "one-line errors",
}  # fmt: skip


def package_imports() -> set[tuple[str, str]]:
    """Which part of ``LAYERS`` imports which, from the code (grimp's import graph)."""
    import grimp

    graph = grimp.build_graph("setr", exclude_type_checking_imports=True)
    parts = [part for row in LAYERS for part in row]

    def part_of(module: str) -> str | None:
        return next((p for p in parts if module == p or module.startswith(p + ".")), None)

    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            source, target = part_of(module), part_of(imported)
            if source and target and source != target:
                edges.add((source, target))
    return edges


def draw_layers(path: Path) -> None:
    rank = {part: i for i, row in enumerate(LAYERS) for part in row}
    centre: dict[str, tuple[float, float]] = {}
    fig, ax = plt.subplots(figsize=(12, 8.5))
    for i, row in enumerate(LAYERS):
        y = len(LAYERS) - 1 - i
        width = 11.0 / len(row)
        for j, part in enumerate(row):
            x = 0.5 + width * (j + 0.5)
            centre[part] = (x, y)
            box = FancyBboxPatch((x - width / 2 + 0.15, y - 0.3), width - 0.3, 0.6,
                                 boxstyle="round,pad=0.02", fc="#e8f0fe", ec="#3b6fb6")  # fmt: skip
            ax.add_patch(box)
            ax.text(x, y + 0.08, part, ha="center", va="center", fontsize=10, weight="bold")
            ax.text(x, y - 0.15, _ROLES[part], ha="center", va="center", fontsize=7.5)
    for source, target in sorted(package_imports()):
        (x0, y0), (x1, y1) = centre[source], centre[target]
        up = rank[target] < rank[source]
        ax.annotate("", xy=(x1, y1 + 0.3), xytext=(x0, y0 - 0.3),
                    arrowprops=dict(arrowstyle="->", color="red" if up else "#9aa0a6", lw=1.6 if up else 0.7,
                                    alpha=1.0 if up else 0.55))  # fmt: skip
    ax.set_xlim(0, 12)
    ax.set_ylim(-0.6, len(LAYERS) - 0.4)
    ax.axis("off")
    ax.set_title("setr's layers and every import between them (read from the code): arrows point down", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "train" / "final",
                        help="the folder examples/train.py wrote (for predictions.png)")  # fmt: skip
    args = parser.parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    draw_decoders(IMG / "decoders.png")
    print(f"wrote {IMG / 'decoders.png'}")
    draw_layers(IMG / "layers.png")
    print(f"wrote {IMG / 'layers.png'}")
    if (args.model / "config.json").is_file():
        draw_predictions(args.model, IMG / "predictions.png")
        print(f"wrote {IMG / 'predictions.png'}")
    else:
        print(f"skipped predictions.png: no model in {args.model} (run python examples/train.py first)")
    sizes = RESULTS / "models.json"
    if sizes.is_file():
        draw_sizes(sizes, IMG / "sizes.png")
        print(f"wrote {IMG / 'sizes.png'}")
    else:
        print(f"skipped sizes.png: no {sizes} (python benchmarks/models.py --json {sizes})")
    for name, key, title in (
        ("precision", "precision", "fp32 vs bf16 vs int8, optimize_for_inference, CPU (2-core Zen 4), batch 1"),
        ("export", "runtime", "eager optimised vs ONNX Runtime vs AOTInductor vs torch.compile, CPU, fp32, batch 1"),
        ("cpu_engines", "engine", "ours vs OpenVINO vs ONNX Runtime, CPU (2-core Zen 4, no AMX), ViT-L, batch 1"),
    ):
        source = RESULTS / f"{name}.json"
        if source.is_file():
            draw_bars(source, key, IMG / f"{name}.png", title)
            print(f"wrote {IMG / f'{name}.png'}")
        else:
            print(f"skipped {name}.png: no {source} (python benchmarks/{name}.py --json {source})")


if __name__ == "__main__":
    main()

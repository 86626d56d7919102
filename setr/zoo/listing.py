"""The model zoo as rows (for ``setr list``) and as the Markdown table of ``docs/zoo.md``."""

from __future__ import annotations

from ..data.meta import DATASETS
from .table import ZOO, hub_repo_id

__all__ = ["zoo_markdown", "zoo_rows"]


def zoo_rows() -> list[dict[str, object]]:
    """One dict per released checkpoint: name, dataset, head, crop, classes, source, mIoU, ..."""
    rows = []
    for name, entry in ZOO.items():
        dataset = entry.dataset
        for position, (tag, cfg) in enumerate(entry.releases.items()):
            rows.append(
                dict(
                    name=f"{name}.{tag}",
                    default=position == 0,
                    dataset=dataset,
                    head=entry.head,
                    backbone=entry.backbone,
                    crop=DATASETS[dataset].protocol.crop,
                    classes=DATASETS[dataset].num_classes,
                    source=cfg.source,
                    iters=cfg.iters,
                    batch_size=cfg.batch_size,
                    miou=cfg.miou,
                    miou_ms=cfg.miou_ms,
                    hub=hub_repo_id(name, tag),
                )
            )
    return rows


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def zoo_markdown() -> str:
    """The zoo table in Markdown (the bare zoo name loads the row marked default)."""
    lines = [
        "| name | dataset | crop | classes | source | iters | batch | mIoU ss | mIoU ms+flip |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in zoo_rows():
        marker = " (default)" if row["default"] else ""
        lines.append(
            f"| `{row['name']}`{marker} | {row['dataset']} | {row['crop']} | {row['classes']} | {row['source']} "
            f"| {row['iters'] // 1000}k | {row['batch_size']} | {_fmt(row['miou'])} | {_fmt(row['miou_ms'])} |"
        )
    return "\n".join(lines) + "\n"

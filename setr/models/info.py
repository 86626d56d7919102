"""What a model knows about itself beyond its architecture: classes, normalisation, test protocol, provenance.

Every :class:`setr.SETR` carries a :class:`ModelInfo` as ``model.info`` (a plain ``SETR(...)`` has
the defaults: ImageNet normalisation, no dataset, no release). The zoo fills it in from its table;
``save_pretrained`` writes it to ``config.json`` and ``from_pretrained`` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from ..data.meta import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol

__all__ = ["ModelInfo", "Release"]


@dataclass(frozen=True)
class Release:
    """One released checkpoint of a zoo model (a row of the zoo table).

    Attributes:
        source: ``official`` (fudan-zvg/SETR), ``paddlevit`` (BR-IDL/PaddleViT) or ``mmseg``.
        original: where the original checkpoint can be downloaded by hand.
        miou: reported single-scale mIoU (%), from the source's own table.
        miou_ms: reported multi-scale + flip mIoU (%), if any.
        iters: training iterations.
        batch_size: total training batch.
        model_overrides: architecture options in which this release differs from the official
            network (e.g. mmseg's head topology); applied by ``create_model``.
        ms_ratios: multi-scale ratios of this release's ms+flip protocol when they differ from the
            dataset's default.
        notes: anything a user should know.
    """

    source: str
    original: str
    miou: float | None
    miou_ms: float | None = None
    iters: int = 80_000
    batch_size: int = 8
    model_overrides: dict[str, Any] = field(default_factory=dict)
    ms_ratios: tuple[float, ...] | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("ms_ratios") is not None:
            values["ms_ratios"] = tuple(values["ms_ratios"])
        return cls(**values)


@dataclass
class ModelInfo:
    """Facts about a model that are not its architecture.

    Attributes:
        architecture: the registered architecture it was built from (``setr_pup_vitl``), if any.
        name: the zoo name it was built by (``setr_pup_vitl_cityscapes``), if any.
        tag: the release tag whose weights or settings it has (``official_80k``), if any.
        dataset: ``cityscapes``, ``ade20k``, ``pcontext`` or a user's dataset name.
        class_names: one name per output class, when known.
        palette: one RGB colour per class, when known.
        mean: normalisation mean per input channel (RGB on the 0-255 scale).
        std: normalisation std per input channel.
        ignore_index: label value that marks unlabelled pixels.
        reduce_zero_label: labels are shifted down by one, 0 becoming ``ignore_index`` (ADE20K).
        protocol: the official test protocol for its dataset; ``None``: a sliding window of the
            model's crop (see :func:`setr.inference.resolve_protocol`).
        release: the released checkpoint whose weights (or settings) it has.
        encoder_init: the ImageNet weights the official recipe starts its encoder from.
        loaded_from: where its weights came from (``checkpoint``/``format``/``sha256`` or
            ``hub``/``revision``).
        hub_repo: the Hub repository it is published as.
    """

    architecture: str | None = None
    name: str | None = None
    tag: str | None = None
    dataset: str | None = None
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    ignore_index: int = 255
    reduce_zero_label: bool = False
    protocol: EvalProtocol | None = None
    release: Release | None = None
    encoder_init: str | None = None
    loaded_from: dict[str, str] | None = None
    hub_repo: str | None = None

    def __post_init__(self) -> None:
        # Normalise JSON lists (and user lists) to the tuple types above.
        if self.class_names is not None:
            self.class_names = tuple(str(n) for n in self.class_names)
        if self.palette is not None:
            self.palette = tuple(tuple(int(c) for c in colour) for colour in self.palette)  # type: ignore[misc]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if isinstance(self.protocol, dict):
            self.protocol = _protocol_from_dict(self.protocol)
        if isinstance(self.release, dict):
            self.release = Release.from_dict(self.release)

    @property
    def full_name(self) -> str | None:
        """``name.tag`` when both are known, else the name."""
        return f"{self.name}.{self.tag}" if self.name and self.tag else self.name

    def replace(self, **changes: Any) -> ModelInfo:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def for_channels(self, in_chans: int) -> ModelInfo:
        """This info for a model of ``in_chans`` input channels: RGB statistics are carried over
        the way 3-channel weights are adapted (timm's ``adapt_input_conv``): one channel takes the
        means of the three, more channels repeat R, G, B in turn. Unchanged when the count fits;
        set your channels' own statistics with ``replace(mean=..., std=...)``."""
        if len(self.mean) == in_chans or len(self.mean) != 3:
            return self
        if in_chans == 1:
            return self.replace(mean=(sum(self.mean) / 3,), std=(sum(self.std) / 3,))
        return self.replace(
            mean=tuple(self.mean[i % 3] for i in range(in_chans)), std=tuple(self.std[i % 3] for i in range(in_chans))
        )

    def without_classes(self) -> ModelInfo:
        """A copy that forgets what no longer holds after the classifiers are re-initialised:
        class names, palette and the release's reported numbers."""
        return self.replace(class_names=None, palette=None, release=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (``config.json``'s ``info``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["protocol"] = dataclasses.asdict(self.protocol) if self.protocol is not None else None
        data["release"] = self.release.to_dict() if self.release is not None else None
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelInfo:
        """The inverse of :meth:`to_dict`; also reads the ``pretrained_cfg`` dict of setr 0.1 folders."""
        data = dict(data or {})
        if "weights" in data and "release" not in data:  # setr 0.1 wrote the release as 'weights'
            data["release"] = data.pop("weights")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _protocol_from_dict(data: dict[str, Any]) -> EvalProtocol:
    known = {f.name for f in fields(EvalProtocol)}
    values = {k: v for k, v in data.items() if k in known}
    if values.get("test_scale") is not None:
        values["test_scale"] = tuple(values["test_scale"])
    if values.get("ms_ratios") is not None:
        values["ms_ratios"] = tuple(values["ms_ratios"])
    return EvalProtocol(**values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value

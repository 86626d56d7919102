"""The configuration of a SETR network: one frozen, typed dataclass and the official topology tables.

:class:`SETRConfig` holds every constructor argument of :class:`setr.SETR`, checked and resolved
(no ``None`` left once built), and round-trips through ``config.json`` (:meth:`SETRConfig.to_dict`
/ :meth:`SETRConfig.from_dict`). The official head topologies and encoder taps are written here,
once; the heads and the zoo read them from here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "AUX_STAGES", "DECODE_STAGES", "HEAD_TYPES", "MODEL_TYPE", "SETRConfig", "StageTopology", "as_config",
    "check_block_index", "check_num_classes", "default_taps", "official_aux_indices", "take_indices",
]  # fmt: skip

HEAD_TYPES = ("naive", "pup", "mla")
MODEL_TYPE = "setr"
"""``config.json``'s ``model_type``: transformers' Auto classes find SETR by it; not a field."""


class StageTopology(NamedTuple):
    """The conv stages of a Naive/PUP head: the kernel of every stage, the upsampling after each."""

    kernel_size: int
    up_scales: tuple[int, ...]


# The official heads (fudan-zvg/SETR): decode heads and the Naive/PUP auxiliary heads.
DECODE_STAGES = {"naive": StageTopology(1, (1,)), "pup": StageTopology(3, (2, 2, 2, 1))}
AUX_STAGES = {"naive": StageTopology(1, (1,)), "pup": StageTopology(3, (4,))}

# The encoder taps of the official configs: ViT-L (24 blocks) and ViT-B/DeiT-B (12 blocks).
# "naive"/"pup" are the auxiliary heads' blocks, "mla" the four blocks the MLA neck reads.
_OFFICIAL_TAPS: dict[int, dict[str, tuple[int, ...]]] = {
    24: {"naive": (9, 14, 19), "pup": (9, 14, 19, 23), "mla": (5, 11, 17, 23)},
    12: {"naive": (2, 5, 8), "pup": (4, 7, 9, 11), "mla": (2, 5, 8, 11)},
}
_MLA_LEVELS = 4


def default_taps(head: str, depth: int) -> list[int]:
    """The official encoder taps of ``head`` for an encoder of ``depth`` blocks.

    Naive/PUP: the auxiliary heads' blocks; MLA: the neck's four blocks. Depths 24 (ViT-L) and 12
    (ViT-B, DeiT-B) have official configs; other depths scale ViT-L's as ``floor(i * depth / 24)``.
    """
    if depth in _OFFICIAL_TAPS:
        return list(_OFFICIAL_TAPS[depth][head])
    return [i * depth // 24 for i in _OFFICIAL_TAPS[24][head]]


def official_aux_indices(head: str, depth: int) -> list[int]:
    """What the official config's auxiliary heads read: encoder blocks for Naive/PUP
    (:func:`default_taps`), all four neck levels for MLA."""
    return list(range(_MLA_LEVELS)) if head == "mla" else default_taps(head, depth)


def check_block_index(index: object, depth: int, what: str = "block index") -> int:
    """``index`` as a block of an encoder of ``depth`` blocks (negative counts from the end).

    Raises:
        ValueError: not an integer, or out of range; the message names ``what`` and the depth.
    """
    if not _is_int(index) or not -depth <= index < depth:
        raise ValueError(f"{what} {index!r} is out of range for an encoder of depth {depth}")
    return index % depth


def take_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """Block indices in timm's meaning: ``n`` the last ``n``, a sequence those (negative from the
    end), ``None`` all; checked against ``depth``."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 1 <= indices <= depth:
            raise ValueError(f"indices={indices}: take between 1 and {depth} last blocks")
        return list(range(depth - indices, depth))
    return sorted({check_block_index(i, depth) for i in indices})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_POSITIVE_INTS = ("num_classes", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                  "head_channels", "mla_channels", "mla_head_channels", "mla_classifier_kernel",
                  "decode_kernel_size", "aux_kernel_size")  # fmt: skip
_BOOLS = ("qkv_bias", "class_token", "patch_bias", "head_conv_bias", "mla_align_corners", "mla_aux_bias",
          "grad_checkpointing")  # fmt: skip
_INT_TUPLES = ("aux_indices", "mla_indices", "decode_up_scales", "aux_up_scales")
_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")
_MLA_ONLY = ("mla_indices",)
_UP_HEAD_ONLY = ("decode_index", "decode_kernel_size", "decode_up_scales", "aux_kernel_size", "aux_up_scales")


@dataclasses.dataclass(frozen=True)
class SETRConfig:
    """Every choice that defines a SETR network (the architecture, not the weights or the data).

    Build it with keywords (``None`` means "the official value" where a field allows it); it is
    checked and resolved on construction, so ``SETRConfig(**config.to_dict()) == config``. Lists
    are stored as tuples. Change a field with ``dataclasses.replace(config, field=value)``.

    Args:
        head: decoder type, ``"naive"``, ``"pup"`` or ``"mla"``.
        num_classes: output classes (at least 2: SETR segments with a softmax over classes).
        img_size: training crop side (sets the stored position-embedding grid); inputs of any size
            are accepted.
        patch_size: ViT patch side.
        in_chans: image channels.
        embed_dim: token width D.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias in the qkv projection.
        class_token: run a cls token through the blocks. Default: True for Naive/PUP, False for MLA
            (the official code drops it before the first block).
        patch_bias: bias in the patch embedding (every released SETR checkpoint has one;
            mmsegmentation >= 1.2 trains without it).
        decode_index: encoder block (0-based) read by the Naive/PUP decode head. Default
            ``depth - 1``.
        aux_indices: what each auxiliary head reads: encoder blocks for Naive/PUP, neck levels for
            MLA; one training-only auxiliary head per entry. Default: none, so that a plain
            ``model(x)`` uses every parameter (DDP without ``find_unused_parameters``). The official
            recipe's heads are :func:`official_aux_indices`.
        mla_indices: the 4 encoder blocks the MLA neck reads. Default :func:`default_taps`.
        head_channels: width of the Naive/PUP conv stages.
        head_conv_bias: bias in the Naive/PUP stage convolutions (official: yes; mmseg: no).
        decode_kernel_size: conv kernel of the decode head (official: :data:`DECODE_STAGES`).
        decode_up_scales: upsampling after each decode conv stage (official: :data:`DECODE_STAGES`).
        aux_kernel_size: conv kernel of the Naive/PUP auxiliary heads (official: :data:`AUX_STAGES`).
        aux_up_scales: upsampling after each auxiliary conv stage (official: :data:`AUX_STAGES`).
        mla_channels: width of the MLA neck.
        mla_head_channels: width of each MLA head branch.
        mla_classifier_kernel: MLA classifier kernel (official 3).
        mla_align_corners: ``align_corners`` of the MLA x4 upsampling (official True).
        mla_aux_bias: bias in the MLA auxiliary classifiers (official False).
        drop_rate: dropout in the encoder.
        attn_drop_rate: attention dropout.
        drop_path_rate: stochastic depth of the last block (linear from 0).
        grad_checkpointing: recompute encoder blocks in the backward pass to save memory.
    """

    head: str = "pup"
    num_classes: int = 19
    img_size: int = 768
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool | None = None
    patch_bias: bool = True
    decode_index: int | None = None
    aux_indices: tuple[int, ...] | None = None
    mla_indices: tuple[int, ...] | None = None
    head_channels: int = 256
    head_conv_bias: bool = True
    decode_kernel_size: int | None = None
    decode_up_scales: tuple[int, ...] | None = None
    aux_kernel_size: int | None = None
    aux_up_scales: tuple[int, ...] | None = None
    mla_channels: int = 256
    mla_head_channels: int = 128
    mla_classifier_kernel: int = 3
    mla_align_corners: bool = True
    mla_aux_bias: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        self._check_types()
        self._check_values()
        for name, value in self._resolved().items():
            object.__setattr__(self, name, value)
        self._check_taps()

    # ------------------------------------------------------------------------------- checks
    def _check_types(self) -> None:
        """One message per bad field, naming it and its value (``None`` = the official value)."""
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise TypeError(f"SETR({name}={value!r}): expected a positive integer")
            if value is not None and value < 1:
                raise ValueError(f"SETR({name}={value!r}): {name} must be at least 1")
        for name in _BOOLS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"SETR({name}={value!r}): expected True or False")
        for name in _INT_TUPLES:
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, list | tuple) or not all(_is_int(v) and v >= 0 for v in value)
            ):
                raise TypeError(f"SETR({name}={value!r}): expected a list of non-negative integers")
        if self.decode_index is not None and (not _is_int(self.decode_index) or self.decode_index < 0):
            raise TypeError(f"SETR(decode_index={self.decode_index!r}): expected a non-negative integer")
        if not _is_number(self.mlp_ratio) or self.mlp_ratio <= 0:
            raise TypeError(f"SETR(mlp_ratio={self.mlp_ratio!r}): expected a positive number")
        for name in _RATES:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise TypeError(f"SETR({name}={value!r}): expected a number in [0, 1)")
        if not isinstance(self.head, str):
            raise TypeError(f"SETR(head={self.head!r}): expected 'naive', 'pup' or 'mla'")

    def _check_values(self) -> None:
        if self.head not in HEAD_TYPES:
            raise ValueError(f"unknown head {self.head!r}: choose one of {', '.join(HEAD_TYPES)}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        check_num_classes(self.num_classes)
        other_heads = _UP_HEAD_ONLY if self.head == "mla" else _MLA_ONLY
        given = sorted(name for name in other_heads if getattr(self, name) is not None)
        if given:
            raise ValueError(f"{', '.join(given)} do(es) not apply to a {self.head} head; remove it or change head")
        for name in ("decode_up_scales", "aux_up_scales"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise ValueError(f"SETR({name}=[]): a head needs at least one conv stage")

    def _resolved(self) -> dict[str, Any]:
        """The official values of the fields left ``None``, and every list as a tuple."""
        is_mla = self.head == "mla"
        resolved: dict[str, Any] = {
            "class_token": (not is_mla) if self.class_token is None else self.class_token,
            "aux_indices": tuple(self.aux_indices or ()),
            "mlp_ratio": float(self.mlp_ratio),
        }
        for name in _RATES:
            resolved[name] = float(getattr(self, name))
        if is_mla:
            taps = self.mla_indices if self.mla_indices is not None else default_taps("mla", self.depth)
            resolved["mla_indices"] = tuple(taps)
            return resolved
        decode, aux = DECODE_STAGES[self.head], AUX_STAGES[self.head]
        resolved.update(
            decode_index=self.depth - 1 if self.decode_index is None else self.decode_index,
            decode_kernel_size=self.decode_kernel_size or decode.kernel_size,
            decode_up_scales=tuple(decode.up_scales if self.decode_up_scales is None else self.decode_up_scales),
            aux_kernel_size=self.aux_kernel_size or aux.kernel_size,
            aux_up_scales=tuple(aux.up_scales if self.aux_up_scales is None else self.aux_up_scales),
        )
        return resolved

    def _check_taps(self) -> None:
        if self.head == "mla":
            if len(self.mla_indices) != _MLA_LEVELS:
                raise ValueError(f"mla_indices needs 4 encoder blocks, got {list(self.mla_indices)}")
            for i in self.aux_indices:
                if not 0 <= i < _MLA_LEVELS:
                    raise ValueError(f"MLA aux_indices name neck levels 0..3, got {i}")
        for i in self.encoder_taps:
            if i >= self.depth:  # negative values were refused above: taps are written 0-based
                check_block_index(i, self.depth, "encoder block index")

    # ---------------------------------------------------------------------------- derived facts
    @property
    def encoder_taps(self) -> tuple[int, ...]:
        """The encoder blocks the heads read: the MLA neck's four, or the decode and aux blocks."""
        if self.head == "mla":
            return self.mla_indices
        return (self.decode_index, *self.aux_indices)

    @property
    def decode_stages(self) -> StageTopology:
        """The Naive/PUP decode head's stages."""
        return StageTopology(self.decode_kernel_size, self.decode_up_scales)

    @property
    def aux_stages(self) -> StageTopology:
        """The Naive/PUP auxiliary heads' stages."""
        return StageTopology(self.aux_kernel_size, self.aux_up_scales)

    # ----------------------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (tuples as lists): what ``config.json`` holds."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SETRConfig:
        """Build from :meth:`to_dict`'s form (also what setr 0.2 wrote to ``config.json``); a
        ``model_type`` of :data:`MODEL_TYPE` (``config.json`` has one for transformers) is ignored.

        Raises:
            TypeError: ``values`` is not a mapping, or names a field SETR does not have.
            ValueError: ``values`` has the ``model_type`` of another model.
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"a SETR config is a JSON object of fields, got {type(values).__name__}")
        if "model_type" in values:
            if values["model_type"] != MODEL_TYPE:
                raise ValueError(f"model_type {values['model_type']!r}: the config of another model, not SETR's")
            values = {name: value for name, value in values.items() if name != "model_type"}
        unknown = sorted(set(values) - cls.field_names())
        if unknown:
            raise TypeError(f"unknown SETR config field(s) {', '.join(map(repr, unknown))}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> SETRConfig:
        """A copy with ``changes`` (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    # setr 0.2's config was a dict: its read-only view (``config["head"]``, ``SETR(**model.config)``)
    # still works, with a warning naming the replacement.
    def __getitem__(self, name: str) -> Any:
        if name not in self.field_names():
            raise KeyError(name)
        warnings.warn(
            f"model.config[{name!r}] is deprecated: model.config is a SETRConfig; read model.config.{name} "
            "(and SETR(model.config) rebuilds the model, model.config.to_dict() gives the dict)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _jsonable(getattr(self, name))

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self.field_names() else default

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def check_num_classes(num_classes: int) -> None:
    """Refuse a class count SETR cannot segment with (one message per case)."""
    if not _is_int(num_classes):
        raise TypeError(f"num_classes={num_classes!r}: expected a positive integer")
    if num_classes < 1:
        raise ValueError(f"SETR(num_classes={num_classes!r}): num_classes must be at least 1")
    if num_classes == 1:
        raise ValueError(
            "num_classes=1: SETR segments with a softmax over classes, so binary segmentation is "
            "num_classes=2 (background, foreground); the foreground probability is probs[:, 1]"
        )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def as_config(config: SETRConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> SETRConfig:
    """A :class:`SETRConfig` from a config, a mapping of fields, or keywords (keywords win)."""
    if config is None:
        return SETRConfig(**kwargs)
    if isinstance(config, SETRConfig):
        return dataclasses.replace(config, **kwargs) if kwargs else config
    if isinstance(config, Mapping):
        return SETRConfig.from_dict({**config, **kwargs})
    raise TypeError(f"SETR(config={config!r}): expected a SETRConfig, a dict of its fields, or keywords")

"""``SetrConfig``: a SETR network's :class:`~setr.SETRConfig` and :class:`~setr.ModelInfo` as a transformers config.

Its ``config.json`` is a superset of the one :meth:`setr.SETR.save_pretrained` writes (``model_type``,
every ``SETRConfig`` field at the top level, the ``info`` object), plus what transformers adds
(``id2label``, ``auto_map``, ...). So ``setr.from_pretrained`` reads a folder written through
transformers, and the Auto classes read a folder of ours (one written before setr wrote
``model_type`` loads with ``SetrForSemanticSegmentation.from_pretrained``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig

from ..files import atomic_write
from ..models import ModelInfo, SETRConfig
from ..models.config import MODEL_TYPE

__all__ = ["AUTO_MAP", "REMOTE_CODE_FILE", "SetrConfig", "write_remote_code"]

REMOTE_CODE_FILE = "setr_transformers.py"
"""The module ``auto_map`` names, written into every saved folder: it imports the classes from setr."""
_REMOTE_MODULE = REMOTE_CODE_FILE.removesuffix(".py")
AUTO_MAP = {
    "AutoConfig": f"{_REMOTE_MODULE}.SetrConfig",
    "AutoModelForSemanticSegmentation": f"{_REMOTE_MODULE}.SetrForSemanticSegmentation",
    "AutoImageProcessor": f"{_REMOTE_MODULE}.SetrImageProcessor",
}
_REMOTE_CODE = '''"""SETR for transformers' trust_remote_code=True: the classes live in setr (pip install "setr-pytorch[transformers]")."""

from setr.integrations.transformers import SetrConfig, SetrForSemanticSegmentation, SetrImageProcessor

__all__ = ["SetrConfig", "SetrForSemanticSegmentation", "SetrImageProcessor"]
'''
_FIELDS = SETRConfig.field_names() - {"num_classes"}  # the class count is transformers' num_labels


def write_remote_code(folder: str | os.PathLike) -> None:
    """Write :data:`REMOTE_CODE_FILE` into ``folder`` (what ``auto_map`` points to)."""
    with atomic_write(Path(folder) / REMOTE_CODE_FILE, "w") as file:
        file.write(_REMOTE_CODE)


def _is_generic(id2label: Mapping[int, str]) -> bool:
    """Whether ``id2label`` holds transformers' placeholder names ``LABEL_0``, ``LABEL_1``, ..."""
    return all(name == f"LABEL_{i}" for i, name in id2label.items())


class SetrConfig(PreTrainedConfig):
    """The configuration of :class:`SetrForSemanticSegmentation`: every :class:`setr.SETRConfig` field
    as an attribute (``config.head``, ``config.embed_dim``, ...), ``info`` (the
    :meth:`setr.ModelInfo.to_dict` of the model: classes, palette, mean/std, test protocol) and
    transformers' ``id2label``/``label2id`` from the class names.

    ``num_classes`` is ``num_labels`` (one number, however it is set). The fields are checked by
    :class:`setr.SETRConfig` on construction (one line naming a bad field).

    Example:
        >>> config = SetrConfig.from_setr(setr.SETRConfig(head="mla", num_classes=150), model.info)
        >>> config.setr_config == setr.SETRConfig(head="mla", num_classes=150)
        True
    """

    model_type = MODEL_TYPE
    attribute_map = {"num_classes": "num_labels"}

    def __init__(self, info: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """
        Args:
            info: :meth:`setr.ModelInfo.to_dict` of the model (default: ImageNet normalisation, no
                classes).
            **kwargs: :class:`setr.SETRConfig` fields and transformers' config options. The class
                count is ``num_labels`` if given (``from_pretrained(..., num_labels=K)``), else
                ``num_classes``, else the length of ``id2label``, else of ``info``'s class names.
        """
        fields = {name: kwargs.pop(name) for name in list(kwargs) if name in _FIELDS}
        num_labels, num_classes = kwargs.pop("num_labels", None), kwargs.pop("num_classes", None)
        model_info = ModelInfo.from_dict(dict(info) if isinstance(info, Mapping) else None)
        id2label = kwargs.pop("id2label", None)
        id2label = {int(i): str(name) for i, name in id2label.items()} if id2label else None
        names = model_info.class_names
        count = next(
            (n for n in (num_labels, num_classes, id2label and len(id2label), names and len(names)) if n),
            SETRConfig.num_classes,
        )
        setr_config = SETRConfig.from_dict({**fields, "num_classes": count})  # checks every field
        if id2label is None or len(id2label) != count:
            id2label = dict(enumerate(names)) if names and len(names) == count else None
        kwargs.pop("label2id", None)  # made from id2label below
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        super().__init__(id2label=id2label, **kwargs)
        if id2label is None:
            self.num_labels = count  # transformers' placeholder names LABEL_0 ...
        self.label2id = {name: i for i, name in self.id2label.items()}
        for name, value in setr_config.to_dict().items():
            if name in _FIELDS:
                setattr(self, name, value)
        self.info = model_info.to_dict()

    @classmethod
    def from_setr(cls, config: SETRConfig, info: ModelInfo | None = None, **kwargs: Any) -> SetrConfig:
        """The transformers config of a SETR network: ``SetrConfig.from_setr(model.config, model.info)``."""
        info_dict = info.to_dict() if info is not None else None
        return cls(info=info_dict, **{**config.to_dict(), **kwargs})

    @property
    def setr_config(self) -> SETRConfig:
        """The network's :class:`setr.SETRConfig` (``num_classes`` is ``num_labels``)."""
        return SETRConfig.from_dict({**{name: getattr(self, name) for name in _FIELDS}, "num_classes": self.num_labels})

    @property
    def model_info(self) -> ModelInfo:
        """The :class:`setr.ModelInfo` of the model, its class names those of ``id2label`` (unless
        these are transformers' placeholders ``LABEL_i`` and the info has none)."""
        info = ModelInfo.from_dict(self.info)
        names = [self.id2label[i] for i in range(self.num_labels)]
        if info.class_names is not None and list(info.class_names) == names:
            return info
        if len(info.class_names or ()) != len(names):
            info = info.without_classes()
        return info if _is_generic(self.id2label) else info.replace(class_names=names)

    def to_dict(self) -> dict[str, Any]:
        """transformers' dict plus ``num_classes`` and ``info`` as ``setr.SETR.save_pretrained`` writes them."""
        output = super().to_dict()
        output["num_classes"] = self.num_labels
        output["info"] = self.model_info.to_dict()
        return output

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> None:
        """``config.json`` and :data:`REMOTE_CODE_FILE` (the module ``auto_map`` names)."""
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        write_remote_code(save_directory)

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """Nothing to do: ``auto_map`` is always written, pointing at :data:`REMOTE_CODE_FILE`
        (transformers' own registration would copy this module, which imports setr relatively)."""

"""``SetrForSemanticSegmentation``: :class:`setr.SETR` as a transformers ``PreTrainedModel``.

The wrapper registers the network's own submodules (``encoder``, ``neck``, ``decode_head``,
``aux_heads``) as its children, so its ``state_dict`` keys are exactly ``SETR``'s: a folder written
by :meth:`setr.SETR.save_pretrained` and one written through transformers hold the same
``model.safetensors`` and load into each other without conversion. The forward is ``SETR``'s.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ..models import SETR, ViTEncoder
from ..training.loss import SETRLoss
from .hf_config import SetrConfig
from .hf_processor import SetrImageProcessor

__all__ = ["SetrForSemanticSegmentation"]

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


def _check_is_setr(config: dict[str, Any], source: str | os.PathLike) -> None:
    """Refuse the ``config.json`` of another model: SETR's has ``model_type`` ``setr``, or (written
    by :meth:`setr.SETR.save_pretrained` before it wrote ``model_type``) no ``model_type`` and a ``head``."""
    model_type = config.get("model_type")
    if model_type == SetrConfig.model_type or (model_type is None and "head" in config):
        return
    what = f"model_type {model_type!r}" if model_type else "no model_type and no SETR head"
    raise ValueError(f"{source}: not a SETR model ({what} in its config.json)")


class SetrForSemanticSegmentation(PreTrainedModel):
    """SETR for semantic segmentation, the transformers way (``AutoModelForSemanticSegmentation``,
    ``pipeline("image-segmentation")``, ``Trainer``).

    ``forward(pixel_values, labels=None)`` returns a ``SemanticSegmenterOutput``: ``logits``
    ``(B, num_labels, H, W)`` at the input size (as :class:`setr.SETR` gives them) and, with labels,
    the loss of the official recipe (:class:`setr.training.SETRLoss`: cross-entropy with the
    model's ignore index, 255, plus 0.4 x each auxiliary head's when the model has them).

    ``model.network`` is the :class:`setr.SETR` itself (the same modules and parameters), for
    :class:`setr.Predictor` and the rest of setr.
    """

    config_class = SetrConfig
    config: SetrConfig
    base_model_prefix = ""
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]

    def __init__(self, config: SetrConfig) -> None:
        super().__init__(config)
        network = SETR(config.setr_config)
        network.info = config.model_info.for_channels(network.config.in_chans)
        # Not registered as a child: its children are ours, so the keys are SETR's (no prefix).
        object.__setattr__(self, "network", network)
        for name, child in network.named_children():
            self.add_module(name, child)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``from_pretrained``, strict as setr's loaders are: a folder or repo that is
        not a SETR model, or weights with missing or unexpected keys, are refused in one line.

        Reads folders of both kinds, written through transformers or by :meth:`setr.SETR.save_pretrained`,
        and those setr wrote before it wrote ``model_type`` (which ``AutoModelForSemanticSegmentation``
        needs, and this class does not).
        """
        if not isinstance(kwargs.get("config"), PreTrainedConfig):
            where = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
            config, _ = SetrConfig.get_config_dict(pretrained_model_name_or_path, **where)
            _check_is_setr(config, pretrained_model_name_or_path)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        for kind in ("missing_keys", "unexpected_keys"):
            if info.get(kind):
                keys = sorted(info[kind])
                raise ValueError(
                    f"{pretrained_model_name_or_path}: {len(keys)} {kind.replace('_', ' ')} in the weights "
                    f"({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}): not this SETR's weights"
                )
        return (model, info) if wants_info else model

    @classmethod
    def from_setr(cls, network: SETR) -> SetrForSemanticSegmentation:
        """A copy of a :class:`setr.SETR` (its weights, config and info) as a transformers model."""
        model = cls(SetrConfig.from_setr(network.config, network.info))
        model.load_state_dict(network.state_dict(), strict=True)
        model.network.info = network.info
        return model.train(network.training)

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SemanticSegmenterOutput | tuple[torch.Tensor, ...]:
        """
        Args:
            pixel_values: normalised images ``(B, in_chans, H, W)`` (:class:`SetrImageProcessor`).
            labels: class indices ``(B, H, W)``; the model's ``ignore_index`` (255) marks pixels
                without a label.
            return_dict: a ``SemanticSegmenterOutput`` (default) or a tuple ``(loss?, logits)``.

        Returns:
            ``logits`` ``(B, num_labels, H, W)`` and, with ``labels``, ``loss``.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        loss = None
        if labels is None:
            logits = self.network(pixel_values)
        else:
            logits, aux = self.network(pixel_values, return_aux=True)
            criterion = SETRLoss(ignore_index=self.network.info.ignore_index)
            loss, _ = criterion(logits, aux, labels.long())
        if not return_dict:
            return (logits,) if loss is None else (loss, logits)
        return SemanticSegmenterOutput(loss=loss, logits=logits)

    # --------------------------------------------------------------- transformers' hooks
    def train(self, mode: bool = True) -> SetrForSemanticSegmentation:
        super().train(mode)
        self.network.train(mode)  # SETR's own flag (and a frozen encoder stays in eval mode)
        return self

    def init_weights(self) -> None:
        """Nothing to redo: SETR initialises itself on construction (the official scheme)."""

    def _init_weights(self, module: nn.Module) -> None:
        """Weights transformers did not load (``ignore_mismatched_sizes``): SETR's initialisation."""
        if isinstance(module, ViTEncoder):
            module.init_weights()
        elif not list(module.children()) and hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def _set_gradient_checkpointing(self, enable: bool = True, *args: Any, **kwargs: Any) -> None:
        """``gradient_checkpointing_enable()`` / ``TrainingArguments(gradient_checkpointing=True)``:
        SETR recomputes its encoder blocks in the backward pass (:meth:`setr.SETR.set_grad_checkpointing`)."""
        self.network.set_grad_checkpointing(enable)

    @property
    def is_activation_checkpointing(self) -> bool:
        return bool(self.network.encoder.grad_checkpointing)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """transformers' files (``config.json``, ``model.safetensors``), the module ``auto_map``
        names, and ``preprocessor_config.json`` (the model's test protocol and normalisation)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        SetrImageProcessor.from_model_info(self.network.info, self.network.config.in_chans).save_pretrained(
            save_directory
        )
        return result

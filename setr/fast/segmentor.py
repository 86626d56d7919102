"""The segmentor for inference: its output crop as a view, not a copy."""

from __future__ import annotations

import torch

from ..models.segmentor import SETR

__all__ = ["FastSETR"]


class FastSETR(SETR):
    """A :class:`~setr.models.SETR` whose inference forward cuts the patch padding from its logits
    by slicing (a view) rather than by the copying crop the reference uses for ``torch.export``'s
    sake: on an input that is already a multiple of the patch, the crop then costs nothing, where
    the copy held a second set of logits (157 MB for one 512x512 window of 150 classes). In
    training mode or with autograd on it is the plain forward."""

    def crop_padding(self, maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().crop_padding(maps, height, width)
        return maps[..., :height, :width]

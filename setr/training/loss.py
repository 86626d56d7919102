"""The SETR training loss: cross-entropy on the decode head plus weighted auxiliary heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import resize

__all__ = ["SETRLoss"]


class SETRLoss(nn.Module):
    """``CE(decode) * decode_weight + sum_i CE(aux_i) * aux_weight`` with an ignore index.

    ``reduction`` chooses the denominator of each per-pixel mean:

    * ``"all"`` (default, the official code: mmseg 0.x computes the per-pixel loss with
      ``reduction='none'`` and takes ``.mean()``): ignored pixels count as zero-loss pixels, so a
      crop that is mostly padding contributes a smaller gradient. The official learning rates were
      tuned with it.
    * ``"valid"`` (PyTorch's ``cross_entropy`` default): the mean over non-ignored pixels only.

    Forward: logits ``(B, C, h, w)`` (resized bilinearly to the label size if they differ), a list of
    auxiliary logits of the same form, labels ``(B, H, W)``. Returns ``(total, parts)`` where
    ``parts`` maps ``"decode"``, ``"aux0"``, ``"aux1"``, ... to the unweighted detached losses.
    """

    def __init__(
        self,
        aux_weight: float | Sequence[float] = 0.4,
        decode_weight: float = 1.0,
        ignore_index: int = 255,
        reduction: str = "all",
    ) -> None:
        """
        Args:
            aux_weight: weight of each auxiliary head (official 0.4), or one weight per head.
            decode_weight: weight of the decode head (official 1.0).
            ignore_index: label value that contributes no loss (official 255).
            reduction: ``"all"`` (official) or ``"valid"``; see the class description.
        """
        super().__init__()
        if reduction not in ("all", "valid"):
            raise ValueError(f"reduction must be 'all' (official) or 'valid', got {reduction!r}")
        self.aux_weight = aux_weight
        self.decode_weight = decode_weight
        self.ignore_index = ignore_index
        self.reduction = reduction

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = resize(logits, (target.shape[-2], target.shape[-1]))
        per_pixel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        if self.reduction == "all":
            return per_pixel.mean()
        valid = (target != self.ignore_index).sum().clamp(min=1)
        return per_pixel.sum() / valid

    def forward(
        self, logits: torch.Tensor, aux_logits: Sequence[torch.Tensor], target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if target.ndim != 3 or logits.ndim != 4 or logits.shape[0] != target.shape[0]:
            raise ValueError(
                f"expected logits (B, C, H, W) and labels (B, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
        weights = (
            [self.aux_weight] * len(aux_logits) if isinstance(self.aux_weight, (int, float)) else list(self.aux_weight)
        )
        if len(weights) != len(aux_logits):
            raise ValueError(f"{len(weights)} auxiliary weights for {len(aux_logits)} auxiliary heads")
        decode = self._ce(logits, target)
        total = self.decode_weight * decode
        parts = {"decode": decode.detach()}
        for i, (aux, weight) in enumerate(zip(aux_logits, weights)):
            loss = self._ce(aux, target)
            total = total + weight * loss
            parts[f"aux{i}"] = loss.detach()
        return total, parts

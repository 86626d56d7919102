"""The Naive/PUP head for inference: channels-last stages, and PUP's last stage in row strips."""

from __future__ import annotations

import torch

from ..models.heads import UpHead, resize
from .strips import STRIP_BYTES, can_run_in_strips, upsample_conv_classify_in_strips

__all__ = ["FastUpHead", "channels_last_map", "runs_last_stage_in_strips"]


def runs_last_stage_in_strips(head: UpHead) -> bool:
    """Whether ``head``'s last ``upsample -> conv stage -> classifier`` can run strip by strip (PUP:
    its two largest maps then never exist whole; see :mod:`setr.fast.strips`)."""
    scales = head.up_scales
    return (
        len(scales) >= 2 and scales[-1] == 1 and scales[-2] > 1 and can_run_in_strips(head.convs[-1], head.classifier)
    )


class FastUpHead(UpHead):
    """An :class:`~setr.models.heads.UpHead` whose inference forward runs the last stage in strips
    when :func:`runs_last_stage_in_strips` allowed it at optimisation time (``strips``); its stages
    are whatever the optimisation made them (folded, channels-last), and the token map is a
    channels-last view rather than a copy. In training mode or with autograd on it is the plain forward.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    strips: bool = False
    """Run the last stage in strips (set by :func:`setr.optimize_for_inference`)."""
    strip_bytes: int = STRIP_BYTES
    """Bytes of upsampled map per strip."""

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], out_size: tuple[int, int]) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(tokens, grid, out_size)
        x = channels_last_map(self.norm(tokens), grid)
        whole_stages = len(self.convs) - 2 if self.strips else len(self.convs)
        for conv, scale in zip(self.convs[:whole_stages], self.up_scales[:whole_stages]):
            x = conv(x)
            if scale != 1:
                x = resize(x, (x.shape[-2] * scale, x.shape[-1] * scale))
        if not self.strips:
            return resize(self.classifier(x), out_size)
        x = self.convs[-2](x)
        logits = upsample_conv_classify_in_strips(
            x, self.up_scales[-2], self.convs[-1], self.classifier, self.strip_bytes
        )
        return resize(logits, out_size)


def channels_last_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, D) -> (B, D, h, w)`` as a channels-last view of contiguous tokens (no copy, unlike
    the reference :func:`setr.models.encoder.tokens_to_map`)."""
    batch, count, dim = tokens.shape
    if count != grid[0] * grid[1]:
        raise ValueError(f"{count} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return tokens.reshape(batch, grid[0], grid[1], dim).permute(0, 3, 1, 2)

"""The plain head paths: what the heads computed before the channels-last / BatchNorm-folding work,
op for op as in the official code (NCHW maps, ``conv -> BN -> ReLU`` as three passes).

Used by ``profile_forward.py`` to time the heads' fast path against the plain one side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from setr.models.heads import MLAHead, MLANeck, UpHead


def _map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    batch, _, dim = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, dim, *grid).contiguous()


def _conv_bn_relu(block, x: torch.Tensor) -> torch.Tensor:
    return F.relu(block.bn(block.conv(x)))


def _resize(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def plain_up_head(head: UpHead, tokens: torch.Tensor, grid: tuple[int, int], out_size) -> torch.Tensor:
    """``UpHead.forward`` in NCHW with separate conv, BN and ReLU passes."""
    x = _map(head.norm(tokens), grid)
    for block, scale in zip(head.convs, head.up_scales):
        x = _conv_bn_relu(block, x)
        if scale != 1:
            x = _resize(x, (x.shape[-2] * scale, x.shape[-1] * scale))
    return _resize(head.classifier(x), out_size)


def plain_mla(neck: MLANeck, head: MLAHead, levels: list[torch.Tensor], grid, out_size) -> torch.Tensor:
    """``MLAHead(MLANeck(levels))`` in NCHW with separate conv, BN and ReLU passes."""
    laterals = [_conv_bn_relu(lat, _map(norm(t), grid)) for norm, lat, t in zip(neck.norms, neck.lateral, levels)]
    summed = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        summed.insert(0, summed[0] + lateral)
    maps = [_conv_bn_relu(smooth, x) for smooth, x in zip(neck.smooth, summed)]
    h, w = maps[0].shape[-2:]
    ups = [
        _resize(_conv_bn_relu(branch[1], _conv_bn_relu(branch[0], x)), (4 * h, 4 * w), head.align_corners)
        for branch, x in zip(head.branches, maps)
    ]
    return _resize(head.classifier(torch.cat(ups, dim=1)), out_size)

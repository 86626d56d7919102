"""timm ImageNet ViT/DeiT weights -> the SETR encoder: block outputs equal timm's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from setr import SETR
from setr.convert import ConversionError
from setr.convert.timm import load_timm_encoder

from .conftest import tiny_kwargs

TIMM_TINY = dict(patch_size=16, embed_dim=64, depth=4, num_heads=4, num_classes=7)


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    # Every tensor random (LayerNorm affine included) so a mis-mapped key cannot hide behind 1/0.
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.2)
    return model.eval()


def _resampled(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Test-side bilinear resampling of a square ``(1, g*g, D)`` patch position table."""
    side = int(pos.shape[1] ** 0.5)
    maps = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    maps = F.interpolate(maps, size=(grid, grid), mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)


def _timm_block_outputs(vit, x, pos, prefix_tokens, drop_prefix_before_blocks):
    """Run timm's patch embedding and blocks by hand with the position table ``pos``."""
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([*prefix_tokens, tokens], dim=1) + pos
    skip = len(prefix_tokens)
    if drop_prefix_before_blocks:
        tokens, skip = tokens[:, skip:], 0
    outputs = []
    for block in vit.blocks:
        tokens = block(tokens)
        outputs.append(tokens[:, skip:])
    return outputs


def _encoder_outputs(model: SETR, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        outputs, _ = model.encoder(x, list(range(model.config.depth)))
    return outputs


def test_vit_blocks_match_timm_after_pos_embed_resampling():
    vit = _randomised(VisionTransformer(img_size=48, **TIMM_TINY))  # 3x3 grid; ours is 4x4
    model = SETR(**tiny_kwargs("pup")).eval()
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    report = load_timm_encoder(model, vit.state_dict())

    assert report.dropped.keys() == {"head.weight", "head.bias", "norm.weight", "norm.bias"}
    assert report.pos_embed_grid == ((3, 3), (4, 4))
    for key, value in model.state_dict().items():
        if key in heads_before:
            assert torch.equal(value, heads_before[key]), f"{key} changed: only the encoder is loaded"

    x = torch.randn(2, 3, 64, 64)
    pos = torch.cat([vit.pos_embed[:, :1], _resampled(vit.pos_embed[:, 1:], 4)], dim=1)
    with torch.no_grad():
        expected = _timm_block_outputs(vit, x, pos, [vit.cls_token.expand(2, -1, -1)], False)
    for ours, theirs in zip(_encoder_outputs(model, x), expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_same_grid_keeps_pos_embed_bit_for_bit(tmp_path):
    vit = _randomised(VisionTransformer(img_size=64, **TIMM_TINY))
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    model = SETR(**tiny_kwargs("naive"))
    report = load_timm_encoder(model, path)
    assert report.pos_embed_grid == ((4, 4), (4, 4))
    assert torch.equal(model.encoder.pos_embed, vit.pos_embed)
    assert torch.equal(model.encoder.blocks[2].attn.qkv.weight, vit.blocks[2].attn.qkv.weight)


def test_mla_encoder_drops_cls_token_before_blocks():
    vit = _randomised(VisionTransformer(img_size=32, **TIMM_TINY))
    model = SETR(**tiny_kwargs("mla")).eval()
    report = load_timm_encoder(model, vit.state_dict())
    assert {"cls_token", "pos_embed[:, :1]", "head.weight", "norm.weight"} <= report.dropped.keys()

    x = torch.randn(1, 3, 64, 64)
    pos = torch.cat([vit.pos_embed[:, :1], _resampled(vit.pos_embed[:, 1:], 4)], dim=1)
    with torch.no_grad():
        expected = _timm_block_outputs(vit, x, pos, [vit.cls_token], True)
    for ours, theirs in zip(_encoder_outputs(model, x), expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_deit_distilled_drops_distillation_token(tmp_path):
    deit = _randomised(VisionTransformerDistilled(img_size=48, **TIMM_TINY))
    path = tmp_path / "deit.pth"
    torch.save({"model": deit.state_dict()}, path)  # DeiT's release layout
    model = SETR(**tiny_kwargs("naive")).eval()
    report = load_timm_encoder(model, path)
    assert {"dist_token", "head_dist.weight", "head_dist.bias", "pos_embed[:, 1]"} <= report.dropped.keys()

    # The official code keeps the cls position and the patch positions, and runs without the dist token.
    x = torch.randn(1, 3, 64, 64)
    pos = torch.cat([deit.pos_embed[:, :1], _resampled(deit.pos_embed[:, 2:], 4)], dim=1)
    with torch.no_grad():
        expected = _timm_block_outputs(deit, x, pos, [deit.cls_token], False)
    for ours, theirs in zip(_encoder_outputs(model, x), expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_wrong_width_is_refused_with_shapes():
    vit = VisionTransformer(img_size=64, **dict(TIMM_TINY, embed_dim=32))
    with pytest.raises(ConversionError, match=r"shape mismatch.*embed_dim 64"):
        load_timm_encoder(SETR(**tiny_kwargs("pup")), vit.state_dict())


def test_deeper_checkpoint_is_refused_listing_extra_blocks():
    vit = VisionTransformer(img_size=64, **dict(TIMM_TINY, depth=5))
    with pytest.raises(ConversionError, match=r"not in the model: blocks\.4\."):
        load_timm_encoder(SETR(**tiny_kwargs("pup")), vit.state_dict())


def test_non_vit_state_dict_is_refused():
    with pytest.raises(ConversionError, match="not a timm ViT checkpoint"):
        load_timm_encoder(SETR(**tiny_kwargs("pup")), {"conv1.weight": torch.zeros(1)})

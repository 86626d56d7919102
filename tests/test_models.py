"""One battery of checks over every head: shapes, any input size, config round trip, options."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from setr import SETR, SETRConfig

from .conftest import HEADS, TINY, tiny_kwargs


def tiny(head: str, **extra) -> SETR:
    return SETR(**tiny_kwargs(head, **extra)).eval()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", [(64, 64), (50, 70), (97, 33), (16, 16)])
def test_any_input_size_gives_logits_at_input_size(head, size):
    model = tiny(head)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits, aux = model(x, return_aux=True)
    assert logits.shape == (2, 19, *size)
    assert len(aux) == len(model.config.aux_indices)
    assert all(a.shape == (2, 19, *size) for a in aux)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("head", HEADS)
def test_batch_elements_are_independent(head):
    model = tiny(head)
    x = torch.randn(3, 3, 48, 80)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:2])
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_config_round_trips_through_json(head):
    model = tiny(head)
    config = json.loads(json.dumps(model.config.to_dict()))
    rebuilt = SETR(SETRConfig.from_dict(config)).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), atol=0, rtol=0)


def test_class_token_defaults_follow_the_official_code():
    assert tiny("naive").encoder.cls_token is not None
    assert tiny("pup").encoder.cls_token is not None
    mla = tiny("mla")
    assert mla.encoder.cls_token is None
    assert mla.encoder.pos_embed.shape == (1, 16, 64)  # no cls slot


def test_cls_token_changes_patch_outputs_only_through_attention():
    with_cls = tiny("naive")
    without = tiny("naive", class_token=False)
    state = {k: v for k, v in with_cls.state_dict().items() if k != "encoder.cls_token"}
    state["encoder.pos_embed"] = state["encoder.pos_embed"][:, 1:]
    without.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(with_cls(x), without(x), atol=1e-4)
        with_cls.encoder.cls_token.zero_()
    # zeroing the cls token does not make it vanish: it still attends (sanity of the wiring)
    with torch.no_grad():
        assert not torch.allclose(with_cls(x), without(x), atol=1e-4)


def test_position_embedding_is_resized_bilinearly_at_run_time():
    encoder = tiny("pup").encoder
    resized = encoder._position_embedding((6, 3))
    patch = encoder.pos_embed[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(patch, size=(6, 3), mode="bilinear", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 18, 64)
    torch.testing.assert_close(resized[:, 1:], expected)
    torch.testing.assert_close(resized[:, :1], encoder.pos_embed[:, :1])
    assert encoder._position_embedding((4, 4)) is encoder.pos_embed  # crop size: untouched


def test_padding_is_cropped_and_does_not_leak_into_a_multiple_of_16_input():
    model = tiny("naive")
    x = torch.randn(1, 3, 40, 56)  # pads to 48 x 64
    with torch.no_grad():
        out = model(x)
        padded = model(F.pad(x, (0, 8, 0, 8)))
    assert out.shape[-2:] == (40, 56)
    # Padding inside the model is zero padding, exactly as if the user had padded the input.
    torch.testing.assert_close(out, padded[..., :40, :56], atol=1e-5, rtol=0)


def test_encoder_uses_timm_names_and_sdpa():
    model = tiny("pup")
    names = set(model.encoder.state_dict())
    for expected in [
        "patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed",
        "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
        "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias",
    ]:  # fmt: skip
        assert expected in names
    assert not any(n.startswith("norm.") for n in names), "SETR has no final encoder norm"
    assert all(block.attn.fused_attn for block in model.encoder.blocks)


def test_sdpa_matches_explicit_attention():
    model = tiny("pup")
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        fused = model(x)
        for block in model.encoder.blocks:
            block.attn.fused_attn = False
        explicit = model(x)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_encoder_returns_raw_outputs_of_requested_blocks_in_order():
    model = tiny("naive")
    x = torch.randn(1, 3, 32, 48)
    outs, grid = model.encoder(x, [2, 0, 2])
    assert grid == (2, 3)
    assert [o.shape for o in outs] == [(1, 6, 64)] * 3
    torch.testing.assert_close(outs[0], outs[2])
    tokens, _ = model.encoder.embed(x)
    for block in model.encoder.blocks[:1]:
        tokens = block(tokens)
    torch.testing.assert_close(outs[1], tokens[:, 1:])


@pytest.mark.parametrize("head", HEADS)
def test_gradient_checkpointing_gives_the_same_gradients(head):
    torch.manual_seed(1)
    model = SETR(**tiny_kwargs(head)).train()
    x = torch.randn(2, 3, 64, 64)

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(2)
        logits, aux = model(x, return_aux=True)
        (logits.square().mean() + sum(a.square().mean() for a in aux)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4)


def test_every_parameter_gets_a_gradient_in_training():
    for head in HEADS:
        model = SETR(**tiny_kwargs(head)).train()
        logits, aux = model(torch.randn(2, 3, 64, 64), return_aux=True)
        (logits.mean() + sum(a.mean() for a in aux)).backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert not unused, f"{head}: parameters without gradient (would need find_unused_parameters): {unused}"


def test_drop_path_rises_linearly_and_is_off_in_eval():
    model = SETR(**tiny_kwargs("naive", drop_path_rate=0.3))
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in model.encoder.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_reset_classifier_changes_every_head_and_keeps_the_rest():
    model = tiny("pup")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(5)
    assert model.config.num_classes == 5
    with torch.no_grad():
        logits, aux = model(torch.randn(1, 3, 64, 64), return_aux=True)
    assert logits.shape[1] == 5 and all(a.shape[1] == 5 for a in aux)
    for key, value in model.state_dict().items():
        if ".classifier." not in key:
            assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(3, 64, 64), "shape"),
        (torch.randn(1, 1, 64, 64), "shape"),
    ],
)
def test_bad_input_is_explained(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny("naive")(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(head="fpn"), "unknown head"),
        (dict(head="naive", decode_index=9), "out of range"),
        (dict(head="mla", mla_indices=[0, 1]), "4 encoder blocks"),
        (dict(head="naive", img_size=60), "multiple of patch_size"),
        (dict(head="mla", aux_indices=[4]), "neck levels"),
    ],
)
def test_bad_config_is_explained(kwargs, message):
    base = dict(TINY)
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SETR(**base)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(head="mla", decode_index=3), "decode_index do\\(es\\) not apply to a mla head"),
        (dict(head="pup", mla_indices=[0, 1, 2, 3]), "mla_indices do\\(es\\) not apply to a pup head"),
        (dict(head="naive", num_classes=0), "num_classes must be at least 1"),
    ],
)
def test_options_of_another_head_are_refused_not_ignored(kwargs, message):
    base = dict(TINY)
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SETR(**base)


def test_a_model_on_the_meta_device_runs_for_flop_counting():
    """The benchmarks count FLOPs on the meta device: the eval-mode input check must not read values."""
    with torch.device("meta"):
        model = SETR(head="pup", embed_dim=32, depth=2, num_heads=2, img_size=32, decode_index=1).eval()
        logits = model(torch.empty(1, 3, 40, 56))
    assert logits.is_meta and logits.shape == (1, 19, 40, 56)


# --------------------------------------------------------------------------------- SETRConfig
def test_a_config_builds_the_model_and_is_frozen():
    config = SETRConfig(**tiny_kwargs("pup"))
    model = SETR(config)
    assert model.config == config and model.num_classes == 19 and model.head_type == "pup"
    assert config.decode_up_scales == (2, 2, 2, 1) and config.class_token is True  # resolved official values
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 5
    assert SETR(config, num_classes=5).config == config.replace(num_classes=5)
    assert SETR(**tiny_kwargs("pup")).config == config


def test_the_heads_are_their_own_classes():
    assert type(tiny("naive").decode_head).__name__ == "NaiveHead"
    pup = tiny("pup")
    assert type(pup.decode_head).__name__ == "PUPHead"
    assert {type(h).__name__ for h in pup.aux_heads} == {"PUPAuxHead"}
    assert type(tiny("mla").decode_head).__name__ == "MLAHead"


def test_a_config_written_by_setr_0_2_loads_exactly():
    """The config.json of a 0.2 ``save_pretrained`` folder (a PUP ViT-L ADE20K model), as 0.2 wrote it."""
    written_by_0_2 = {
        "head": "pup", "num_classes": 150, "img_size": 512, "patch_size": 16, "in_chans": 3, "embed_dim": 1024,
        "depth": 24, "num_heads": 16, "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True, "patch_bias": True,
        "decode_index": 23, "aux_indices": [9, 14, 19, 23], "mla_indices": None, "head_channels": 256,
        "head_conv_bias": True, "decode_kernel_size": 3, "decode_up_scales": [2, 2, 2, 1], "aux_kernel_size": 3,
        "aux_up_scales": [4], "mla_channels": 256, "mla_head_channels": 128, "mla_classifier_kernel": 3,
        "mla_align_corners": True, "mla_aux_bias": False, "drop_rate": 0.0, "attn_drop_rate": 0.0,
        "drop_path_rate": 0.0, "grad_checkpointing": False,
    }  # fmt: skip
    config = SETRConfig.from_dict(written_by_0_2)
    assert config.to_dict() == written_by_0_2  # and back, key for key
    assert json.loads(json.dumps(config.to_dict())) == written_by_0_2
    with torch.device("meta"):
        model = SETR(config)
    assert len(model.aux_heads) == 4 and model.num_classes == 150


def test_a_bad_config_field_is_one_message_naming_it():
    with pytest.raises(TypeError, match="unknown SETR config field\\(s\\) 'num_clases'"):
        SETRConfig.from_dict({"num_clases": 3})
    with pytest.raises(TypeError, match="a SETR config is a JSON object"):
        SETRConfig.from_dict([1, 2])
    with pytest.raises(ValueError, match="a head needs at least one conv stage"):
        SETRConfig(head="pup", decode_up_scales=[])


def test_the_0_2_dict_view_still_works_with_a_warning_naming_the_replacement():
    model = tiny("naive")
    with pytest.warns(DeprecationWarning, match=r"read model.config.aux_indices"):
        assert model.config["aux_indices"] == [1, 2, 3]
    with pytest.warns(DeprecationWarning):
        rebuilt = SETR(**model.config)
    assert rebuilt.config == model.config
    with pytest.warns(DeprecationWarning, match="pass the head by keyword"):
        assert SETR("naive", **TINY, decode_index=3).config.head == "naive"

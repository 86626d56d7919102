"""Fine-tuning inside other codebases: freezing, layer decay, intermediates, DDP with a plain
``model(x)``, other channel counts, binary segmentation, a model folder as a model name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm.optim
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models import adapt_input_conv

import setr
from setr.data.synthetic import SyntheticShapes
from setr.training import param_groups

from .conftest import small

ROOT = Path(__file__).resolve().parents[1]
TINY = small(depth=4, narrow_heads=True)
TAPS = {"naive": dict(decode_index=3), "pup": dict(decode_index=3), "mla": dict(mla_indices=[0, 1, 2, 3])}


def tiny(head: str = "pup", **extra) -> setr.SETR:
    torch.manual_seed(0)
    return setr.create_model(f"setr_{head}_vitl_cityscapes", **TINY, **TAPS[head], **extra)


def batch(size: int = 2, side: int = 32, classes: int = 19) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, side, side, generator=generator)
    return images, torch.randint(0, classes, (size, side, side), generator=generator)


# ----------------------------------------------------------------------------------- freezing
@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_a_frozen_encoder_stays_bit_equal_while_the_heads_train(head):
    model = tiny(head, drop_path_rate=0.1, drop_rate=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    model.freeze_encoder().train()
    assert not model.encoder.training and model.decode_head.training  # no dropout in frozen features
    images, labels = batch()
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    assert any(not torch.equal(v, heads_before[k]) for k, v in model.decode_head.state_dict().items())
    assert all(p.grad is None for p in model.encoder.parameters())

    model.unfreeze_encoder()
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()
    assert not torch.equal(
        model.encoder.state_dict()["blocks.0.attn.qkv.weight"], encoder_before["blocks.0.attn.qkv.weight"]
    )
    model.eval()
    assert not model.encoder.training


# -------------------------------------------------------------------------------- layer decay
def test_timm_create_optimizer_v2_groups_one_layer_per_block_with_the_right_scales():
    model = tiny("pup")
    depth = model.config.depth
    optimizer = timm.optim.create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=0.0, layer_decay=0.75)
    scale_of = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    for block in range(depth):
        scales = [scale_of[id(p)] for n, p in names.items() if n.startswith(f"encoder.blocks.{block}.")]
        assert scales == [pytest.approx(0.75 ** (depth - block))] * len(scales) and scales
    assert scale_of[id(names["encoder.pos_embed"])] == pytest.approx(0.75 ** (depth + 1))
    assert scale_of[id(names["encoder.patch_embed.proj.weight"])] == pytest.approx(0.75 ** (depth + 1))
    assert scale_of[id(names["decode_head.classifier.weight"])] == 1.0
    layers = {round(g["lr_scale"], 9) for g in optimizer.param_groups}
    assert len(layers) == depth + 2  # the embeddings, one per block, the heads

    # ours gives every parameter the same scale (and 10x on the heads, which timm does not know)
    ours = param_groups(model, lr=0.1, head_lr_mult=10.0, layer_decay=0.75)
    ours_scale = {id(p): g["lr_mult"] for g in ours for p in g["params"]}
    for name, param in names.items():
        expected = scale_of[id(param)] * (10.0 if name.startswith("decode_head.") else 1.0)
        assert ours_scale[id(param)] == pytest.approx(expected), name
    assert all(g["lr"] == pytest.approx(0.1 * g["lr_mult"]) for g in ours)


def test_param_groups_exempt_biases_norms_and_position_embedding_from_weight_decay():
    model = tiny("mla")
    groups = param_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.9)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, param in model.named_parameters():
        exempt = param.ndim <= 1 or name in ("encoder.pos_embed", "encoder.cls_token")
        assert decay_of[id(param)] == (0.0 if exempt else 0.05), name
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    neck = dict(model.named_parameters())["neck.lateral.0.conv.weight"]
    assert lr_of[id(neck)] == 1.0  # after the encoder: full lr, not the heads' 10x
    # no layer decay is the official two groups; frozen parameters are left out
    official = param_groups(model.unfreeze_encoder(), lr=0.01)
    assert [g["name"] for g in official] == ["backbone", "head"]
    frozen = param_groups(model.freeze_encoder(), lr=0.01)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert not any(id(p) in encoder_ids for g in frozen for p in g["params"])


# ------------------------------------------------------------------------------ intermediates
@pytest.mark.parametrize("head", ["naive", "pup"])
def test_forward_intermediates_are_exactly_what_the_heads_read(head):
    model = tiny(head, aux_heads=True).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        head_inputs, grid = model.head_inputs(x, with_aux=True)
        taps = [model.config.decode_index, *model.config.aux_indices]
        final, maps = model.forward_intermediates(x, indices=sorted(set(taps)))
        tokens = model.forward_intermediates(x, indices=sorted(set(taps)), output_fmt="NLC", intermediates_only=True)
        assert torch.equal(final, model.forward_features(x))
    by_block = dict(zip(sorted(set(taps)), tokens))
    for tap, expected in zip(taps, head_inputs):
        assert torch.equal(by_block[tap], expected)
    assert all(m.shape == (2, 32, *grid) for m in maps)
    assert torch.equal(maps[-1].flatten(2).transpose(1, 2), tokens[-1])
    assert final.shape == (2, 1 + grid[0] * grid[1], 32)  # cls token first


def test_forward_intermediates_feed_the_mla_neck_and_take_timm_indices():
    model = tiny("mla").eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        levels, grid = model.head_inputs(x)
        tokens = model.forward_intermediates(x, indices=model.config.mla_indices, output_fmt="NLC",
                                             intermediates_only=True)  # fmt: skip
        assert all(torch.equal(a, b) for a, b in zip(model.neck(tokens, grid), levels))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        negative = model.forward_intermediates(x, indices=[-2, -1], intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(last_two, negative)) and len(last_two) == 2
    for bad in (0, 5, [4], [-5]):
        with pytest.raises(ValueError, match="out of range|between 1 and 4"):
            model.forward_intermediates(x, indices=bad)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_features_only_returns_the_encoder_with_the_loaded_weights_in_timm_style(tmp_path):
    model = tiny("pup").eval()
    model.save_pretrained(tmp_path / "m")
    backbone = setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=tmp_path / "m", features_only=True,
                                 out_indices=[1, -1]).eval()  # fmt: skip
    assert isinstance(backbone, setr.models.SETRBackbone) and backbone.out_indices == (1, 3)
    assert backbone.feature_info.channels() == [32, 32] and backbone.feature_info.reduction() == [16, 16]
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(backbone(x), expected))
    assert set(backbone.state_dict()) == {k for k in model.state_dict() if k.startswith("encoder.")}
    assert setr.create_model("setr_mla_vitl", features_only=True, **TINY).out_indices == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        setr.create_model("setr_pup_vitl", features_only=True, out_indices=[4], **TINY)
    with pytest.raises(ValueError, match="features_only=True"):
        setr.create_model("setr_pup_vitl", out_indices=[1], **TINY)


# ------------------------------------------------------------------------------ DDP, aux heads
DDP_USER_LOOP = """
import os, sys, warnings
import torch, torch.distributed as dist, torch.nn.functional as F
import setr

warnings.simplefilter("always")
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
head = sys.argv[1]
taps = dict(mla_indices=[0, 1, 2, 3]) if head == "mla" else dict(decode_index=3)
model = setr.create_model(f"setr_{head}_vitl_cityscapes", embed_dim=32, depth=4, num_heads=2, img_size=32,
                          num_classes=3, **taps)
ddp = torch.nn.parallel.DistributedDataParallel(model)  # no find_unused_parameters
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for step in range(3):
        generator = torch.Generator().manual_seed(100 * step + rank)
        images = torch.randn(2, 3, 32, 32, generator=generator)
        labels = torch.randint(0, 3, (2, 32, 32), generator=generator)
        loss = F.cross_entropy(ddp(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(flat) for _ in range(2)]
dist.all_gather(gathered, flat)
print(f"RANK {rank} warnings={[str(w.message)[:80] for w in caught]} same={torch.equal(gathered[0], gathered[1])}")
dist.barrier()
del ddp  # a DDP wrapper that outlives its gloo group can abort the process at exit
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["pup", "mla"])
def test_a_user_loop_under_ddp_with_plain_forward_runs_without_warnings(head, tmp_path):
    script = tmp_path / "user_loop.py"
    script.write_text(textwrap.dedent(DDP_USER_LOOP))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(script), head,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in (0, 1):
        assert f"RANK {rank} warnings=[] same=True" in result.stdout, result.stdout + result.stderr[-3000:]


def test_aux_heads_exist_only_when_asked_for(tmp_path):
    assert not tiny("pup").aux_heads and not setr.SETR(head="mla", **TINY).aux_heads
    with_aux = tiny("pup", aux_heads=True)
    assert with_aux.config.aux_indices == tuple(setr.models.default_taps("pup", 4)) == (1, 2, 3, 3)
    assert tiny("mla", aux_heads=True).config.aux_indices == (0, 1, 2, 3)
    logits, aux = with_aux(torch.randn(1, 3, 32, 32), return_aux=True)
    assert len(aux) == 4 and all(a.shape == logits.shape for a in aux)
    # checkpoints with aux heads load strictly, then the heads are dropped unless asked for
    folder = tmp_path / "with_aux"
    with_aux.save_pretrained(folder)
    plain = setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=folder)
    assert not plain.aux_heads
    kept = setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=folder, aux_heads=True)
    assert torch.equal(kept.aux_heads[0].classifier.weight, with_aux.aux_heads[0].classifier.weight)


# ------------------------------------------------------------------------- other channel counts
def test_three_channel_weights_load_into_four_and_one_channel_models(tmp_path):
    rgb = tiny("pup").eval()
    rgb.save_pretrained(tmp_path / "rgb")
    weight = rgb.encoder.patch_embed.proj.weight
    for channels in (4, 1):
        with pytest.warns(UserWarning, match="adapt_input_conv"):
            model = setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=tmp_path / "rgb",
                                      in_chans=channels).eval()  # fmt: skip
        assert torch.equal(model.encoder.patch_embed.proj.weight, adapt_input_conv(channels, weight))
        assert len(model.info.mean) == len(model.info.std) == channels
        for name, tensor in model.state_dict().items():
            if name != "encoder.patch_embed.proj.weight":
                assert torch.equal(tensor, rgb.state_dict()[name]), name
    # one channel: the RGB weights summed, so a grey image equals the same image as RGB
    grey = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(grey), rgb(grey.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)
    assert model.info.mean == (pytest.approx(sum(rgb.info.mean) / 3),)
    # the same through from_pretrained, and a folder as the model name
    with pytest.warns(UserWarning, match="adapt_input_conv"):
        assert setr.from_pretrained(tmp_path / "rgb", in_chans=4).config.in_chans == 4


def test_predictor_reads_n_channel_arrays_and_tensors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny("naive", in_chans=4).eval()
    predictor = setr.Predictor(model, mode="whole")
    array = np.random.default_rng(0).uniform(0, 255, (40, 50, 4)).astype(np.float32)
    from_array = predictor(array, return_probs=True)
    from_tensor = predictor(torch.from_numpy(array).permute(2, 0, 1), return_probs=True)
    assert from_array.mask.shape == (40, 50) and torch.equal(from_array.probs, from_tensor.probs)
    with pytest.raises(ValueError, match="4-channel"):
        predictor(np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ValueError, match="not image files or PIL"):
        predictor(Image.new("RGB", (8, 8)))
    model.info = model.info.replace(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="4 channels but model.info has 3 means"):
        setr.Predictor(model)


# --------------------------------------------------------------------------------- binary
def test_num_classes_one_is_refused_everywhere_with_the_way_out():
    message = "num_classes=2 \\(background, foreground\\)"
    with pytest.raises(ValueError, match=message):
        setr.SETR(num_classes=1, **TINY)
    with pytest.raises(ValueError, match=message):
        setr.create_model("setr_pup_vitl", num_classes=1, **TINY)
    with pytest.raises(ValueError, match=message):
        tiny("pup").reset_classifier(1)


def test_binary_segmentation_with_two_classes_trains_and_predicts_sensible_masks():
    torch.manual_seed(0)
    model = setr.create_model("setr_naive_vitl", num_classes=2, embed_dim=32, depth=2, num_heads=2, img_size=32,
                              head_channels=16, decode_index=1)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(param_groups(model, lr=3e-3, head_lr_mult=1.0), lr=3e-3)

    def scenes(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Grey noise with one bright 16x16 patch (the foreground) per image."""
        images = torch.rand(count, 3, 32, 32, generator=generator) * 80
        labels = torch.zeros(count, 32, 32, dtype=torch.long)
        corners = torch.randint(0, 2, (count, 2), generator=generator) * 16
        for i, (y, x) in enumerate(corners.tolist()):
            images[i, :, y : y + 16, x : x + 16] += 150
            labels[i, y : y + 16, x : x + 16] = 1
        return images, labels

    losses = []
    model.train()
    for _ in range(40):
        images, labels = scenes(8)
        loss = F.cross_entropy(model(setr.inference.normalize(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    images, labels = scenes(4)
    results = setr.Predictor(model.eval(), mode="whole")(list(images), return_probs=True)
    accuracy = np.mean([(r.mask == label).float().mean().item() for r, label in zip(results, labels)])
    assert accuracy > 0.9  # a quarter of each image is foreground: all-background would score 0.75
    assert all(r.probs.shape == (2, 32, 32) and torch.allclose(r.probs.sum(0), torch.ones(32, 32)) for r in results)


# ------------------------------------------------------------------------- model folder as a name
def test_a_model_folder_is_a_model_name_everywhere(tmp_path, capsys):
    trained = tiny("naive", num_classes=3).eval()
    trained.info = trained.info.replace(class_names=("a", "b", "c"), palette=None)
    trained.save_pretrained(tmp_path / "final")
    x = torch.randn(1, 3, 32, 48)
    for loaded in (
        setr.create_model(str(tmp_path / "final")),
        setr.create_model(tmp_path / "final"),
        setr.create_model("setr_naive_vitl", checkpoint_path=tmp_path / "final"),  # no overrides needed
    ):
        assert loaded.info.class_names == ("a", "b", "c")
        with torch.no_grad():
            assert torch.equal(loaded(x), trained(x))
    with pytest.raises(ValueError, match="holds a naive model, not a pup one"):
        setr.create_model("setr_pup_vitl", checkpoint_path=tmp_path / "final")

    from setr.cli import main

    Image.new("RGB", (48, 32), (120, 30, 200)).save(tmp_path / "x.png")
    assert main(["predict", "--model", str(tmp_path / "final"), str(tmp_path / "x.png"), "--out",
                 str(tmp_path / "masks")]) == 0  # fmt: skip
    assert "random weights" not in capsys.readouterr().err
    assert (tmp_path / "masks" / "x.png").is_file()


def _folder_dataset(root: Path, count: int = 6) -> Path:
    generated = SyntheticShapes(count, size=(40, 56), num_classes=3)
    for index in range(count):
        image, label = generated[index]
        for kind, array in (("images", image.permute(1, 2, 0).numpy()), ("masks", label.to(torch.uint8).numpy())):
            (root / kind / "train").mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / kind / "train" / f"{index}.png")
    (root / "classes.txt").write_text("background\nstripes\nchecks\n")
    return root


@pytest.mark.slow
def test_the_finetune_example_freezes_then_thaws_and_its_output_predicts(tmp_path):
    data = _folder_dataset(tmp_path / "data")
    kwargs = json.dumps(dict(TINY, decode_index=3))
    command = [
        sys.executable, str(ROOT / "examples" / "finetune.py"), "--data", str(data), "--model", "setr_pup_vitl_ade20k",
        "--model-kwargs", kwargs, "--iters", "4", "--frozen-iters", "2", "--batch-size", "2", "--accum-steps", "2",
        "--out", str(tmp_path / "tuned"),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "step 1/4" in result.stdout and "(encoder frozen)" in result.stdout
    assert "step 4/4" in result.stdout and "step 4/4 loss" in result.stdout.split("(encoder frozen)")[-1]
    tuned = setr.create_model(str(tmp_path / "tuned"))
    assert tuned.num_classes == 3 and tuned.info.class_names == ("background", "stripes", "checks")
    assert len((ROOT / "examples" / "finetune.py").read_text().splitlines()) < 100

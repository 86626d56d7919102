"""The training pieces (optimiser groups, poly schedule, loss, sampler, checkpoints) and the reference loop."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import setr
from setr.data.synthetic import SyntheticShapes
from setr.data.transforms import train_transform
from setr.training import (
    AugmentedDataset,
    PolyLR,
    SETRLoss,
    TrainSampler,
    build_optimizer,
    capture_rng_state,
    get_recipe,
    load_training_checkpoint,
    param_groups,
    poly_lr,
    restore_rng_state,
    save_training_checkpoint,
)

from .conftest import small

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "examples" / "train.py"
TINY_MODEL = {k: v for k, v in small(depth=2, narrow_heads=True).items() if k != "img_size"}
# A few-second run of examples/train.py: tiny PUP (decode at block 1, aux at blocks 0 and 1), 48 px scenes.
TINY_RUN = [
    "--model-kwargs", json.dumps(dict(TINY_MODEL, decode_index=1, aux_indices=[0, 1], drop_path_rate=0.2)),
    "--synthetic-train", "16", "--synthetic-val", "2", "--scale", "48", "48", "--crop", "32",
    "--batch-size", "4", "--iters", "6", "--eval-interval", "100", "--ckpt-interval", "2",
    "--log-interval", "1", "--num-predictions", "1", "--threads", "1", "--workers", "0",
]  # fmt: skip


def _tiny(head: str, **extra) -> setr.SETR:
    taps = dict(mla_indices=[0, 1, 1, 1]) if head == "mla" else dict(decode_index=1, aux_indices=[0, 1])
    return setr.create_model(f"setr_{head}_vitl", img_size=32, num_classes=3, **TINY_MODEL, **taps, **extra)


def run_train(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """``python examples/train.py ARGS`` in a fresh process (one thread), as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# ----------------------------------------------------------------------------------- optimiser
@pytest.mark.parametrize("head", ["pup", "mla"])
def test_heads_train_at_ten_times_the_base_lr_and_the_rest_at_one(head):
    model = _tiny(head)
    optimizer = build_optimizer(model, lr=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert sorted(lr_of) == sorted(names.values())  # every parameter exactly once
    for name, lr in lr_of.items():
        expected = 0.1 if name.startswith(("decode_head.", "aux_heads.")) else 0.01
        assert lr == pytest.approx(expected), name
    if head == "mla":
        assert any(n.startswith("neck.") for n in lr_of) and all(
            lr_of[n] == 0.01 for n in lr_of if n.startswith("neck.")
        )
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 0.0


def test_param_groups_see_through_wrappers():
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = _tiny("naive")
    groups = {g["name"]: g for g in param_groups(Wrapper(model), lr=1.0)}
    assert {id(p) for p in groups["head"]["params"]} == {
        id(p) for n, p in model.named_parameters() if n.startswith(("decode_head.", "aux_heads."))
    }


# ------------------------------------------------------------------------------------ schedule
def test_poly_values():
    assert poly_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert poly_lr(0.1, 100, 100) == pytest.approx(1e-4)
    assert poly_lr(0.1, 150, 100) == pytest.approx(1e-4)
    assert poly_lr(0.01, 50, 100) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)


def test_poly_scheduler_per_group_and_resume():
    model = _tiny("naive")
    optimizer = build_optimizer(model, lr=0.01)
    scheduler = PolyLR(optimizer, max_iters=10)
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for it, (backbone, head) in enumerate(seen):
        assert backbone == pytest.approx(poly_lr(0.01, it, 10)) and head == pytest.approx(poly_lr(0.1, it, 10))
    resumed_optimizer = build_optimizer(_tiny("naive"), lr=0.01)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed = PolyLR(resumed_optimizer, max_iters=10)
    resumed.load_state_dict(scheduler.state_dict())
    resumed_optimizer.step()
    resumed.step()
    assert resumed_optimizer.param_groups[1]["lr"] == pytest.approx(poly_lr(0.1, 5, 10))


def test_official_recipes():
    pup = get_recipe("setr_pup_vitl_ade20k")
    assert (pup.lr, pup.iters, pup.batch_size, pup.crop, pup.scale) == (0.001, 160_000, 16, 512, (2048, 512))
    mla = get_recipe("setr_mla_vitl_cityscapes")
    assert (mla.lr, mla.batch_size, mla.crop, mla.eval_every) == (0.002, 8, 768, 8000)
    assert (mla.momentum, mla.weight_decay, mla.head_lr_mult, mla.power, mla.min_lr) == (0.9, 0.0, 10.0, 0.9, 1e-4)
    with pytest.raises(KeyError, match="no official recipe"):
        get_recipe("setr_pup_vitl")


# ---------------------------------------------------------------------------------------- loss
def test_loss_weights_and_reductions():
    logits = torch.randn(2, 3, 4, 4)
    aux = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]  # the second is resized to the label
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    valid = (target != 255).sum()

    def ce_sum(x):
        x = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False) if x.shape[-1] != 4 else x
        return F.cross_entropy(x, target, ignore_index=255, reduction="sum")

    total, parts = SETRLoss()(logits, aux, target)
    expected = (ce_sum(logits) + 0.4 * ce_sum(aux[0]) + 0.4 * ce_sum(aux[1])) / target.numel()  # official: all pixels
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(parts) == {"decode", "aux0", "aux1"}
    total, _ = SETRLoss(reduction="valid")(logits, aux, target)
    assert total.item() == pytest.approx(
        ((ce_sum(logits) + 0.4 * ce_sum(aux[0]) + 0.4 * ce_sum(aux[1])) / valid).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="auxiliary weights"):
        SETRLoss(aux_weight=[0.4])(logits, aux, target)


def test_a_few_iterations_on_generated_data_decrease_the_loss():
    torch.manual_seed(0)
    model = _tiny("pup")
    data = AugmentedDataset(SyntheticShapes(8, size=48, num_classes=3), train_transform(32, (48, 48)))
    images, labels = next(iter(DataLoader(data, batch_size=8)))
    optimizer = build_optimizer(model, lr=0.01)
    criterion = SETRLoss()
    losses = []
    for _ in range(12):
        logits, aux = model(images, return_aux=True)
        loss, _ = criterion(logits, aux, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------------------------- sampler
def test_sampler_resumes_mid_stream_and_shards_the_same_global_order():
    def take(sampler, n):
        stream = iter(sampler)
        return [next(stream) for _ in range(n)]

    full = take(TrainSampler(10, seed=1), 25)  # crosses two epoch boundaries
    assert sorted(i for i, _ in full[:10]) == list(range(10))
    assert take(TrainSampler(10, seed=1, start=13), 12) == full[13:25]
    rank0 = take(TrainSampler(10, seed=1, rank=0, world_size=2), 5)
    rank1 = take(TrainSampler(10, seed=1, rank=1, world_size=2), 5)
    # step k of two ranks x 2 samples covers the same samples, with the same seeds, as one rank x 4
    assert set(rank0[:2] + rank1[:2]) == set(full[:4])


# --------------------------------------------------------------------------------- checkpoints
def test_checkpoint_is_atomic_and_restores_rng(tmp_path):
    path = tmp_path / "run" / "last.pt"
    torch.manual_seed(1)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    save_training_checkpoint(
        path, {"model": {}, "optimizer": {}, "scheduler": {}, "iteration": 7, "rng": state, "scaler": {}}
    )
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    loaded = load_training_checkpoint(path)
    restore_rng_state(loaded["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="truncated or corrupt"):
        load_training_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        load_training_checkpoint(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------ reference loop
@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    run_train(*TINY_RUN, "--out", str(tmp_path / "straight"))
    # killed after iteration 3, then resumed from the checkpoint of iteration 2 (and with a
    # data-loading worker this time: the data stream does not depend on the workers)
    run_train(*TINY_RUN, "--out", str(tmp_path / "broken"), "--stop-at", "3")
    assert load_training_checkpoint(tmp_path / "broken" / "last.pt")["iteration"] == 2
    assert not (tmp_path / "broken" / "final").exists()
    run_train(*TINY_RUN, "--out", str(tmp_path / "broken"), "--resume", "auto", "--workers", "1")
    straight = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    resumed = load_file(tmp_path / "broken" / "final" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    rows = (tmp_path / "broken" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:7]] == ["1", "2", "3", "4", "5", "6"]  # no repeated iteration 3
    assert (tmp_path / "broken" / "predictions" / "val_000_pred.png").is_file()
    assert (tmp_path / "broken" / "predictions" / "val_000_panel.png").is_file()
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert 0.0 <= metrics["mIoU"] <= 1.0 and metrics["iteration"] == 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_ranks_agree(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(TRAIN_SCRIPT), *TINY_RUN, "--iters", "3", "--accum-steps", "2", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    digests = json.loads((out / "metrics.json").read_text())["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # the digest is of the weights that were saved
    saved = load_file(out / "final" / "model.safetensors")
    model = setr.SETR(
        setr.SETRConfig.from_dict(
            {k: v for k, v in json.loads((out / "final" / "config.json").read_text()).items() if k != "info"}
        )  # config.json also has transformers' model_type, which from_dict reads and SETR(**...) does not take
    )
    model.load_state_dict(saved)
    ctx = setr.training.DistributedContext()
    assert setr.training.rank_digests(model, ctx) == [digests[0]]


@pytest.mark.slow
def test_initialisation_flags(tmp_path):
    """--init-encoder loads timm ViT weights into the encoder; --checkpoint fine-tunes trained weights on new classes."""
    import timm

    vit = timm.models.VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=7)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    result = run_train(
        *TINY_RUN, "--iters", "1", "--init-encoder", str(tmp_path / "vit.pth"), "--out", str(tmp_path / "vit")
    )
    assert "pos_embed" in result.stdout and "head.weight" in result.stdout  # the encoder load report
    loaded = load_file(tmp_path / "vit" / "final" / "model.safetensors")
    # one SGD step at the first iteration's lr moves the weights a little from the ImageNet ones
    moved = (loaded["encoder.blocks.1.mlp.fc2.weight"] - vit.blocks[1].mlp.fc2.weight.detach()).abs().max()
    assert moved < 0.05 < vit.blocks[1].mlp.fc2.weight.abs().max()

    run_train(*TINY_RUN, "--iters", "2", "--out", str(tmp_path / "first"))
    result = run_train(*TINY_RUN, "--iters", "2", "--out", str(tmp_path / "tuned"), "--synthetic-classes", "3",
                       "--checkpoint", str(tmp_path / "first" / "final"))  # fmt: skip
    assert "re-initialising the classifiers for 3 classes" in result.stderr
    first = load_file(tmp_path / "first" / "final" / "model.safetensors")
    tuned = load_file(tmp_path / "tuned" / "final" / "model.safetensors")
    assert first["decode_head.classifier.weight"].shape[0] == 5 and tuned["decode_head.classifier.weight"].shape[0] == 3
    config = json.loads((tmp_path / "tuned" / "final" / "config.json").read_text())
    assert config["num_classes"] == 3 and config["info"]["class_names"] == ["background", "stripes", "checks"]


@pytest.mark.slow
def test_trains_on_a_folder_dataset(tmp_path):
    """Real image/mask files through the dataset readers, a recipe from flags, sliding-window evaluation."""
    from PIL import Image

    root = tmp_path / "data"
    generated = SyntheticShapes(6, size=(40, 56), num_classes=3)
    for index in range(len(generated)):
        split = "train" if index < 4 else "val"
        image, label = generated[index]
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "images" / split / f"{index}.png")
        Image.fromarray(label.to(torch.uint8).numpy()).save(root / "masks" / split / f"{index}.png")
    (root / "classes.txt").write_text("background\nstripes\nchecks\n")
    kwargs = json.dumps(dict(TINY_MODEL, decode_index=1, aux_indices=[0, 1]))
    refused = run_train("--dataset", "folder", "--data-root", str(root), "--model", "setr_naive_vitl", expect=1)
    assert "--lr --iters" in refused.stderr
    run_train(
        "--dataset", "folder", "--data-root", str(root), "--model", "setr_naive_vitl", "--model-kwargs", kwargs,
        "--lr", "0.01", "--iters", "2", "--batch-size", "2", "--crop", "32", "--scale", "56", "40",
        "--workers", "0", "--threads", "1", "--num-predictions", "2", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= result["mIoU"] <= 1.0
    assert len(list((tmp_path / "run" / "predictions").glob("*_pred.png"))) == 2

    # train, then predict and evaluate: the run's final/ folder is the model name, no overrides
    from setr.cli import main

    final = tmp_path / "run" / "final"
    image = root / "images" / "val" / "4.png"
    assert main(["predict", "--model", str(final), str(image), "--out", str(tmp_path / "masks")]) == 0
    assert (tmp_path / "masks" / "4.png").is_file()
    assert main(["predict", "--model", "setr_naive_vitl", "--checkpoint", str(final), str(image),
                 "--out", str(tmp_path / "masks2")]) == 0  # fmt: skip
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(final), "--dataset", "folder", "--root", str(root), "--split", "val",
                 "--workers", "0", "--json", str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["mIoU"] == pytest.approx(result["mIoU"], abs=1e-6)


@pytest.mark.slow
def test_setr_training_is_reachable_after_import_setr_alone():
    # the pages write `import setr` then `setr.training.param_groups(...)`: a fresh process must find it
    code = "import sys, setr; assert 'setr.training' not in sys.modules; print(setr.training.param_groups.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "param_groups", result.stderr[-2000:]
    result = subprocess.run([sys.executable, "-c", "import setr; setr.trainig"], capture_output=True, text=True)
    assert "module 'setr' has no attribute 'trainig'" in result.stderr


def test_the_final_weights_no_longer_claim_the_release_they_started_from(tmp_path):
    """A model fine-tuned from a release's weights (same classes) is saved as the run's own: its
    card and config.json name no release, and no release mIoU."""
    from setr.models.card import is_release
    from setr.training import save_pretrained_weights

    model = setr.create_model("setr_naive_vitl_cityscapes", embed_dim=32, depth=2, num_heads=2)
    model.info = model.info.replace(loaded_from={"hub": "setr-pytorch/setr_naive_vitl_cityscapes"})
    assert is_release(model.info)  # as if the Hub weights had been loaded
    release_miou = str(model.info.release.miou)
    save_pretrained_weights(model, tmp_path / "final")
    saved = json.loads((tmp_path / "final" / "config.json").read_text())
    assert saved["info"].get("release") is None
    card = (tmp_path / "final" / "README.md").read_text()
    assert release_miou not in card and "trained or converted by the user" in card

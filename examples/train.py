"""Train SETR with the official recipe, on one CPU or on many GPUs.

    python examples/train.py                      # a small SETR on generated data: minutes on a 2-core CPU
    python examples/train.py --resume auto        # continue the run in --out where it stopped
    torchrun --nproc_per_node=8 examples/train.py --model setr_pup_vitl_cityscapes \\
        --dataset cityscapes --data-root data/cityscapes --init-encoder vit_large_p16_384.pth --amp bf16

The recipe (official_setr.md sections 6-7): SGD momentum 0.9, weight decay 0, heads at 10x the base
lr, poly schedule (power 0.9, floor 1e-4) per iteration, cross-entropy with ignore index 255 on the
decode head plus 0.4 x each auxiliary head, the official augmentation. A zoo model name brings its
own base lr, iterations, crop and global batch; any flag overrides them. ``--batch-size`` is the
global batch of one optimiser step = per-process batch x processes x ``--accum-steps``.

Writes to ``--out``: ``log.csv``, ``last.pt`` (training checkpoint, written atomically),
``metrics.json`` (last evaluation), ``final/`` (``save_pretrained`` weights) and ``predictions/``
(palette PNG masks of the first validation images, and image | truth | prediction panels).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import setr
from setr.data.meta import IMAGENET_MEAN, IMAGENET_STD
from setr.data.synthetic import SyntheticShapes, synthetic_info
from setr.data.transforms import train_transform
from setr.inference import Predictor, mask_to_image, palette_for
from setr.metrics import ConfusionMatrix
from setr.training import (
    AugmentedDataset,
    DistributedContext,
    PolyLR,
    Recipe,
    SETRLoss,
    TrainSampler,
    build_optimizer,
    capture_rng_state,
    cleanup_distributed,
    get_recipe,
    init_distributed,
    load_training_checkpoint,
    restore_rng_state,
    sample_pair,
    save_pretrained_weights,
    save_training_checkpoint,
    unwrap_model,
)

# The default run: a small SETR-Naive (ViT 192 wide, 6 blocks, 3 auxiliary heads) on generated 160x160
# scenes, with the official optimiser, schedule, loss and augmentation, tuned to learn in minutes on a CPU.
DEFAULT_MODEL = "setr_naive_vitl"
SMALL_SETR = dict(embed_dim=192, depth=6, num_heads=4, head_channels=64)
SYNTHETIC_RECIPE = Recipe(lr=0.01, iters=1000, batch_size=8, crop=128, scale=(160, 160), eval_interval=250)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset", default="synthetic", choices=["synthetic", "cityscapes", "ade20k", "pcontext", "folder"]
    )
    data.add_argument(
        "--data-root",
        help="dataset folder (not needed for synthetic); folder: images/{train,val} + masks/{train,val} + classes.txt",
    )
    data.add_argument("--synthetic-classes", type=int, default=5, help="classes of the generated dataset (2-7)")
    data.add_argument("--synthetic-train", type=int, default=2000, help="generated training images")
    data.add_argument("--synthetic-val", type=int, default=100, help="generated validation images")
    data.add_argument(
        "--workers", type=int, help="data-loading processes per training process (default: 1 on CPU, up to 8 on GPU)"
    )
    model = p.add_argument_group("model")
    model.add_argument("--model", help=f"architecture or zoo name (default: a small {DEFAULT_MODEL})")
    model.add_argument("--model-kwargs", type=json.loads, help="constructor overrides as JSON, e.g. '{\"depth\": 12}'")
    model.add_argument(
        "--checkpoint",
        help="fine-tune from a setr/official/mmseg/PaddleViT checkpoint (new class count: classifiers re-initialised)",
    )
    model.add_argument("--init-encoder", help="initialise the encoder from timm ViT ImageNet weights")
    recipe = p.add_argument_group("recipe (default: the official recipe of a zoo --model, or the synthetic one)")
    recipe.add_argument("--lr", type=float, help="base learning rate (heads: x --head-lr-mult)")
    recipe.add_argument("--iters", type=int, help="optimiser steps")
    recipe.add_argument("--batch-size", type=int, help="global batch per optimiser step")
    recipe.add_argument("--accum-steps", type=int, default=1, help="gradient accumulation steps per optimiser step")
    recipe.add_argument("--crop", type=int, help="training crop side")
    recipe.add_argument(
        "--scale", type=int, nargs=2, metavar=("LONG", "SHORT"), help="dataset scale of the random resize"
    )
    recipe.add_argument(
        "--head-lr-mult", type=float, help="lr multiplier of decode_head.* and aux_heads.* (official 10)"
    )
    recipe.add_argument("--weight-decay", type=float, help="SGD weight decay (official 0)")
    recipe.add_argument("--aux-weight", type=float, help="loss weight of each auxiliary head (official 0.4)")
    recipe.add_argument(
        "--loss-reduction",
        default="all",
        choices=["all", "valid"],
        help="CE mean over all pixels (official) or non-ignored ones",
    )
    run = p.add_argument_group("run")
    run.add_argument("--out", default="runs/train", help="output folder")
    run.add_argument("--resume", help="a training checkpoint to continue from, or 'auto' for OUT/last.pt if present")
    run.add_argument("--eval-interval", type=int, help="iterations between evaluations (default: the recipe's)")
    run.add_argument("--ckpt-interval", type=int, help="iterations between checkpoints (default: the eval interval)")
    run.add_argument("--log-interval", type=int, default=10, help="iterations between log rows")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    run.add_argument(
        "--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision (fp16 uses a GradScaler)"
    )
    run.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute encoder blocks in backward (less memory)"
    )
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument(
        "--threads", type=int, help="CPU threads per process (default: its share of the cores, less its workers)"
    )
    run.add_argument(
        "--num-predictions", type=int, default=8, help="validation images whose predicted masks are written"
    )
    run.add_argument("--tensorboard", action="store_true", help="also log to OUT/tb (needs the tensorboard package)")
    run.add_argument("--stop-at", type=int, help="end the process after this iteration, as if killed (to try --resume)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------- set-up
def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The synthetic recipe, or the zoo model's official one, with the command line's overrides."""
    changes = dict(
        lr=args.lr, iters=args.iters, batch_size=args.batch_size, crop=args.crop,
        scale=tuple(args.scale) if args.scale else None, head_lr_mult=args.head_lr_mult,
        weight_decay=args.weight_decay, aux_weight=args.aux_weight, eval_interval=args.eval_interval,
    )  # fmt: skip
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.dataset == "synthetic":
        return replace(SYNTHETIC_RECIPE, **changes)
    with contextlib.suppress(KeyError):
        return replace(get_recipe(args.model or ""), **changes)
    missing = [f"--{k.replace('_', '-')}" for k in ("lr", "iters", "batch_size", "crop", "scale") if k not in changes]
    if missing:
        raise SystemExit(f"--model {args.model} has no official recipe: give {' '.join(missing)}")
    return Recipe(**changes)


def build_datasets(args: argparse.Namespace, recipe: Recipe) -> tuple:
    """``(train, val, info)``; samples are ``(image uint8 (3, H, W), label (H, W))`` pairs or dicts."""
    if args.dataset == "synthetic":
        size = (recipe.scale[1], recipe.scale[0])
        make = dict(size=size, num_classes=args.synthetic_classes, seed=args.seed)
        meta = synthetic_info(args.synthetic_classes, size)
        info = dict(class_names=list(meta.class_names), palette=meta.palette, protocol=meta.protocol)
        return (
            SyntheticShapes(args.synthetic_train, split="train", **make),
            SyntheticShapes(args.synthetic_val, split="val", **make),
            info,
        )
    if not args.data_root:
        raise SystemExit(f"--dataset {args.dataset} needs --data-root")
    from setr.data.datasets import build_dataset

    train, val = (build_dataset(args.dataset, args.data_root, split=split) for split in ("train", "val"))
    return train, val, dict(class_names=train.class_names, palette=train.palette, protocol=None)


def build_model(args: argparse.Namespace, recipe: Recipe, info: dict, ctx: DistributedContext) -> setr.SETR:
    """The model by name, with ``--model-kwargs``, optionally from a checkpoint or timm encoder weights."""
    name = args.model or DEFAULT_MODEL
    kwargs = dict(args.model_kwargs if args.model_kwargs is not None else ({} if args.model else SMALL_SETR))
    kwargs.update(
        img_size=recipe.crop, num_classes=len(info["class_names"]), grad_checkpointing=args.grad_checkpointing
    )
    if args.checkpoint and (Path(args.checkpoint) / "config.json").is_file():  # a save_pretrained folder
        model = setr.from_pretrained(
            args.checkpoint,
            **{k: v for k, v in kwargs.items() if k in ("num_classes", "img_size", "grad_checkpointing")},
        )
    else:
        model = setr.create_model(name, checkpoint_path=args.checkpoint, **kwargs)
    if args.init_encoder:
        from setr.convert.timm import load_timm_encoder

        report = load_timm_encoder(model, args.init_encoder)
        if ctx.is_main:
            print(report)
    # What setr.from_pretrained / setr predict need to use the trained weights on this dataset.
    model.pretrained_cfg = {
        **getattr(model, "pretrained_cfg", {}), "class_names": list(info["class_names"]), "ignore_index": 255,
        "palette": [list(c) for c in info["palette"]],
        **({"protocol": asdict(info["protocol"])} if info["protocol"] is not None else {}),
    }  # fmt: skip
    return model


def configure_cpu(args: argparse.Namespace, ctx: DistributedContext) -> None:
    """Share the cores: each process gets cores / local processes, less its data-loading workers."""
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if args.workers is None:
        args.workers = min(8, cores - 1) if ctx.device.type == "cuda" else int(cores >= 2)
    torch.set_num_threads(args.threads or max(1, cores - args.workers))


def resume(path: Path, model, optimizer, scheduler, scaler) -> int:
    """Load a training checkpoint into the objects; returns the iterations already done."""
    state = load_training_checkpoint(path)
    if state["model_config"] != model.config:
        raise SystemExit(f"{path} was made for another model ({state['model_config']}); resume with the same command")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    return state["iteration"]


def checkpoint_state(model, optimizer, scheduler, scaler, iteration: int, args: argparse.Namespace) -> dict:
    return {
        "model": model.state_dict(), "model_config": model.config, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "iteration": iteration,
        "rng": capture_rng_state(), "args": {k: str(v) for k, v in vars(args).items()},
    }  # fmt: skip


# ----------------------------------------------------------------------------------- training
def train_step(
    net, batches, criterion, optimizer, scheduler, scaler, autocast, accum_steps: int, ctx
) -> dict[str, float]:
    """One optimiser step over ``accum_steps`` micro-batches; returns the mean loss terms."""
    totals: dict[str, float] = {}
    for micro in range(accum_steps):
        images, labels = (t.to(ctx.device, non_blocking=True) for t in next(batches))
        last = micro == accum_steps - 1
        with contextlib.nullcontext() if last or not ctx.distributed else net.no_sync():  # all-reduce once
            with autocast:
                logits, aux = net(images, return_aux=True)
            loss, parts = criterion(logits, aux, labels)
            scaler.scale(loss / accum_steps).backward()
        for key, value in {"loss": loss.detach(), **parts}.items():
            totals[key] = totals.get(key, 0.0) + float(value) / accum_steps
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return totals


@torch.no_grad()
def evaluate(model, val_set, ctx: DistributedContext, class_names, protocol) -> ConfusionMatrix:
    """Confusion matrix over the validation set (official test protocol), each rank taking a share."""
    if ctx.distributed:  # DDP keeps parameters equal, not BN running stats: use (and later save) rank 0's
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)
    predictor = Predictor(model, protocol, batch_size=4, device=ctx.device)
    metric = ConfusionMatrix(len(class_names), 255, class_names)
    for index in range(ctx.rank, len(val_set), ctx.world_size):
        image, label = sample_pair(val_set[index])
        metric.update(predictor(image).mask, label)
    metric.all_reduce()
    model.train()
    return metric


@torch.no_grad()
def save_predictions(model, val_set, out: Path, count: int, palette, protocol) -> None:
    """Palette PNG masks, and image | truth | prediction panels, for the first validation images."""
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, protocol, batch_size=4)
    colours = np.concatenate(
        [palette_for(model.num_classes, palette), np.full((256 - model.num_classes, 3), 255, np.uint8)]
    )
    for index in range(min(count, len(val_set))):
        image, label = sample_pair(val_set[index])
        mask = predictor(image).mask
        mask_to_image(mask, colours[: model.num_classes]).save(out / f"val_{index:03d}_pred.png")
        panel = [image.permute(1, 2, 0).numpy(), colours[label.clamp(0, 255).numpy()], colours[mask.numpy()]]
        Image.fromarray(np.concatenate(panel, 1).astype(np.uint8)).save(out / f"val_{index:03d}_panel.png")
    model.train()


class RunLog:
    """``log.csv`` (plus TensorBoard when asked and installed); on resume, rows past the checkpoint are dropped."""

    FIELDS = ["iteration", "lr", "loss", "loss_decode", "loss_aux", "mIoU", "mAcc", "aAcc", "seconds"]

    def __init__(self, out: Path, resumed_at: int | None, tensorboard: bool) -> None:
        self.path = out / "log.csv"
        self.begin = time.perf_counter()
        rows = []
        if resumed_at is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= resumed_at]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.board = _tensorboard(out) if tensorboard else None

    def write(self, group: str, iteration: int, **values: float) -> None:
        row = dict(iteration=iteration, seconds=round(time.perf_counter() - self.begin, 1), **values)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow(
                {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()}
            )
        if self.board:
            for key, value in values.items():
                self.board.add_scalar(f"{group}/{key}", value, iteration)

    def close(self) -> None:
        if self.board:
            self.board.close()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("--tensorboard: the tensorboard package is not installed (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))


def rank_digests(model: torch.nn.Module, ctx: DistributedContext) -> list[str]:
    """A SHA-256 of the model's state from every rank: all equal when the ranks agree."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if not ctx.distributed:
        return [digest.hexdigest()]
    gathered: list = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, digest.hexdigest())
    return gathered


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    ctx = init_distributed(args.device)
    configure_cpu(args, ctx)
    recipe = resolve_recipe(args)
    per_step, rest = divmod(recipe.batch_size, ctx.world_size * args.accum_steps)
    if per_step < 1 or rest:
        raise SystemExit(
            f"the global batch {recipe.batch_size} does not split into {ctx.world_size} processes x {args.accum_steps} accumulation steps"
        )
    out = Path(args.out)
    resume_path = out / "last.pt" if args.resume == "auto" else Path(args.resume) if args.resume else None
    if args.resume == "auto" and not resume_path.exists():
        resume_path = None
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    train_set, val_set, info = build_datasets(args, recipe)
    class_names, protocol = info["class_names"], info["protocol"]
    model = build_model(args, recipe, info, ctx).to(ctx.device)
    optimizer = build_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.head_lr_mult)
    scheduler = PolyLR(optimizer, recipe.iters, recipe.power, recipe.min_lr)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=args.amp == "fp16")
    criterion = SETRLoss(recipe.aux_weight, reduction=args.loss_reduction)
    start = resume(resume_path, model, optimizer, scheduler, scaler) if resume_path else 0

    if ctx.distributed and ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # keeps the same parameters
    net = torch.compile(model) if args.compile else model
    if ctx.distributed:
        net = DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    autocast = torch.autocast(
        ctx.device.type,
        dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16,
        enabled=args.amp != "none",
        # Autocast's weight cache keeps a low-precision copy of every weight for the whole forward,
        # which checkpointing cannot drop; with checkpointing each use casts again instead.
        cache_enabled=not args.grad_checkpointing,
    )

    mean, std = model.pretrained_cfg.get("mean", IMAGENET_MEAN), model.pretrained_cfg.get("std", IMAGENET_STD)
    transform = train_transform(recipe.crop, recipe.scale, recipe.ratio_range, recipe.cat_max_ratio, mean=mean, std=std)
    consumed = start * per_step * args.accum_steps  # samples this rank has already trained on
    loader = DataLoader(
        AugmentedDataset(train_set, transform), batch_size=per_step, num_workers=args.workers, drop_last=True,
        sampler=TrainSampler(len(train_set), args.seed, ctx.rank, ctx.world_size, start=consumed),
        pin_memory=ctx.device.type == "cuda", persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(args.seed),  # leaves the global generator alone
    )  # fmt: skip
    batches = iter(loader)

    log = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log = RunLog(out, start if resume_path else None, args.tensorboard)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{args.model or DEFAULT_MODEL + ' (small)'}: {params:.2f}M parameters, {len(class_names)} classes, {ctx.world_size} process(es); {recipe}"
        )
        if resume_path:
            print(f"resumed from {resume_path} at iteration {start}")
    ckpt_every = args.ckpt_interval or recipe.eval_every
    begin, done, metric = time.perf_counter(), start, None
    net.train()
    bar = tqdm(range(start, recipe.iters), initial=start, total=recipe.iters, disable=not ctx.is_main)
    for iteration in bar:
        lr = optimizer.param_groups[0]["lr"]
        losses = train_step(net, batches, criterion, optimizer, scheduler, scaler, autocast, args.accum_steps, ctx)
        done = iteration + 1
        if not math.isfinite(losses["loss"]):
            raise SystemExit(
                f"the loss became {losses['loss']} at iteration {done}: lower --lr, or use --amp bf16/none"
            )
        if log and (done % args.log_interval == 0 or done == recipe.iters):
            bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
            aux = [v for k, v in losses.items() if k.startswith("aux")]
            log.write(
                "train",
                done,
                lr=lr,
                loss=losses["loss"],
                loss_decode=losses["decode"],
                loss_aux=float(np.mean(aux)) if aux else 0.0,
            )
        if done % recipe.eval_every == 0 or done == recipe.iters:
            metric = evaluate(unwrap_model(net), val_set, ctx, class_names, protocol)
            result = metric.compute()
            if log:
                tqdm.write(
                    f"iteration {done}: mIoU {100 * result['mIoU']:.2f}  mAcc {100 * result['mAcc']:.2f}  aAcc {100 * result['aAcc']:.2f}"
                )
                log.write("val", done, **{k: result[k] for k in ("mIoU", "mAcc", "aAcc")})
                summary = dict(iteration=done, **result, classes=class_names, table=metric.table())
                (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        if ctx.is_main and (done % ckpt_every == 0 or done == recipe.iters):
            save_training_checkpoint(
                out / "last.pt", checkpoint_state(unwrap_model(net), optimizer, scheduler, scaler, done, args)
            )
        if args.stop_at is not None and done >= args.stop_at:
            break
    bar.close()

    digests = rank_digests(unwrap_model(net), ctx)
    if len(set(digests)) > 1:
        raise SystemExit(f"the processes ended with different weights ({digests}): a synchronisation bug")
    result = metric.compute() if metric is not None else {}
    if log and done >= recipe.iters:
        final = unwrap_model(net)
        save_pretrained_weights(final, out / "final")
        save_predictions(final, val_set, out / "predictions", args.num_predictions, info["palette"], protocol)
        summary = dict(json.loads((out / "metrics.json").read_text()), rank_digests=digests)
        (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(metric.table())
        print(
            f"done: {recipe.iters} iterations in {(time.perf_counter() - begin) / 60:.1f} min, mIoU {100 * result['mIoU']:.2f}; "
            f"weights in {out / 'final'}, masks in {out / 'predictions'}"
        )
    if log:
        log.close()
    cleanup_distributed()
    return result


if __name__ == "__main__":
    main()

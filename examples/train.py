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
import json
import math
import time
from pathlib import Path

from tqdm import tqdm

import setr
from setr import training
from setr.cli.arguments import non_negative_float, non_negative_int, positive_float, positive_int
from setr.convert import load_timm_encoder
from setr.data.synthetic import SyntheticShapes, synthetic_info
from setr.data.transforms import train_transform
from setr.training import Recipe

# The default run: a small SETR-Naive (ViT 192 wide, 6 blocks, 3 auxiliary heads) on generated 160x160
# scenes, with the official optimiser, schedule, loss and augmentation, tuned to learn in minutes on a CPU.
DEFAULT_MODEL = "setr_naive_vitl"
SMALL_SETR = dict(embed_dim=192, depth=6, num_heads=4, head_channels=64)
SYNTHETIC_RECIPE = Recipe(lr=0.01, iters=1000, batch_size=8, crop=128, scale=(160, 160), eval_interval=250)
RECIPE_FLAGS = (
    "lr",
    "iters",
    "batch_size",
    "crop",
    "scale",
    "head_lr_mult",
    "weight_decay",
    "aux_weight",
    "eval_interval",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # fmt: off
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="synthetic", choices=["synthetic", "cityscapes", "ade20k", "pcontext", "folder"])
    data.add_argument("--data-root", help="dataset folder; folder: images/{train,val} + masks/{train,val} + classes.txt")
    data.add_argument("--synthetic-classes", type=positive_int, default=5, help="classes of the generated dataset (2-7)")
    data.add_argument("--synthetic-train", type=positive_int, default=2000, help="generated training images")
    data.add_argument("--synthetic-val", type=positive_int, default=100, help="generated validation images")
    data.add_argument("--workers", type=non_negative_int, help="data-loading processes per process (default: 1 on CPU, up to 8 on GPU)")
    model = p.add_argument_group("model")
    model.add_argument("--model", help=f"architecture or zoo name (default: a small {DEFAULT_MODEL})")
    model.add_argument("--model-kwargs", type=json.loads, help="constructor overrides as JSON, e.g. '{\"depth\": 12}'")
    model.add_argument("--checkpoint", help="fine-tune from any supported checkpoint (other classes: new classifiers)")
    model.add_argument("--init-encoder", help="initialise the encoder from timm ViT ImageNet weights")
    recipe = p.add_argument_group("recipe (default: the official recipe of a zoo --model, or the synthetic one)")
    recipe.add_argument("--lr", type=positive_float, help="base learning rate (heads: x --head-lr-mult)")
    recipe.add_argument("--iters", type=positive_int, help="optimiser steps")
    recipe.add_argument("--batch-size", type=positive_int, help="global batch per optimiser step")
    recipe.add_argument("--accum-steps", type=positive_int, default=1, help="gradient accumulation steps per optimiser step")
    recipe.add_argument("--crop", type=positive_int, help="training crop side")
    recipe.add_argument("--scale", type=positive_int, nargs=2, metavar=("LONG", "SHORT"), help="dataset scale of the random resize")
    recipe.add_argument("--head-lr-mult", type=positive_float, help="lr multiplier of decode_head.* and aux_heads.* (official 10)")
    recipe.add_argument("--weight-decay", type=non_negative_float, help="SGD weight decay (official 0)")
    recipe.add_argument("--aux-weight", type=non_negative_float, help="loss weight of each auxiliary head (official 0.4)")
    recipe.add_argument("--loss-reduction", default="all", choices=["all", "valid"], help="CE mean over all (official) or valid pixels")
    run = p.add_argument_group("run")
    run.add_argument("--out", default="runs/train", help="output folder")
    run.add_argument("--resume", help="a training checkpoint to continue from, or 'auto' for OUT/last.pt if present")
    run.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds a run (deletes it)")
    run.add_argument("--eval-interval", type=positive_int, help="iterations between evaluations (default: the recipe's)")
    run.add_argument("--ckpt-interval", type=positive_int, help="iterations between checkpoints (default: the eval interval)")
    run.add_argument("--log-interval", type=positive_int, default=10, help="iterations between log rows")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    run.add_argument("--amp", default="none", choices=training.setup.AMP, help="mixed precision (fp16: GradScaler)")
    run.add_argument("--grad-checkpointing", action="store_true", help="recompute encoder blocks in backward (less memory)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--threads", type=positive_int, help="CPU threads per process (default: its share of the cores, less workers)")
    run.add_argument("--num-predictions", type=non_negative_int, default=8, help="validation images whose predicted masks are written")
    run.add_argument("--tensorboard", action="store_true", help="also log to OUT/tb (needs the tensorboard package)")
    run.add_argument("--stop-at", type=positive_int, help="end the process after this iteration, as if killed (to try --resume)")
    # fmt: on
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------- set-up
def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The synthetic recipe, or the zoo model's official one, with the command line's overrides."""
    changes = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    try:
        return training.resolve(SYNTHETIC_RECIPE if args.dataset == "synthetic" else args.model, **changes)
    except ValueError as error:
        raise SystemExit(str(error)) from None


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


def build_model(args: argparse.Namespace, recipe: Recipe, info: dict, ctx: training.DistributedContext) -> setr.SETR:
    """The model by name, with ``--model-kwargs``, optionally from a checkpoint or timm encoder weights."""
    name = args.model or DEFAULT_MODEL
    kwargs = dict(args.model_kwargs if args.model_kwargs is not None else ({} if args.model else SMALL_SETR))
    kwargs.update(
        img_size=recipe.crop, num_classes=len(info["class_names"]), grad_checkpointing=args.grad_checkpointing
    )
    if args.checkpoint and (Path(args.checkpoint) / "config.json").is_file():  # a save_pretrained folder
        keep = ("num_classes", "img_size", "grad_checkpointing")
        model = setr.from_pretrained(args.checkpoint, aux_heads=True, **{k: kwargs[k] for k in keep})
    else:  # the official recipe trains with its auxiliary heads' losses
        model = setr.create_model(name, checkpoint_path=args.checkpoint, aux_heads=True, **kwargs)
    if args.init_encoder:
        report = load_timm_encoder(model, args.init_encoder)
        if ctx.is_main:
            print(report)
    # What setr.from_pretrained / setr predict need to use the trained weights on this dataset.
    protocol = info["protocol"] or model.info.protocol
    classes, palette = info["class_names"], info["palette"]
    model.info = model.info.replace(dataset=args.dataset, class_names=classes, palette=palette, protocol=protocol)
    return model


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    ctx = training.init_distributed(args.device)
    args.workers = training.share_cpu_threads(ctx, args.workers, args.threads)
    recipe = resolve_recipe(args)
    per_step, rest = divmod(recipe.batch_size, ctx.world_size * args.accum_steps)
    if per_step < 1 or rest:
        raise SystemExit(
            f"the global batch {recipe.batch_size} does not split into {ctx.world_size} processes x {args.accum_steps} accumulation steps"
        )
    out = Path(args.out)
    try:
        resume_path = training.prepare_run_dir(out, args.resume, args.overwrite, ctx.is_main)
    except (OSError, ValueError) as error:
        raise SystemExit(f"train.py: error: {error}") from None
    training.seed_everything(args.seed)

    train_set, val_set, info = build_datasets(args, recipe)
    class_names, protocol = info["class_names"], info["protocol"]
    model = build_model(args, recipe, info, ctx).to(ctx.device)
    optimizer = training.build_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.head_lr_mult)
    scheduler = training.PolyLR(optimizer, recipe.iters, recipe.power, recipe.min_lr)
    autocast, scaler = training.mixed_precision(ctx.device, args.amp, args.grad_checkpointing)
    criterion = training.SETRLoss(recipe.aux_weight, reduction=args.loss_reduction)
    start = training.restore_training_state(resume_path, model, optimizer, scheduler, scaler) if resume_path else 0

    net = training.wrap_for_training(model, ctx, args.compile)
    mean, std = model.info.mean, model.info.std
    transform = train_transform(recipe.crop, recipe.scale, recipe.ratio_range, recipe.cat_max_ratio, mean=mean, std=std)
    consumed = start * per_step * args.accum_steps  # samples this rank has already trained on
    batches = iter(training.train_loader(train_set, transform, per_step, args.workers, args.seed, ctx, consumed))

    log = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log = training.RunLog(out, start if resume_path else None, args.tensorboard)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        name = args.model or DEFAULT_MODEL + " (small)"
        print(f"{name}: {params:.2f}M parameters, {len(class_names)} classes, {ctx.world_size} process(es); {recipe}")
        if resume_path:
            print(f"resumed from {resume_path} at iteration {start}")
    ckpt_every = args.ckpt_interval or recipe.eval_every
    begin, done, metric = time.perf_counter(), start, None
    net.train()
    bar = tqdm(range(start, recipe.iters), initial=start, total=recipe.iters, disable=not ctx.is_main)
    for iteration in bar:
        lr = optimizer.param_groups[0]["lr"]
        losses = training.train_step(
            net, batches, criterion, optimizer, scheduler, scaler, autocast, args.accum_steps, ctx
        )
        done = iteration + 1
        if not math.isfinite(losses["loss"]):
            raise SystemExit(f"the loss became {losses['loss']} at iteration {done}: lower --lr, or --amp bf16/none")
        if log and (done % args.log_interval == 0 or done == recipe.iters):
            bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
            log.log_losses(done, lr, losses)
        if done % recipe.eval_every == 0 or done == recipe.iters:
            metric = training.validate(training.unwrap_model(net), val_set, ctx, class_names, protocol)
            if log:
                log.log_validation(done, metric)
        if ctx.is_main and (done % ckpt_every == 0 or done == recipe.iters):
            state = training.training_state(
                net, optimizer, scheduler, scaler, done, {k: str(v) for k, v in vars(args).items()}
            )
            training.save_training_checkpoint(out / "last.pt", state)
        if args.stop_at is not None and done >= args.stop_at:
            break
    bar.close()

    digests = training.rank_digests(training.unwrap_model(net), ctx)
    if len(set(digests)) > 1:
        raise SystemExit(f"the processes ended with different weights ({digests}): a synchronisation bug")
    result = metric.compute() if metric is not None else {}
    if log and done >= recipe.iters:
        final = training.unwrap_model(net)
        training.save_pretrained_weights(final, out / "final")
        training.save_predictions(final, val_set, out / "predictions", args.num_predictions, info["palette"], protocol)
        log.update_metrics(rank_digests=digests)
        print(metric.table())
        minutes = (time.perf_counter() - begin) / 60
        print(f"done: {recipe.iters} iterations in {minutes:.1f} min, mIoU {100 * result['mIoU']:.2f}; "
              f"weights in {out / 'final'}, masks in {out / 'predictions'}")  # fmt: skip
    if log:
        log.close()
    del net  # the DDP wrapper goes before its process group: otherwise gloo can abort at exit
    training.cleanup_distributed()
    return result


if __name__ == "__main__":
    try:
        main()
    except setr.files.WriteFailed as error:  # a full disk or a read-only --out mid-run: one line, status 1
        raise SystemExit(f"train.py: error: {error}") from None

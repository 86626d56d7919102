"""Fine-tune a zoo SETR on your own folder dataset, in plain PyTorch (your loop, your optimiser).

    python examples/finetune.py --data DATA --model setr_pup_vitl_ade20k --pretrained --out runs/finetune
    setr predict --model runs/finetune images/*.jpg --out masks/

DATA is a folder dataset (setr.data.datasets.FolderDataset): images/train/*, masks/train/*.png and
classes.txt. The recipe: --frozen-iters with the ViT encoder frozen (the new classifiers settle on
its features), then everything, with layer-wise lr decay (the embeddings and early blocks move
least), AdamW, gradient accumulation and optional bf16 autocast. The model is saved with
save_pretrained, so `setr predict/eval --model OUT` and setr.create_model(OUT) read it back.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import setr
from setr.cli.arguments import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from setr.data.datasets import FolderDataset
from setr.data.transforms import train_transform
from setr.devices import resolve_device
from setr.training import AugmentedDataset, param_groups


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder dataset root (images/train, masks/train, classes.txt)")
    parser.add_argument("--model", default="setr_pup_vitl_ade20k", help="zoo name or a model folder")
    parser.add_argument("--pretrained", action="store_true", help="start from the zoo name's released weights")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="SETR overrides as JSON (tiny tests)")
    parser.add_argument("--out", default="runs/finetune", help="save_pretrained folder written at the end")
    parser.add_argument("--overwrite", action="store_true", help="replace the model already in --out")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--accum-steps", type=positive_int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--frozen-iters", type=non_negative_int, default=200, help="steps with the encoder frozen")
    parser.add_argument("--iters", type=positive_int, default=2000, help="optimiser steps in all")
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="base lr (heads train at 10x)")
    parser.add_argument("--layer-decay", type=fraction, default=0.75, help="lr decay per encoder block from the top")
    parser.add_argument("--weight-decay", type=non_negative_float, default=0.01)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA, or CPUs with native bf16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if (Path(args.out) / "config.json").exists() and not args.overwrite:  # the source model folder, or another
        parser.error(
            f"--out {args.out} holds a model (config.json): pass --overwrite to replace it, or choose another --out"
        )
    try:
        resolve_device(args.device, flag="--device")
    except ValueError as error:
        parser.error(str(error))

    classes = FolderDataset(args.data, split="train").class_names
    model = setr.create_model(args.model, pretrained=args.pretrained, num_classes=len(classes), **args.model_kwargs)
    # the weights become this run's: the card must not claim the release's mIoU (same class count or not)
    model.info = model.info.replace(dataset="folder", class_names=tuple(classes), palette=None, release=None)
    model.to(args.device)
    crop = model.config.img_size
    transform = train_transform(crop, scale=(2 * crop, crop), mean=model.info.mean, std=model.info.std)
    train = AugmentedDataset(FolderDataset(args.data, split="train"), transform)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # endless, reshuffled each pass

    # Groups over every parameter first, so the optimiser already holds the encoder when it thaws.
    groups = param_groups(
        model, args.lr, head_lr_mult=10.0, weight_decay=args.weight_decay, layer_decay=args.layer_decay
    )
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / args.iters) ** 0.9)
    model.freeze_encoder()
    model.train()
    for step in range(args.iters):
        if step == args.frozen_iters:
            model.unfreeze_encoder()
        for _ in range(args.accum_steps):
            images, labels = (t.to(args.device) for t in next(batches))
            with torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=args.bf16):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), labels.long(), ignore_index=255) / args.accum_steps
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        if step % 10 == 0 or step == args.iters - 1:
            frozen = " (encoder frozen)" if model.encoder_frozen else ""
            print(f"step {step + 1}/{args.iters} loss {loss.item() * args.accum_steps:.4f}{frozen}", flush=True)
    model.eval().save_pretrained(args.out)
    print(f"saved {args.out}: setr predict --model {args.out} IMAGES --out MASKS")


if __name__ == "__main__":
    main()

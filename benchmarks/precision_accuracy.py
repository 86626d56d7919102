"""What bf16 and int8 do to the answers: mIoU and pixel agreement with fp32.

    python examples/train.py                                  # writes runs/train/final
    python benchmarks/precision_accuracy.py                   # its validation set, fp32 vs bf16 vs int8
    python benchmarks/precision_accuracy.py --vitl pup:768    # + mask agreement of a ViT-L on images

The first table scores the model ``examples/train.py`` trains on the validation set it generates
(the same seed, size and class count as its defaults) with the model's own test protocol, once per
precision: mIoU (to 0.01) and the share of pixels whose class equals the fp32 mask. The ViT-L row
(random weights: no ViT-L is trained here) compares bf16 and int8 masks with fp32 ones on
generated images: with no trained margins, it is a worst case for agreement.
"""

from __future__ import annotations

import argparse

import torch
from _common import table

import setr
from setr.data.synthetic import SyntheticShapes
from setr.metrics import ConfusionMatrix

PRECISIONS = ("fp32", "bf16", "int8")


def score(model: setr.SETR, dataset: SyntheticShapes, precision: str) -> tuple[float, list[torch.Tensor]]:
    predictor = setr.Predictor(model, precision=precision, batch_size=4)
    metric = ConfusionMatrix(model.num_classes, 255, list(model.info.class_names or []) or None)
    masks = []
    for image, label in dataset:
        mask = predictor(image).mask
        metric.update(mask[None], label[None])
        masks.append(mask)
    return metric.compute()["mIoU"], masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/train/final", help="a save_pretrained folder")
    parser.add_argument("--val", type=int, default=100, help="generated validation images (train.py's default)")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vitl", help="HEAD:SIZE of a ViT-L (random weights) to compare masks on 2 images")
    args = parser.parse_args()

    model = setr.create_model(args.model).eval()
    dataset = SyntheticShapes(args.val, split="val", size=(args.size, args.size), num_classes=args.classes,
                              seed=args.seed)  # fmt: skip
    rows, reference = [], None
    for precision in PRECISIONS:
        miou, masks = score(model, dataset, precision)
        reference = masks if precision == "fp32" else reference
        agree = sum((a == b).sum().item() for a, b in zip(masks, reference)) / sum(m.numel() for m in masks)
        rows.append([precision, f"{100 * miou:.2f}", f"{100 * agree:.3f} %"])
    print(f"{args.model} on {args.val} generated validation images ({model.info.protocol}):\n")
    print(table(["precision", "mIoU (%)", "pixels equal to fp32"], rows))

    if args.vitl:
        head, size = args.vitl.split(":")
        torch.manual_seed(0)
        big = setr.create_model(f"setr_{head}_vitl").eval()
        images = [(torch.rand(3, int(size), int(size), generator=torch.Generator().manual_seed(i)) * 255).round()
                  for i in range(2)]  # fmt: skip
        masks = {p: [setr.Predictor(big, precision=p, mode="whole")(im).mask for im in images] for p in PRECISIONS}
        rows = [[p, f"{100 * sum((a == b).float().mean().item() for a, b in zip(masks[p], masks['fp32'])) / 2:.2f} %"]
                for p in PRECISIONS[1:]]  # fmt: skip
        print(f"\nViT-L {head} at {size} (random weights, 2 generated images, whole image):\n")
        print(table(["precision", "pixels equal to fp32"], rows))


if __name__ == "__main__":
    main()

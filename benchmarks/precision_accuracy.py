"""What bf16 and int8 do to the answers: mIoU and pixel agreement with fp32.

    python examples/train.py                                  # writes runs/train/final
    python benchmarks/precision_accuracy.py                   # its validation set, fp32 vs bf16 vs int8
    python benchmarks/precision_accuracy.py --vitl pup:768    # + mask agreement of a ViT-L on images
    python benchmarks/precision_accuracy.py --openvino        # + OpenVINO IR in fp32, bf16 and int8

The first table scores the model ``examples/train.py`` trains on the validation set it generates
(the same seed, size and class count as its defaults) with the model's own test protocol, once per
precision: mIoU (to 0.01) and the share of pixels whose class equals the fp32 mask. The ViT-L row
(random weights: no ViT-L is trained here) compares bf16 and int8 masks with fp32 ones on
generated images: with no trained margins, it is a worst case for agreement.

``--openvino`` adds the model exported to an OpenVINO IR (``setr.export.export_model``, dynamic),
run in fp32 and bf16 (the run-time ``INFERENCE_PRECISION_HINT``), and its NNCF int8 IR calibrated on
``--calibration`` windows of generated *training* images (never the validation ones).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import table
from PIL import Image

import setr
from setr.data.synthetic import SyntheticShapes
from setr.metrics import ConfusionMatrix

PRECISIONS = ("fp32", "bf16", "int8")


def score(model, dataset: SyntheticShapes, precision: str) -> tuple[float, list[torch.Tensor]]:
    """mIoU and masks of ``model`` (a SETR, or an exported file's path) in ``precision``."""
    predictor = setr.Predictor(model, precision=precision, batch_size=4)
    info = predictor.model.info
    metric = ConfusionMatrix(predictor.model.num_classes, 255, list(info.class_names or []) or None)
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
    parser.add_argument("--openvino", action="store_true", help="also the OpenVINO IR: fp32, bf16, int8")
    parser.add_argument("--calibration", type=int, default=300, help="int8 calibration windows (training images)")
    args = parser.parse_args()

    model = setr.create_model(args.model).eval()
    dataset = SyntheticShapes(args.val, split="val", size=(args.size, args.size), num_classes=args.classes,
                              seed=args.seed)  # fmt: skip
    runs = [(f"eager {p}", model, p) for p in PRECISIONS]
    scratch = tempfile.TemporaryDirectory(prefix="setr-accuracy-")
    if args.openvino:
        from setr.export import export_model
        from setr.inference import CalibrationWindows

        folder = Path(scratch.name)
        train = SyntheticShapes(args.calibration, split="train", size=(args.size, args.size),
                                num_classes=args.classes, seed=args.seed)  # fmt: skip
        files = []
        for i, (image, _) in enumerate(train):
            files.append(folder / f"train_{i:04d}.png")
            Image.fromarray(np.asarray(image.permute(1, 2, 0).clamp(0, 255).byte())).save(files[-1])
        fp32_ir = export_model(model, folder / "fp32.xml", "openvino")
        windows = CalibrationWindows(files, model, args.calibration)
        int8_ir = export_model(model, folder / "int8.xml", "openvino", precision="int8", calibration=windows)
        runs += [("OpenVINO fp32", str(fp32_ir), "fp32"), ("OpenVINO bf16", str(fp32_ir), "bf16"),
                 ("OpenVINO int8", str(int8_ir), "fp32")]  # fmt: skip
    rows, reference, reference_miou = [], None, None
    for label, network, precision in runs:
        miou, masks = score(network, dataset, precision)
        if reference is None:
            reference, reference_miou = masks, miou
        agree = sum((a == b).sum().item() for a, b in zip(masks, reference)) / sum(m.numel() for m in masks)
        rows.append([label, f"{100 * miou:.2f}", f"{100 * (miou - reference_miou):+.2f}", f"{100 * agree:.3f} %"])
    print(f"{args.model} on {args.val} generated validation images ({model.info.protocol}):\n")
    print(table(["engine, precision", "mIoU (%)", "vs eager fp32", "pixels equal to eager fp32"], rows))
    scratch.cleanup()

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

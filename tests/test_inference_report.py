"""The library side of ``setr eval`` and ``setr predict``: the evaluation report and its table,
the Pascal Context 59-class rule, the folder scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from setr.data.datasets import PascalContext
from setr.data.io import IMAGE_EXTENSIONS
from setr.data.meta import EvalProtocol
from setr.inference import collect_images, default_report_path, eval_report, eval_table, pcontext59_classes
from setr.metrics import ConfusionMatrix

from .test_datasets import pascal_tree, write_image

REPORT_KEYS = [
    "model", "checkpoint", "dataset", "root", "split", "ms_flip", "protocol", "images", "failed", "pixels",
    "mIoU", "mAcc", "aAcc", "per_class",
]  # fmt: skip


def known_metric() -> ConfusionMatrix:
    """3 classes, 5 counted pixels: a 2 of 3 right, b 1 of 2 right, c never seen (NaN); one ignored pixel."""
    metric = ConfusionMatrix(3, class_names=["road", "b", "c"])
    metric.update(torch.tensor([0, 0, 1, 1, 0, 2]), torch.tensor([0, 0, 0, 1, 1, 255]))
    return metric


def test_eval_report_scores_a_known_confusion_matrix():
    protocol = EvalProtocol(mode="slide", crop=32, stride=21, test_scale=(64, 32))
    report = eval_report(
        known_metric(), ["x.png: cannot read as an image"], attempted=4, protocol=protocol, model="m",
        checkpoint="w.pth", dataset="folder", root=Path("data"), split=None, ms_flip=True,
    )  # fmt: skip
    assert list(report) == REPORT_KEYS
    # IoU: road 2 / (3 + 3 - 2), b 1 / (2 + 2 - 1); Acc: road 2/3, b 1/2; c: 0/0 -> None
    assert report["mIoU"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert report["mAcc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["aAcc"] == pytest.approx(3 / 5) and report["pixels"] == 5
    assert report["per_class"] == {
        "road": {"IoU": pytest.approx(0.5), "Acc": pytest.approx(2 / 3)},
        "b": {"IoU": pytest.approx(1 / 3), "Acc": pytest.approx(0.5)},
        "c": {"IoU": None, "Acc": None},
    }
    assert report["images"] == 3 and report["failed"] == ["x.png: cannot read as an image"]
    assert report["root"] == "data" and report["model"] == "m" and report["ms_flip"] is True
    assert report["protocol"]["crop"] == 32 and report["protocol"]["mode"] == "slide"
    back = json.loads(json.dumps(report, allow_nan=False))  # JSON-able: no NaN, no tuples left after a round trip
    assert back["protocol"]["test_scale"] == [64, 32] and back["per_class"]["c"] == {"IoU": None, "Acc": None}


def test_eval_report_with_nothing_counted_is_all_none():
    report = eval_report(ConfusionMatrix(2), attempted=0)
    assert report["mIoU"] is None and report["mAcc"] is None and report["aAcc"] is None
    assert report["pixels"] == 0 and report["images"] == 0 and report["protocol"] is None and report["root"] is None
    assert eval_table(report).splitlines()[-1] == "mIoU    nan  mAcc    nan  aAcc    nan"


def test_eval_table_is_the_metric_table_and_survives_json():
    metric = known_metric()
    report = eval_report(metric, attempted=1)
    assert eval_table(report) == metric.table()
    assert eval_table(json.loads(json.dumps(report))) == metric.table()
    lines = eval_table(report).splitlines()
    assert lines[1] == "road           50.00   66.67" and lines[3] == "c" + " " * 16 + "nan     nan"
    assert lines[-1] == "mIoU  41.67  mAcc  58.33  aAcc  60.00"


def test_default_report_path_names_the_model_and_dataset():
    assert default_report_path("setr_pup_vitl_ade20k", "ade20k") == Path("setr_eval_setr_pup_vitl_ade20k_ade20k.json")
    assert default_report_path("runs/train/final", "folder") == Path("setr_eval_final_folder.json")


def test_pcontext59_rule_scores_59_classes_for_both_models(tmp_path):
    assert pcontext59_classes(59) == (59, [])
    assert pcontext59_classes(60) == (60, [0])
    assert pcontext59_classes(None) == (60, [0])  # before the model is known: the 60-class labels
    pascal_tree(tmp_path)
    reports = {}
    for model_classes, prediction in ((60, [[0, 1, 59], [0, 5, 2]]), (59, [[0, 0, 58], [57, 4, 1]])):
        num_classes, exclude = pcontext59_classes(model_classes)
        dataset = PascalContext(tmp_path, "val", num_classes=num_classes)
        metric = ConfusionMatrix(dataset.num_classes, dataset.ignore_index, dataset.class_names, exclude)
        metric.update(torch.tensor(prediction), dataset[0]["mask"])  # truth [[0, 1, 59], [15, 0, 2]] (60 classes)
        reports[model_classes] = eval_report(metric, attempted=1)
    for report in reports.values():
        # background pixels are not counted; class 15 (14 of 59) missed: as background by the 60-class model
        assert report["pixels"] == 4 and report["aAcc"] == pytest.approx(3 / 4)
        assert len(report["per_class"]) == 59 and "background" not in report["per_class"]
    assert list(reports[60]["per_class"]) == list(reports[59]["per_class"])
    missed = PascalContext(tmp_path, "val").class_names[15]
    assert reports[60]["per_class"][missed] == reports[59]["per_class"][missed] == {"IoU": 0.0, "Acc": 0.0}
    assert reports[60]["per_class"]["aeroplane"] == {"IoU": 1.0, "Acc": 1.0}
    assert reports[60]["mIoU"] == pytest.approx(3 / 4)  # 3 classes right, the missed one 0, the rest never seen
    assert reports[59]["mIoU"] == pytest.approx(3 / 5)  # the 59-class model's miss lands on a 5th class


def test_collect_images_pairs_each_image_with_its_output_stem(tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", 4, 4)
    write_image(photos / "nested" / "b.PNG", 4, 4)
    (photos / "notes.txt").write_text("not an image")
    (photos / "folder.png").mkdir()  # a folder with an image suffix is not an image
    single = tmp_path / "a.png"  # same stem as photos/a.jpg: written as a_1
    write_image(single, 4, 4)
    odd = tmp_path / "scan.data"  # a file named directly is taken whatever its suffix
    odd.write_bytes(b"?")
    (tmp_path / "empty").mkdir()
    inputs = [photos, str(single), odd, tmp_path / "empty", tmp_path / "nowhere.jpg"]
    found, missing = collect_images(inputs)
    assert found == [
        (photos / "a.jpg", Path("a")),
        (photos / "nested" / "b.PNG", Path("nested/b")),
        (single, Path("a_1")),
        (odd, Path("scan")),
    ]
    assert missing == [
        f"{tmp_path / 'empty'}: no images in this folder ({', '.join(IMAGE_EXTENSIONS)})",
        f"{tmp_path / 'nowhere.jpg'}: no such file or folder",
    ]
    again, _ = collect_images([single, single])
    assert again == [(single, Path("a")), (single, Path("a_1"))]
    assert collect_images([]) == ([], [])

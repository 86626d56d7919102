"""Confusion-matrix metrics against hand-computed values and across processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from setr.metrics import ConfusionMatrix


def test_hand_computed_example():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    metric = ConfusionMatrix(4)
    metric.update(prediction, target)
    result = metric.compute()
    # class 0: tp 1, truth 2, predicted 2 -> IoU 1/3; class 1: tp 3, truth 3, pred 4 -> 3/4
    # class 2: tp 1, truth 2, pred 1 -> 1/2; class 3: absent everywhere -> NaN
    assert result["IoU"][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert math.isnan(result["IoU"][3]) and math.isnan(result["Acc"][3])
    assert result["Acc"][:3] == pytest.approx([1 / 2, 1, 1 / 2])
    assert result["mIoU"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert result["aAcc"] == pytest.approx(5 / 7)  # the ignored pixel is not counted


def test_streaming_equals_one_shot():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (6, 20, 30))
    target[target == 4] = 255
    prediction = torch.randint(0, 5, (6, 20, 30))
    whole, streamed = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(prediction, target)
    for p, t in zip(prediction, target):
        streamed.update(p, t)
    assert torch.equal(whole.matrix, streamed.matrix)
    assert "mIoU" in whole.table()


def test_bad_input_is_explained():
    metric = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="class indices"):
        metric.update(torch.full((2, 2), 7), torch.zeros(2, 2))


@pytest.mark.slow
def test_all_reduce_sums_over_processes(tmp_path):
    script = textwrap.dedent(
        """
        import os, torch, torch.distributed as dist
        from setr.metrics import ConfusionMatrix
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        metric = ConfusionMatrix(3)
        metric.update(torch.tensor([rank, 1]), torch.tensor([rank, 2]))
        metric.all_reduce()
        if rank == 0:
            print(metric.matrix.tolist())
        dist.destroy_process_group()
        """
    )
    path = tmp_path / "reduce.py"
    path.write_text(script)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(path)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    matrix = eval(result.stdout.strip().splitlines()[-1])
    assert matrix == [[1, 0, 0], [0, 1, 0], [0, 2, 0]]

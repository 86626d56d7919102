"""``examples/demo.py`` runs as the README says (the training and fine-tuning examples have their own tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_demo_builds_the_three_heads_by_name_and_segments_an_image():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    for name, classes in (
        ("setr_naive_vitl_cityscapes", 19),
        ("setr_pup_vitl_ade20k", 150),
        ("setr_mla_vitl_pcontext", 60),
    ):
        line = next(line for line in lines if line.startswith(name))
        assert f"logits (1, {classes}, 300, 410)" in line and f"/{classes}" in line

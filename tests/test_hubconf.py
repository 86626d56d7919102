"""torch.hub entry points, loaded the way users load them (``source="local"``) in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys, torch
repo = sys.argv[1]
sys.path.insert(0, repo)
hubconf = torch.hub._import_module("hubconf", repo + "/hubconf.py")
entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and n.startswith("setr_")]
for entry in ("setr_naive", "setr_pup"):
    torch.hub.load(repo, entry, source="local", img_size=32, embed_dim=32, depth=4, num_heads=2, decode_index=3,
                   aux_indices=[])
model = torch.hub.load(repo, "setr_mla", source="local", img_size=32, embed_dim=32, depth=4, num_heads=2,
                       mla_indices=[0, 1, 2, 3], num_classes=7)
zoo = torch.hub.load(repo, "setr_pup_vitl_ade20k", source="local", embed_dim=32, depth=4, num_heads=2,
                     decode_index=3, aux_indices=[1])
out = model.eval()(torch.randn(1, 3, 40, 24))
print(json.dumps({"entries": entries, "shape": list(out.shape), "head": model.config.head,
                  "zoo_classes": zoo.num_classes, "zoo_crop": zoo.config.img_size}))
"""


@pytest.mark.slow
def test_torch_hub_load_local():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"setr_naive", "setr_pup", "setr_mla", "setr_pup_vitl_cityscapes"} <= set(report["entries"])
    assert report["shape"] == [1, 7, 40, 24] and report["head"] == "mla"
    assert (report["zoo_classes"], report["zoo_crop"]) == (150, 512)

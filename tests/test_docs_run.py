"""Every code block of README.md and docs/*.md runs: Python blocks executed in page order, every
``setr ...`` line of a bash block run through the real command line, in a folder holding the files
the pages name (tests/docs_world.py says how that folder differs from a reader's machine: tiny
widths, quarter-size protocols, an offline Hub cache, no GPU).

The pages run once, in one subprocess (``huggingface_hub`` reads ``HF_HUB_OFFLINE`` at import, as it
does for a user); each block is then one test here, failing with the block's own traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import KEYS, require_data
from .docs_world import (
    NOT_RUN_COMMANDS,
    PAGES,
    ROOT,
    block_id,
    outputs_of,
    page_blocks,
    run_block,
    shell_lines,
)

pytestmark = pytest.mark.slow  # runs the pages in fresh processes

BLOCKS = [block_id(page, block["number"]) for page in PAGES for block in page_blocks(page)]


@pytest.fixture(scope="module")
def page_results(tmp_path_factory) -> dict:
    require_data(KEYS)
    scratch = tmp_path_factory.mktemp("docs")
    out = scratch / "results.json"
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(scratch / "hf-cache"), HF_HOME=str(scratch / "hf-home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "tests.docs_world", "--out", str(out), "--scratch", str(scratch)],
        capture_output=True, text=True, timeout=900, env=env, cwd=scratch,
    )  # fmt: skip
    assert result.returncode == 0 and out.is_file(), result.stderr[-4000:]
    return json.loads(out.read_text())["blocks"]


@pytest.mark.parametrize("where", BLOCKS)
def test_block_runs(where, page_results):
    result = page_results.get(where, {"status": "skipped", "reason": NOT_RUN_COMMANDS})
    if result["status"] == "skipped":
        pytest.skip(result["reason"])
    assert result["status"] == "passed", f"{where} failed:\n{result['error']}"


def test_every_setr_line_of_the_pages_ran(page_results):
    for page in PAGES:
        for block in page_blocks(page):
            if block["language"] != "bash" or block["skip"]:
                continue
            expected = [argv for argv in shell_lines(block["code"]) if argv[0] == "setr"]
            result = page_results.get(block_id(page, block["number"]), {"ran": []})
            assert len(result.get("ran", [])) == len(expected)


def test_only_uploads_are_marked_not_run():
    reasons = {block["skip"] for page in PAGES for block in page_blocks(page) if block["skip"]}
    assert reasons == {"uploads to the Hugging Face Hub"}


# ------------------------------------------------------------------- the runner itself


def test_a_renamed_function_or_argument_fails_the_block():
    import setr

    namespace = {"setr": setr}
    with pytest.raises(AttributeError, match="create_modle"):
        run_block({"language": "python", "code": "setr.create_modle('setr_pup_vitl')"}, namespace, "page#0")
    with pytest.raises(TypeError, match="pretrianed"):
        run_block({"language": "python", "code": "setr.create_model('setr_pup_vitl', pretrianed=True)"}, namespace, "p")
    with pytest.raises(AssertionError, match="exited 2"):
        run_block({"language": "bash", "code": "setr predict --modle x photo.jpg\n"}, namespace, "page#1")


def test_shell_lines_unquote_join_and_expand_like_a_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("b.jpg", "a.jpg"):
        (tmp_path / name).touch()
    code = "setr list '*ade20k*' --json   # comment\nsetr predict *.jpg \\\n    --out seg/\npip install x\n"
    assert shell_lines(code) == [
        ["setr", "list", "*ade20k*", "--json"],
        ["setr", "predict", "a.jpg", "b.jpg", "--out", "seg/"],
        ["pip", "install", "x"],
    ]
    assert outputs_of(code) == ["seg/"]


def test_the_not_run_marker_is_read_from_the_line_above_the_fence(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\na = 1\n```\n\n<!-- docs: not run (a reason) -->\n```bash\nsetr x\n```\n")
    blocks = page_blocks(page)
    assert [(b["language"], b["skip"]) for b in blocks] == [("python", None), ("bash", "a reason")]

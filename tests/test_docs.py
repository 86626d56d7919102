"""The documentation states what the code does."""

from __future__ import annotations

from pathlib import Path

from setr.zoo import zoo_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_page_holds_the_current_zoo_table():
    assert zoo_markdown() in (ROOT / "docs" / "zoo.md").read_text()


def test_readme_starts_with_the_install_and_test_commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    assert "pip install -e" in blocks[0] and "python examples/" in blocks[0]
    assert blocks[1].startswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\npython -m pytest -q\n" in ci

"""The documentation states what the code does."""

from __future__ import annotations

import re
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


IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def test_every_picture_a_page_shows_is_in_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    shown = [(page, link) for page in pages for link in IMAGE_LINK.findall(page.read_text())]
    assert len(shown) >= 5  # the decoders, the predictions (twice), the precision plot (twice)
    missing = [f"{page.name}: {link}" for page, link in shown if not (page.parent / link).is_file()]
    assert not missing, missing
    for _, link in shown:
        assert not link.startswith(("http://", "https://")), "pictures are drawn by scripts/docs_figures.py"

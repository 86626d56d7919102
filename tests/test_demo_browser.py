"""The demo page in a real browser: Debian's headless Chromium, driven by Playwright, against the
page served on localhost with a tiny model.

It uploads a generated image and reads the result off the page (the overlay's size, the legend's
classes, which must be the classes :class:`setr.Predictor` finds on the same image), moves the
opacity slider, uploads a file that is not an image and reads the refusal. Throughout, it records
every request the browser makes and every connection the server process opens or name it looks
up: all of them must stay on this machine (the page works offline).

``SETR_DEMO_SCREENSHOT=docs/img/demo.png python -m pytest tests/test_demo_browser.py`` also
copies the screenshot there (the picture of the page in the README and docs/demo.md).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

import setr

from .conftest import small

pytestmark = pytest.mark.slow  # starts a server and a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


def generated_photo(path: Path, height: int = 150, width: int = 230) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 scene (gradients, a disc, a bar) written to ``path`` as PNG."""
    ys, xs = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    disc = (ys - 0.5) ** 2 + (xs - 0.35) ** 2 < 0.06
    bar = (np.abs(xs - 0.8) < 0.07) & (ys > 0.2)
    rgb = np.stack([255 * ys, 255 * xs, 255.0 * disc + 120 * bar], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def _is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def outgoing(monkeypatch) -> list[str]:
    """Every address this process connects to or looks up that is not this machine (the server's
    side of "offline": no analytics, no version check, no font or CDN fetch)."""
    seen: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def record(address) -> None:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            seen.append(str(address[0]))

    def checked_connect(self, address):
        record(address)
        return connect(self, address)

    def checked_connect_ex(self, address):
        record(address)
        return connect_ex(self, address)

    def checked_getaddrinfo(host, *args, **kwargs):
        record((host,) if host is not None else ("",))
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", checked_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", checked_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", checked_getaddrinfo)
    return seen


@pytest.fixture
def served(tmp_path, outgoing):
    """``(url, predictor)``: the page of a tiny model saved to ``tmp_path``, served on a free port."""
    from setr.integrations import demo_page

    tiny = setr.create_model("setr_naive_vitl_cityscapes", **small(depth=2, narrow_heads=True, decode_index=1))
    tiny.eval().save_pretrained(tmp_path / "tiny")
    predictor = setr.Predictor(setr.create_model(tmp_path / "tiny"), device="cpu")
    examples = demo_page.example_scenes(tmp_path)
    page = demo_page.build_page(
        predictor, notice="A tiny randomly initialised model (the browser test's): its classes are noise.",
        examples=examples,
    )  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = demo_page.launch(page, host="127.0.0.1", port=port, block=False)
    try:
        yield url, predictor
    finally:
        page.close()


def test_the_page_segments_an_upload_in_a_browser_and_stays_offline(tmp_path, served, outgoing):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    url, predictor = served
    photo = tmp_path / "street.png"
    rgb = generated_photo(photo)
    expected_mask = predictor(rgb).mask
    counts = torch.bincount(expected_mask.reshape(-1).long(), minlength=predictor.model.num_classes)
    names = predictor.model.info.class_names
    expected = {names[i]: f"{100 * int(counts[i]) / expected_mask.numel():.1f} %" for i in torch.nonzero(counts)[:, 0]}
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("these are notes, not a photo\n")

    requests: list[str] = []
    start = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.goto(url, wait_until="load")  # not "networkidle": the page holds a heartbeat stream open
            page.set_input_files("#setr-upload input[type=file]", str(photo))
            page.wait_for_selector("#setr-legend .setr-name", timeout=30_000)

            overlay = page.locator("#setr-overlay img")
            overlay.wait_for()
            page.wait_for_function("document.querySelector('#setr-overlay img').naturalWidth > 0")
            assert overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [rgb.shape[1], rgb.shape[0]]
            shown_names = page.locator("#setr-legend .setr-name").all_inner_texts()
            shown_shares = page.locator("#setr-legend .setr-share").all_inner_texts()
            assert dict(zip(shown_names, shown_shares)) == expected
            assert len(shown_names) == len(expected)
            status = page.locator("#setr-status").inner_text()
            assert "fp32 on cpu" in status and "single-scale" in status and " s" in status

            before = overlay.get_attribute("src")
            page.locator("#setr-opacity input[type=range]").fill("0.9")
            page.wait_for_function(
                "src => document.querySelector('#setr-overlay img')?.getAttribute('src') !== src", arg=before
            )
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

            page.reload(wait_until="load")  # a fresh page: the upload box holds the photo
            page.set_input_files("#setr-upload input[type=file]", str(not_an_image))
            page.wait_for_selector("#setr-status :text('Not segmented')", timeout=30_000)
            refusal = page.locator("#setr-status").inner_text()
            assert "notes.txt is not an image this page can read" in refusal and "Traceback" not in refusal
        finally:
            browser.close()
    elapsed = time.perf_counter() - start
    assert elapsed < 40, f"the browser part took {elapsed:.0f} s"

    assert requests, "the browser recorded no request"
    leaving = sorted(
        {u for u in requests if not u.startswith(("data:", "blob:")) and not _is_loopback(urlparse(u).hostname or "")}
    )
    assert not leaving, f"the page fetched from outside this machine: {leaving}"
    assert not outgoing, f"the server connected outside this machine: {sorted(set(outgoing))}"
    copy_to = os.environ.get("SETR_DEMO_SCREENSHOT")
    if copy_to:
        shutil.copyfile(tmp_path / "demo.png", ROOT / copy_to)

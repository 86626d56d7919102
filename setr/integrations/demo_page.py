"""The demo page of ``setr demo`` and ``examples/app.py``: a photo in, its segmentation out.

The page is a Gradio ``Blocks`` over a :class:`setr.Predictor` (:func:`build_page`), served by
:func:`launch`. What it shows is computed by plain functions that need no browser, no server and
not even Gradio: :func:`read_upload` (the file as an image, or the one-line refusal the page shows),
:func:`segment` (the mask, the classes found with their share of pixels, the protocol, precision
and time: a :class:`Summary`) and :func:`blend` (the overlay at an opacity, from the stored mask,
without running the network again).

The page works offline: Gradio's analytics and version check are off (``analytics_enabled=False``
and ``GRADIO_ANALYTICS_ENABLED=False``, set before Gradio is imported), the theme uses the
system's fonts (no font file is fetched from anywhere), and server-side rendering, the MCP server
and share links are not started. ``tests/test_demo_browser.py`` records every request the
browser makes and every connection the server opens, and finds only localhost.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..data.io import IMAGE_EXTENSIONS, ImageReadError, read_image
from ..data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes
from ..dtypes import dtype_word
from ..inference import Predictor, overlay, palette_for
from ..models.card import _protocol_line

if TYPE_CHECKING:
    import gradio

__all__ = [
    "DEFAULT_OPACITY", "ClassShare", "NotAnImage", "Summary", "blend", "build_page", "class_shares", "example_scenes",
    "launch",
    "legend_html", "read_upload", "segment", "summary_markdown",
]  # fmt: skip

DEFAULT_OPACITY = 0.5
"""Overlay opacity of the class colours when the page opens."""

_FORMATS = ", ".join(e.lstrip(".").upper() for e in IMAGE_EXTENSIONS if e not in (".jpeg", ".tif"))


class NotAnImage(ValueError):
    """An upload that is not an image this page can read; the message is what the page shows."""


@dataclass(frozen=True)
class ClassShare:
    """One class found in a mask.

    Attributes:
        index: the class index.
        name: its name (``model.info.class_names``), or ``class N`` when the model has none.
        colour: its RGB colour in the overlay.
        share: the fraction of the image's pixels given this class (0 to 1).
    """

    index: int
    name: str
    colour: tuple[int, int, int]
    share: float


@dataclass(frozen=True)
class Summary:
    """What one run of the page found, and how.

    Attributes:
        classes: the classes present, most pixels first; their shares sum to 1.
        size: the image's ``(height, width)``.
        protocol: the test protocol in words (window, resize, single scale or ms+flip).
        precision: the precision the network ran in (``fp32``, ``bf16``, ``int8``).
        device: where it ran.
        seconds: the time the segmentation took (the network and the protocol around it).
    """

    classes: tuple[ClassShare, ...]
    size: tuple[int, int]
    protocol: str
    precision: str
    device: str
    seconds: float


def read_upload(path: str | os.PathLike, name: str | None = None) -> torch.Tensor:
    """The uploaded file as a ``(3, H, W)`` uint8 RGB tensor.

    Args:
        path: where the upload was stored.
        name: the file's name on the user's machine (the message names it), default ``path``'s.

    Raises:
        NotAnImage: the file is not an image PIL can decode (its one-line message says so and what
            to upload instead).
    """
    shown = name or Path(path).name
    try:
        return read_image(path)
    except ImageReadError as error:
        reason = str(error).removeprefix(f"{path}: ")
        if reason.startswith("cannot read as an image"):
            raise NotAnImage(f"{shown} is not an image this page can read: upload a photo ({_FORMATS}).") from None
        raise NotAnImage(f"{shown}: {' '.join(reason.split())}") from None  # e.g. more pixels than PIL allows


def class_shares(
    mask: torch.Tensor | np.ndarray,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> tuple[ClassShare, ...]:
    """The classes present in ``mask`` with their share of its pixels, most pixels first.

    Args:
        mask: ``(H, W)`` class indices.
        num_classes: the model's classes.
        class_names: one name per class (``model.info.class_names``); ``class N`` without them.
        palette: one RGB colour per class (``model.info.palette``); the VOC colour map without it.
    """
    flat = torch.as_tensor(np.asarray(mask)).reshape(-1).long()
    counts = torch.bincount(flat, minlength=num_classes)
    colours = palette_for(num_classes, palette)
    total = max(int(flat.numel()), 1)
    present = [int(i) for i in torch.argsort(counts, descending=True, stable=True) if counts[i] > 0]
    return tuple(
        ClassShare(
            index=i,
            name=class_names[i] if class_names is not None and i < len(class_names) else f"class {i}",
            colour=tuple(int(c) for c in colours[i]) if i < num_classes else (0, 0, 0),
            share=int(counts[i]) / total,
        )
        for i in present
    )


def segment(predictor: Predictor, image: torch.Tensor, ms_flip: bool = False) -> tuple[torch.Tensor, Summary]:
    """Segment one ``(3, H, W)`` RGB image; ``(mask (H, W), summary)``."""
    model = predictor.model
    start = time.perf_counter()
    mask = predictor(image, ms_flip=ms_flip).mask
    seconds = time.perf_counter() - start
    info = model.info
    img_size = int(getattr(getattr(model, "config", None), "img_size", predictor.protocol.crop))
    protocol = f"{_protocol_line(predictor.protocol, img_size)}; run {'with ms+flip' if ms_flip else 'single-scale'}"
    precision = predictor.precision or dtype_word(predictor.input_dtype) or str(predictor.input_dtype)
    summary = Summary(
        classes=class_shares(mask, model.num_classes, info.class_names, info.palette),
        size=(int(image.shape[-2]), int(image.shape[-1])),
        protocol=protocol,
        precision=precision,
        device=str(predictor.device),
        seconds=seconds,
    )
    return mask, summary


def blend(image: torch.Tensor, mask: torch.Tensor, model: Any, opacity: float) -> Image.Image:
    """The class colours of ``mask`` over ``image`` at ``opacity`` (0: the photo, 1: the colours),
    in ``model``'s palette; the same size as ``image``. No network runs."""
    palette = palette_for(model.num_classes, model.info.palette)
    return overlay(image, mask, palette, float(min(max(opacity, 0.0), 1.0)))


def legend_html(classes: Sequence[ClassShare]) -> str:
    """The palette legend of the classes found: colour, name and share of pixels, one row each."""
    rows = "".join(
        f'<tr class="setr-class" data-index="{c.index}">'
        f'<td><span class="setr-swatch" style="background: rgb{c.colour}"></span></td>'
        f'<td class="setr-name">{html.escape(c.name)}</td>'
        f'<td class="setr-share">{100 * c.share:.1f} %</td></tr>'
        for c in classes
    )
    return (
        '<table id="setr-legend"><thead><tr><th></th><th>class</th><th>pixels</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def summary_markdown(summary: Summary) -> str:
    """How the segmentation was made, in a few lines: size, protocol, precision, device, time."""
    height, width = summary.size
    found = len(summary.classes)
    return (
        f"**{found} {'class' if found == 1 else 'classes'} found** in {width}x{height} pixels  \n"
        f"**Protocol:** {summary.protocol}  \n"
        f"**Precision:** {summary.precision} on {summary.device}  \n"
        f"**Time:** {summary.seconds:.2f} s"
    )


def build_page(
    predictor: Predictor,
    *,
    title: str | None = None,
    notice: str | None = None,
    examples: Sequence[str | os.PathLike] = (),
    ms_flip: bool = False,
) -> gradio.Blocks:
    """The page: upload or pick an image, see the overlay, the legend and how it was made.

    Args:
        predictor: runs the model (its protocol, precision and device are the page's).
        title: the heading; default the model's zoo name or dataset.
        notice: a line shown in bold under the heading (e.g. that the weights are random).
        examples: image files offered as examples.
        ms_flip: segment with multi-scale + flip testing.

    Raises:
        ImportError: Gradio is not installed (the message names the extra to install).
    """
    gr = _gradio()
    model = predictor.model
    info = model.info
    heading = title or f"SETR: {info.full_name or info.dataset or type(model).__name__}"
    classes = f"{model.num_classes} classes" + (f" ({info.dataset})" if info.dataset else "")

    def run(path: str | None, opacity: float) -> tuple[Any, str, str, Any]:
        if not path:
            return None, "", "", None
        try:
            image = read_upload(path)  # Gradio keeps the upload's own name as the file's name
        except NotAnImage as error:
            return None, "", f"**Not segmented:** {error}", None
        try:
            mask, summary = segment(predictor, image, ms_flip=ms_flip)
        except ValueError as error:  # NaN logits (broken weights, overflowed precision): said on the page
            return None, "", f"**Not segmented:** {' '.join(str(error).split())}", None
        picture = blend(image, mask, model, opacity)
        return picture, legend_html(summary.classes), summary_markdown(summary), (image, mask)

    def reblend(state: Any, opacity: float) -> Any:
        if state is None:
            return gr.skip()
        return blend(*state[:2], model, opacity)

    with gr.Blocks(title=heading, analytics_enabled=False) as page:
        gr.Markdown(f"# {html.escape(heading)}\nSemantic segmentation with {classes}. Upload a photo.")
        if notice:
            gr.Markdown(f"**{html.escape(notice)}**", elem_id="setr-notice")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Photo", file_count="single", type="filepath", elem_id="setr-upload")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Examples")
                opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity",
                                    elem_id="setr-opacity")  # fmt: skip
            with gr.Column():
                shown = gr.Image(label="Segmentation", type="pil", format="png", interactive=False,
                                 elem_id="setr-overlay")  # fmt: skip
                status = gr.Markdown(elem_id="setr-status")
                legend = gr.HTML(elem_id="setr-classes", js_on_load=None)
        held = gr.State()
        upload.change(run, inputs=[upload, opacity], outputs=[shown, legend, status, held])
        # while the slider moves, only the latest value is blended (a re-blend is a few ms per megapixel)
        opacity.change(reblend, [held, opacity], [shown], show_progress="hidden", trigger_mode="always_last")
    return page


def example_scenes(folder: str | os.PathLike, count: int = 3, size: tuple[int, int] = (240, 320)) -> list[Path]:
    """Write ``count`` generated scenes (:class:`setr.data.synthetic.SyntheticShapes`, the scenes
    ``examples/train.py`` trains on) into ``folder`` as PNG files, to offer as examples."""
    folder = Path(folder)
    scenes = SyntheticShapes(num_samples=count, size=size, num_classes=len(SYNTHETIC_CLASSES), split="test")
    paths = []
    for index in range(count):
        path = folder / f"scene_{index}.png"
        Image.fromarray(scenes.generate(index)[0]).save(path)
        paths.append(path)
    return paths


def launch(page: gradio.Blocks, *, host: str | None = None, port: int | None = None, block: bool = True) -> str:
    """Serve ``page`` with nothing fetched from outside; returns its local address.

    Args:
        page: from :func:`build_page`.
        host: the address to listen on; default ``GRADIO_SERVER_NAME`` or 127.0.0.1 (Gradio's rule,
            which a Hugging Face Space sets to 0.0.0.0).
        port: the port; default ``GRADIO_SERVER_PORT`` or the first free one from 7860.
        block: serve until interrupted (Ctrl-C); ``False`` returns once the server is up.
    """
    gr = _gradio()
    theme = gr.themes.Default(font=("system-ui", "sans-serif"), font_mono=("ui-monospace", "monospace"))
    _, local_url, _ = page.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, theme=theme, css=_CSS,
        share=False, ssr_mode=False, mcp_server=False, pwa=False, inbrowser=False,
    )  # fmt: skip
    return local_url


_CSS = """
#setr-legend td { padding: 2px 8px; }
#setr-legend .setr-swatch { display: inline-block; width: 1.2em; height: 1.2em; border: 1px solid #8888; }
#setr-legend .setr-share { text-align: right; }
"""


def _gradio() -> ModuleType:
    """Gradio, imported with its analytics off (the variable is read at import and at launch)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError:
        raise ImportError('the demo page needs Gradio: pip install "setr-pytorch[demo]"') from None
    return gradio

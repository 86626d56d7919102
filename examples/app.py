"""The ``setr demo`` page as a file a Hugging Face Space runs (``app.py``, SDK ``gradio``).

    python examples/app.py [MODEL] [--port N]

MODEL (or the ``SETR_DEMO_MODEL`` environment variable) is a zoo name, loaded with its released
weights, or a folder written by ``save_pretrained``. Without one, the page runs what works offline:
``runs/train/final`` (the model ``examples/train.py`` trains) when it is there, else a tiny
randomly initialised SETR, and says so on the page. On a Space, ``requirements.txt`` holds
``setr-pytorch[demo]`` and the Space's ``GRADIO_SERVER_NAME=0.0.0.0`` makes the page public.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import setr
from setr.data.synthetic import synthetic_info
from setr.integrations import demo_page

TRAINED = Path("runs/train/final")
"""Where ``examples/train.py`` writes its model."""

UNTRAINED = "Random weights: a tiny untrained SETR, so the classes it finds are noise. Set SETR_DEMO_MODEL."


def load(name: str | None) -> tuple[setr.SETR, str | None]:
    """``(model, notice)``: the model ``name`` names, else the offline default and what to say about it."""
    if name:
        return setr.create_model(name, pretrained=setr.is_model(name)), None
    if (TRAINED / "config.json").is_file():
        return setr.create_model(str(TRAINED)), None
    scenes = synthetic_info(num_classes=7)  # the generated scenes the page offers as examples
    model = setr.create_model("setr_naive_vitl", num_classes=7, img_size=64, embed_dim=64, depth=2, num_heads=4,
                              decode_index=1)  # fmt: skip
    model.info = model.info.replace(
        dataset=scenes.name, class_names=scenes.class_names, palette=scenes.palette, protocol=scenes.protocol
    )
    return model.eval(), UNTRAINED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=os.environ.get("SETR_DEMO_MODEL"),
                        help="zoo name or save_pretrained folder (default: $SETR_DEMO_MODEL, else runs/train/final, "
                        "else a tiny untrained model)")  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or the first free from 7860"
    )
    args = parser.parse_args()
    try:
        model, notice = load(args.model)
    except (KeyError, ValueError, OSError, setr.PretrainedWeightsUnavailable) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        sys.exit(f"app.py: {' '.join(str(message).split())}")
    predictor = setr.Predictor(model, precision="auto")
    with tempfile.TemporaryDirectory(prefix="setr-demo-") as folder:
        page = demo_page.build_page(predictor, notice=notice, examples=demo_page.example_scenes(folder))
        demo_page.launch(page, port=args.port)


if __name__ == "__main__":
    main()

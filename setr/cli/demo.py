"""``setr demo``: a web page to segment your own photos with a model (the ``demo`` extra, Gradio)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import socket
import tempfile

from .arguments import add_model_args, add_protocol_args
from .common import CliError, build_predictor, check_batch_size, choose_device, choose_precision, load_model, report

__all__ = ["add_parser", "run"]


def port_number(text: str) -> int:
    """``--port``: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr demo``."""
    parser = subparsers.add_parser(
        "demo", help="a web page to segment your own photos (needs the demo extra)",
        description="Serve a page where you upload a photo (or pick a generated example) and see the model's "
        "segmentation: the colour overlay with an opacity slider, the classes found with their share of pixels, "
        "the protocol, precision and time. Works offline. Needs Gradio: pip install \"setr-pytorch[demo]\".",
    )  # fmt: skip
    parser.add_argument("--port", type=port_number, default=None,
                        help="the port to serve on (default: the first free one from 7860)")  # fmt: skip
    parser.add_argument(
        "--host", nargs="?", const="0.0.0.0", default="127.0.0.1", metavar="ADDRESS",
        help="the address to listen on (default 127.0.0.1, this machine only); --host alone: every interface",
    )  # fmt: skip
    add_model_args(parser)
    add_protocol_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and serve the page until interrupted."""
    check_batch_size(args)
    if args.port is not None:
        _check_port_free(args.host, args.port)
    if importlib.util.find_spec("gradio") is None:  # before the (slow) model load; not imported yet
        raise CliError('setr demo needs Gradio: pip install "setr-pytorch[demo]"')
    device = choose_device(args.device)
    precision = choose_precision(args, device)
    model = load_model(args, precision)
    predictor = build_predictor(args, model, device, precision)
    from ..integrations import demo_page  # imports Gradio

    notice = None if model.info.loaded_from else "Random weights: this model was not trained, its classes are noise."
    with tempfile.TemporaryDirectory(prefix="setr-demo-") as folder:
        examples = demo_page.example_scenes(folder)
        page = demo_page.build_page(predictor, notice=notice, examples=examples, ms_flip=args.ms_flip)
        report("serving the page; stop with Ctrl-C")
        demo_page.launch(page, host=args.host, port=args.port)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another program holds, before the model loads."""
    with contextlib.closing(socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CliError(f"--port {port}: another program uses it; pick another with --port N") from None
            raise CliError(f"--host {host} --port {port}: cannot serve there ({error.strerror})") from None

"""Run the code of README.md and docs/*.md as a reader would, in a folder holding what the pages name.

``python -m tests.docs_world --out results.json --scratch DIR`` from the repository (``tests/test_docs_run.py`` runs it once, in a
subprocess, so that the Hugging Face variables below are read by ``huggingface_hub`` at import as
they are for a user). Every page runs in a fresh copy of the folder, its blocks in page order in
one namespace, so a block sees what the blocks above it made.

What a page runs against, and the only ways it differs from the reader's machine:

- **Tiny widths.** Every zoo architecture is built with ``TINY_WIDTHS`` (token width 32, 2 heads,
  narrow heads) instead of ViT-L's: depth, taps, patch size and classes stay the official ones, so
  ``indices=[5, 11, 17, 23]`` and the auxiliary heads at blocks 9-23 mean on the page what they
  mean here. A class built directly (``ViTEncoder(embed_dim=1024, ...)``) keeps the size the page
  gives.
- **Quarter-size protocols.** Every dataset's test protocol runs at a quarter of its sizes (crop
  768 -> 192, Cityscapes' 2049x1025 test scale -> 512x256; crops rounded to whole patches): the
  same sliding windows, scales and flips on fewer pixels (the zoo crops, and so the models'
  ``img_size``, follow).
- **Files.** Images, datasets in each documented layout, checkpoints named as the pages name them
  (official, mmsegmentation and PaddleViT key layouts made from a tiny model through the library's
  own converters, then loaded back and checked equal), a timm ImageNet ViT, the folders the
  examples write (``runs/train/final``, ``runs/finetune``) and an offline Hugging Face cache
  (``HF_HUB_OFFLINE=1``) with a tiny model for every zoo name the pages load ``pretrained``.
- **Names a snippet leaves to the reader** (``x``, ``images``, ``labels``, ``model``, ...): see
  ``given_names``.
- **No GPU.** Without CUDA, ``"cuda"`` in a block and ``--device cuda`` in a command run on the CPU.
- **One process of a torchrun job.** ``RANK=0``, ``WORLD_SIZE=1`` and a free ``MASTER_PORT`` are
  set, so a block that calls ``init_process_group`` runs as one process of ``torchrun`` would.
- **Outputs start absent.** A file or folder a page's ``setr`` commands write (``--out``) is
  removed from that page's copy of the folder first.
- **Shell blocks:** every ``setr ...`` line runs through ``setr.cli.main`` (globs expanded as a shell
  would); other lines (``pip``, ``python examples/...``, ``torchrun``) are not run here (the
  examples have their own tests, and their flags are checked by tests/test_docs_snippets.py).
- **Not run:** a block right after ``<!-- docs: not run (reason) -->`` (an upload to the Hub).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import glob
import io
import itertools
import json
import multiprocessing
import os
import pickle
import re
import shlex
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .conftest import build_hub_cache, read_key_list, small

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?:<!-- docs: not run \((?P<skip>[^)]*)\) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```", re.S | re.M
)
RUN_LANGUAGES = ("python", "bash")
TINY_WIDTHS = {k: v for k, v in small(narrow_heads=True).items() if k not in ("img_size", "depth")}
NOT_RUN_COMMANDS = "no setr command in it: pip / python examples/... / torchrun lines are not run here"


def page_blocks(page: Path) -> list[dict[str, Any]]:
    """Every python/bash block of ``page``: ``{"number", "language", "code", "skip"}`` in page order."""
    found = []
    matches = [m for m in FENCE.finditer(page.read_text()) if m.group("lang") in RUN_LANGUAGES]
    for number, match in enumerate(matches):
        found.append(
            dict(number=number, language=match.group("lang"), code=match.group("code"), skip=match.group("skip"))
        )
    return found


def block_id(page: Path, number: int) -> str:
    return f"{page.relative_to(ROOT).as_posix()}#{number}"


# ----------------------------------------------------------------------------------- the world


def shrink_the_zoo() -> None:
    """Build every zoo name at ``TINY_WIDTHS`` (see the module docstring)."""
    from setr.zoo.table import ZooEntry

    official_kwargs = ZooEntry.kwargs

    def tiny_kwargs(entry: ZooEntry) -> dict[str, Any]:
        return {**official_kwargs(entry), **TINY_WIDTHS}

    ZooEntry.kwargs = tiny_kwargs  # type: ignore[method-assign]


def quarter_the_protocols() -> None:
    """Run every dataset's test protocol at a quarter of its sizes (see the module docstring)."""
    import dataclasses

    from setr.data.meta import DATASETS

    def quarter(side: int) -> int:
        return max(16, round(side / 4 / 16) * 16)

    for name, info in DATASETS.items():
        p = info.protocol
        smaller = dataclasses.replace(
            p,
            crop=quarter(p.crop),
            stride=max(1, p.stride * quarter(p.crop) // p.crop),
            test_scale=None if p.test_scale is None else (p.test_scale[0] // 4, p.test_scale[1] // 4),
            short_side=None if p.short_side is None else p.short_side // 4,
        )
        DATASETS[name] = dataclasses.replace(info, protocol=smaller)


def _image(path: Path, height: int, width: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def _mask(path: Path, height: int, width: int, values: list[int], seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.choice(np.array(values, dtype=np.uint8), (height, width))).save(path)


def in_foreign_layout(model: Any, convert: Any, layout_keys: list[str]) -> dict[str, Any]:
    """``model``'s weights under another framework's key names.

    Each key of the layout goes through the library's own converter holding a marker (a ``(3, 5)``
    tensor filled with the key's number), so the inverse needs no second key table: the marker
    says which key became which of ours, and its shape which transform the converter applied
    (``(5, 3)``: transposed; ``(3, 4)``: a cls-token slot dropped).
    """
    import torch

    markers = {key: torch.full((3, 5), float(number)) for number, key in enumerate(layout_keys)}
    ours = convert(markers, model.config.to_dict())
    state = model.state_dict()
    out: dict[str, Any] = {}
    for our_key, marker in ours.items():
        if our_key not in state or not marker.is_floating_point():
            continue  # a head the model does not build, or a counter the converter makes up
        source_key = layout_keys[int(marker.flatten()[0])]
        value = state[our_key].clone()
        if marker.shape == (5, 3):
            value = value.transpose(0, 1).contiguous()
        elif marker.shape == (3, 4):
            value = torch.cat([torch.zeros_like(value[:, :1]), value], dim=1)
        elif marker.shape != (3, 5):
            raise AssertionError(f"{source_key}: unknown transform to {tuple(marker.shape)}")
        out[source_key] = value
    for key in layout_keys:  # what the converter drops (dead conv_seg, MLA's cls token): any value
        out.setdefault(key, torch.zeros(1, 1, model.config.embed_dim))
    return out


def _loads_back_equal(name: str, path: Path, source: Any) -> None:
    import torch

    import setr

    loaded = setr.create_model(name, checkpoint_path=path, aux_heads=bool(source.aux_heads))
    expected = source.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), f"{path.name}: {key} differs after the round trip"


def _write_checkpoints(world: Path) -> None:
    import numpy as np
    import timm
    import torch
    from safetensors.torch import save_file

    import setr
    from setr.convert.mmseg import convert_mmseg
    from setr.convert.official import convert_official
    from setr.convert.paddle import convert_paddlevit

    official_pup = list(read_key_list("official_setr_keys_pup_vitl_cityscapes.txt"))
    for name, files in {
        "setr_pup_vitl_cityscapes.official_80k": ["SETR_PUP_cityscapes_80k.pth"],
        "setr_pup_vitl_ade20k.official_160k": ["SETR_PUP_ade.pth", "SETR_PUP_ade20k.pth"],
    }.items():
        model = setr.create_model(name, aux_heads=True)
        checkpoint = {"meta": {"iter": 80000}, "state_dict": in_foreign_layout(model, convert_official, official_pup)}
        for file in files:
            torch.save(checkpoint, world / file)
            _loads_back_equal(name, world / file, model)

    name = "setr_pup_vitl_ade20k.mmseg_160k"
    model = setr.create_model(name, aux_heads=True)
    mmseg_keys = [*read_key_list("mmseg122_setr_keys_pup_vitl_ade20k.txt"), "backbone.patch_embed.projection.bias"]
    path = world / "setr_pup_512x512_160k_b16_ade20k_20210619_191343-7e0ce826.pth"
    torch.save(
        {"meta": {"mmseg_version": "0.14.0"}, "state_dict": in_foreign_layout(model, convert_mmseg, mmseg_keys)}, path
    )
    _loads_back_equal(name, path, model)

    name = "setr_mla_vitl_cityscapes.paddlevit_80k"
    model = setr.create_model(name, aux_heads=True)
    paddle = in_foreign_layout(
        model, convert_paddlevit, list(read_key_list("paddlevit_setr_keys_mla_vitl_cityscapes.txt"))
    )
    path = world / "SETR_MLA_Large_768x768_80k.pdparams"
    path.write_bytes(pickle.dumps({k: np.ascontiguousarray(v.numpy()) for k, v in paddle.items()}, protocol=4))
    _loads_back_equal(name, path, model)

    model = setr.create_model("setr_naive_vitl_cityscapes")
    save_file(model.state_dict(), str(world / "model.safetensors"))

    # timm's ImageNet ViT-L/16 at 384, at the tiny width
    vit = timm.models.VisionTransformer(img_size=384, patch_size=16, embed_dim=32, depth=24, num_heads=2)
    for file in ("jx_vit_large_p16_384.pth", "jx_vit_large_p16_384-b3be5167.pth"):
        torch.save(vit.state_dict(), world / file)


def _write_model_folders(world: Path) -> None:
    import setr
    from setr.data.synthetic import synthetic_info

    # what `python examples/train.py` leaves: a small model of the five synthetic classes
    meta = synthetic_info(5, (160, 160))
    trained = setr.create_model("setr_naive_vitl", num_classes=5, img_size=128)
    trained.info = trained.info.replace(
        dataset="synthetic", class_names=list(meta.class_names), palette=meta.palette, protocol=meta.protocol
    )
    trained.eval().save_pretrained(world / "runs" / "train" / "final")
    # what `python examples/finetune.py --model setr_pup_vitl_ade20k --pretrained` leaves
    finetuned = setr.create_model("setr_pup_vitl_ade20k", num_classes=5)
    finetuned.info = trained.info.replace(protocol=finetuned.info.protocol)
    finetuned.eval().save_pretrained(world / "runs" / "finetune")


def _write_hub_cache(cache: Path, staging: Path) -> None:
    """A tiny model for every zoo release the pages name, where ``hf_hub_download`` looks offline
    (each saved under ``staging`` first)."""
    import setr
    from setr.zoo import HUB_REVISION, hub_repo_id
    from setr.zoo.registry import is_model, lookup

    text = "\n".join(page.read_text() for page in PAGES)
    names = sorted(
        {m for m in re.findall(r"\bsetr_[a-z0-9]+_[a-z0-9]+_[a-z0-9]+(?:\.[a-z0-9_]+)?", text) if is_model(m)}
    )
    for name in names:
        entry, tag, release = lookup(name)
        if release is None:
            continue
        folder = staging / f"{entry.name}.{tag}"
        if folder.exists():
            continue
        # as `setr convert` writes a release: with its auxiliary heads
        setr.create_model(f"{entry.name}.{tag}", aux_heads=True).eval().save_pretrained(folder)
        files = {file.name: file.read_bytes() for file in folder.iterdir() if file.is_file()}
        build_hub_cache(cache, hub_repo_id(entry.name, tag), HUB_REVISION, files)


def _write_data(world: Path) -> None:
    from setr.data.synthetic import synthetic_info

    for number, name in enumerate(
        ["street.jpg", "street.png", "room.jpg", "photo.jpg", "photos/a.jpg", "photos/b.png"]
    ):
        _image(world / name, 96 + 8 * number, 160 - 8 * number, number)
    for number in range(2):
        _image(world / "images" / f"img{number}.jpg", 80, 112, 10 + number)
    city = world / "data" / "cityscapes"
    stem = "frankfurt_000000_000294"
    _image(city / "leftImg8bit" / "val" / "frankfurt" / f"{stem}_leftImg8bit.png", 64, 128, 20)
    _mask(city / "gtFine" / "val" / "frankfurt" / f"{stem}_gtFine_labelTrainIds.png", 64, 128, [*range(19), 255], 21)
    ade = world / "data" / "ade" / "ADEChallengeData2016"
    _image(ade / "images" / "validation" / "ADE_val_00000001.jpg", 96, 128, 22)
    _mask(ade / "annotations" / "validation" / "ADE_val_00000001.png", 96, 128, list(range(151)), 23)
    folder = world / "DATA"  # your own classes (the five of runs/train/final)
    (folder / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("\n".join(synthetic_info(5).class_names) + "\n")
    for split, number in itertools.product(("train", "val"), range(2)):
        _image(folder / "images" / split / f"{split}{number}.jpg", 72, 96, 30 + number)
        _mask(folder / "masks" / split / f"{split}{number}.png", 72, 96, [0, 1, 2, 3, 4, 255], 40 + number)


def _write_exported(world: Path) -> None:
    import setr
    from setr.export import export_model

    model = setr.create_model("setr_pup_vitl_ade20k", pretrained=True).eval()
    export_model(model, world / "setr_pup_ade.onnx", "onnx", dynamic=True)


def build_world(world: Path) -> None:
    """Everything the pages name, under ``world`` (the Hub cache where ``HF_HUB_CACHE`` says)."""
    world.mkdir(parents=True, exist_ok=True)
    _write_data(world)
    _write_checkpoints(world)
    _write_model_folders(world)
    _write_hub_cache(Path(os.environ["HF_HUB_CACHE"]), world.parent / "hub-releases")
    _write_exported(world)


# ------------------------------------------------------------------------------------ running


def given_names() -> dict[str, Any]:
    """What the pages' snippets use without defining: a small batch, a model, a predictor, a loop's
    settings. Blocks that assign these names replace them."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    import setr

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    labels = torch.randint(0, 5, (2, 64, 64), generator=generator)
    labels[:, :4] = 255
    model = setr.create_model("setr_pup_vitl_cityscapes")
    return dict(
        torch=torch, F=F, np=np, setr=setr,
        model=model, predictor=setr.Predictor(model),
        x=images, images=images, labels=labels,
        pil_image=Image.open("room.jpg"), img1=Image.open("street.jpg"), img2=np.asarray(Image.open("room.jpg")),
        batches=itertools.cycle([(images, labels)]), iters=2, accum_steps=2,
        device=torch.device("cpu"), use_bf16=False,
        my_decoder=lambda features: torch.cat(features, dim=1).mean(dim=1, keepdim=True),
    )  # fmt: skip


def without_cuda(code: str) -> str:
    """The block for a machine without CUDA: ``"cuda"`` -> ``"cpu"``, ``--device cuda`` -> ``--device cpu``."""
    import torch

    if torch.cuda.is_available():
        return code
    return code.replace('device="cuda"', 'device="cpu"').replace("--device cuda", "--device cpu")


def shell_lines(code: str) -> list[list[str]]:
    """The commands of a bash block: continuations joined, comments dropped, split and unquoted
    as a shell would, unquoted globs expanded."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=False)
        lexer.whitespace_split, lexer.commenters = True, "#"
        argv: list[str] = []
        for token in lexer:
            if token[0] in "'\"":
                argv.append(token[1:-1])
            elif "*" in token and glob.glob(token):
                argv.extend(sorted(glob.glob(token)))
            else:
                argv.append(token)
        if argv:
            commands.append(argv)
    return commands


def outputs_of(code: str) -> list[str]:
    """What the ``setr`` commands of a bash block write (their ``--out``)."""
    return [
        argv[i + 1] for argv in shell_lines(code) if argv[0] == "setr" for i, a in enumerate(argv[:-1]) if a == "--out"
    ]


def run_setr(argv: list[str]) -> tuple[int, str]:
    """``setr ARGV`` in this process; ``(exit status, stdout + stderr)``."""
    from setr.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, output.getvalue()


def run_block(block: dict[str, Any], namespace: dict[str, Any], where: str) -> dict[str, Any]:
    code = without_cuda(block["code"])
    ran: list[str] = []
    if block["language"] == "python":
        exec(compile(code, where, "exec"), namespace)
        ran.append("python")
        return dict(ran=ran)
    for argv in shell_lines(code):
        if argv[0] != "setr":
            continue
        status, output = run_setr(argv[1:])
        if status != 0:
            raise AssertionError(f"`{shlex.join(argv)}` exited {status}:\n{output[-3000:]}")
        ran.append(shlex.join(argv))
    return dict(ran=ran)


def run_page(page: Path, world: Path, scratch: Path) -> dict[str, dict[str, Any]]:
    """Run ``page``'s blocks in a fresh copy of ``world``; ``{block id: result}``."""
    folder = scratch / page.stem
    shutil.copytree(world, folder)
    results: dict[str, dict[str, Any]] = {}
    previous = Path.cwd()
    os.chdir(folder)
    for block in page_blocks(page):
        for written in map(Path, outputs_of(block["code"]) if block["language"] == "bash" else []):
            if written.is_dir():
                shutil.rmtree(written)
            elif written.exists():
                written.unlink()
    try:
        namespace = given_names()
        for block in page_blocks(page):
            where = block_id(page, block["number"])
            if block["skip"]:
                results[where] = dict(status="skipped", reason=f"marked not run on the page: {block['skip']}")
                continue
            if not _runs_something(block):
                results[where] = dict(status="skipped", reason=NOT_RUN_COMMANDS)
                continue
            start = time.perf_counter()
            try:
                result = dict(status="passed", **run_block(block, namespace, where))
            except BaseException as error:  # a failing block is reported; the page goes on
                if isinstance(error, KeyboardInterrupt):
                    raise
                result = dict(status="failed", error="".join(traceback.format_exception(error))[-6000:])
            results[where] = dict(result, seconds=round(time.perf_counter() - start, 2))
    finally:
        os.chdir(previous)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def _prepare_process(threads: int) -> None:
    """The substitutions of the module docstring, in this process."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shrink_the_zoo()
    quarter_the_protocols()


def _runs_something(block: dict[str, Any]) -> bool:
    """Whether ``block`` has code this runner executes (Python, or a ``setr`` line)."""
    if block["skip"]:
        return False
    return block["language"] == "python" or any(argv[0] == "setr" for argv in shell_lines(block["code"]))


def _run_page_in_worker(job: tuple[Path, Path, Path]) -> dict[str, dict[str, Any]]:
    return run_page(*job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--scratch", type=Path, required=True, help="an empty folder to work in")
    parser.add_argument("--pages", nargs="*", help="only these pages (paths relative to the repository)")
    parser.add_argument("--workers", type=int, default=2, help="pages run in this many processes at once")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_CACHE", str(args.scratch / "hf-cache"))
    if "huggingface_hub" in sys.modules or os.environ.get("HF_HUB_OFFLINE") != "1":
        raise SystemExit("run with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set before anything imports huggingface_hub")
    with socket.socket() as probe:  # one process of a torchrun job
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    _prepare_process(threads=max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    world = args.scratch / "world"
    os.chdir(args.scratch)
    build_world(world)
    results: dict[str, Any] = {"world_seconds": round(time.perf_counter() - start, 2), "blocks": {}}
    pages = [ROOT / p for p in args.pages] if args.pages else PAGES
    pages = [page for page in pages if any(_runs_something(block) for block in page_blocks(page))]
    # the pages that export ONNX first, so that the two processes finish together
    pages = sorted(pages, key=lambda page: -page.read_text().count("onnx"))
    jobs = [(page, world, args.scratch) for page in pages]
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    # a fresh process per page, as a reader runs it (what one page imports is not there for the next)
    with concurrent.futures.ProcessPoolExecutor(
        args.workers,
        multiprocessing.get_context("spawn"),
        initializer=_prepare_process,
        initargs=(threads,),
        max_tasks_per_child=1,
    ) as pool:
        for page_results in pool.map(_run_page_in_worker, jobs):
            results["blocks"].update(page_results)
    results["seconds"] = round(time.perf_counter() - start, 2)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

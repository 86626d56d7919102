"""Make the mmsegmentation SETR fixtures: tiny real mmseg models, their weights, inputs and logits.

Not run by the test suite (it needs mmsegmentation). Environment used (CPU, separate venv):

    python -m venv /work/mmseg-venv
    /work/mmseg-venv/bin/pip install torch==2.13.0 mmsegmentation==1.2.2 mmengine==0.10.7 \
        mmcv-lite==2.1.0 ftfy regex safetensors
    /work/mmseg-venv/bin/python tests/data/make_mmseg_fixtures.py

Each model is built by mmseg itself from the SETR config shipped in the mmsegmentation wheel
(``mmseg/.mim/configs/setr``), shrunk (embed 32, 4 blocks, 2 heads, 64x64 crop, narrow heads), with
the 0.x patch-embedding bias switched back on (``patch_bias=True``: every released checkpoint has
it), BN instead of SyncBN (same keys, identical in eval mode), and every parameter and buffer
(LayerNorm/BN affine and running statistics included) filled with seeded random values. Output,
per model, ``mmseg_<name>_tiny.safetensors`` with:

- ``state_dict.<key>``: the mmseg state dict, mmseg key names;
- ``input`` ``(1, 3, 64, 64)`` and ``rect.input`` ``(1, 3, 80, 96)`` (normalised images; the second
  exercises mmseg's run-time position-embedding resize);
- ``seg_logits`` / ``rect.seg_logits``: ``EncoderDecoder.encode_decode`` (decode head, resized to the input);
- ``aux_logits.<i>``: each auxiliary head's output resized to the input (as mmseg's loss does);
- ``rows`` / ``cols`` (and ``rect.``): the logits are kept only at these pixel rows/columns (every
  4th, 8th for 150 classes, plus the last) so that each file stays well under 1 MB;

and in the safetensors metadata ``tag`` (our zoo name) and ``overrides`` (JSON: the tiny sizes).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F


def _placeholder_mmcv_ops() -> None:
    # mmseg imports compiled mmcv.ops names at import time; mmcv-lite has none, and SETR uses none.
    ops = types.ModuleType("mmcv.ops")

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"mmcv.ops.{name} is a placeholder (mmcv-lite)")

        return unavailable

    ops.__getattr__ = __getattr__
    sys.modules["mmcv.ops"] = ops


_placeholder_mmcv_ops()

import mmseg  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = Path(__file__).resolve().parent
CONFIGS = Path(mmseg.__file__).parent / ".mim" / "configs" / "setr"
EMBED, DEPTH, HEADS, CROP, CHANNELS, MLA_CHANNELS, MLA_HEAD = 32, 4, 2, 64, 16, 16, 8

# name -> (mmseg config, our zoo tag)
MODELS_TO_MAKE = {
    "naive_cityscapes": ("setr_vit-l_naive_8xb1-80k_cityscapes-768x768.py", "setr_naive_vitl_cityscapes.mmseg_80k"),
    "naive_ade20k": ("setr_vit-l_naive_8xb2-160k_ade20k-512x512.py", "setr_naive_vitl_ade20k.mmseg_160k"),
    "pup_cityscapes": ("setr_vit-l_pup_8xb1-80k_cityscapes-768x768.py", "setr_pup_vitl_cityscapes.mmseg_80k"),
    "mla_cityscapes": ("setr_vit-l_mla_8xb1-80k_cityscapes-768x768.py", "setr_mla_vitl_cityscapes.mmseg_80k"),
}


def _to_bn(cfg):
    if isinstance(cfg, dict):
        return {k: ("BN" if k == "type" and v == "SyncBN" else _to_bn(v)) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return type(cfg)(_to_bn(v) for v in cfg)
    return cfg


def _shrunk(model_cfg: dict) -> tuple[dict, dict]:
    """The tiny mmseg model config, and our matching ``create_model`` overrides."""
    cfg = _to_bn(model_cfg)
    cfg.pop("data_preprocessor", None)
    cfg["pretrained"] = None
    cfg["test_cfg"] = dict(mode="whole")
    backbone = cfg["backbone"]
    # Distinct taps: mmseg's ViT returns one output per distinct out_index.
    backbone.update(
        img_size=(CROP, CROP), embed_dims=EMBED, num_layers=DEPTH, num_heads=HEADS, out_indices=(0, 1, 2, 3),
        patch_bias=True, init_cfg=None, drop_rate=0.0,
    )  # fmt: skip
    ours = dict(img_size=CROP, embed_dim=EMBED, depth=DEPTH, num_heads=HEADS)
    heads = [cfg["decode_head"], *cfg["auxiliary_head"]]
    if "neck" in cfg:  # MLA
        cfg["neck"].update(in_channels=[EMBED] * 4, out_channels=MLA_CHANNELS)
        cfg["decode_head"].update(in_channels=(MLA_CHANNELS,) * 4, channels=4 * MLA_HEAD, mla_channels=MLA_HEAD)
        for head in cfg["auxiliary_head"]:
            head.update(in_channels=MLA_CHANNELS, channels=MLA_CHANNELS)
        ours.update(mla_indices=[0, 1, 2, 3], mla_channels=MLA_CHANNELS, mla_head_channels=MLA_HEAD)
    else:
        for head in heads:
            head.update(in_channels=EMBED, channels=CHANNELS)
        ours.update(
            head_channels=CHANNELS,
            decode_index=cfg["decode_head"]["in_index"],
            aux_indices=[h["in_index"] for h in cfg["auxiliary_head"]],
        )
    return cfg, ours


def _randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                value = 0.5 + torch.rand(tensor.shape, generator=generator)
            elif tensor.ndim == 1 and (".ln" in name or "norm" in name or ".bn." in name) and name.endswith("weight"):
                value = 1.0 + 0.2 * torch.randn(tensor.shape, generator=generator)
            elif tensor.ndim >= 2 and name.endswith("weight"):
                fan_in = tensor[0].numel()
                value = torch.randn(tensor.shape, generator=generator) / fan_in**0.5
            else:
                value = 0.2 * torch.randn(tensor.shape, generator=generator)
            tensor.copy_(value)


def _sampled(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return logits.index_select(-2, rows).index_select(-1, cols).contiguous()


def make(name: str, config_file: str, tag: str, seed: int) -> Path:
    cfg, ours = _shrunk(Config.fromfile(str(CONFIGS / config_file)).to_dict()["model"])
    model = MODELS.build(cfg)
    generator = torch.Generator().manual_seed(seed)
    _randomise(model, generator)
    model.eval()
    state = {f"state_dict.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    assert "state_dict.backbone.patch_embed.projection.bias" in state
    tensors = dict(state)
    # Logits are stored on a grid of pixels (every `stride`-th row/column plus the last) to keep the
    # files small; the test samples our logits at the same pixels.
    stride = 4 if cfg["decode_head"]["num_classes"] <= 19 else 8
    for prefix, shape in (("", (1, 3, CROP, CROP)), ("rect.", (1, 3, 80, 96))):
        x = torch.randn(shape, generator=generator)
        rows, cols = (torch.tensor(sorted({*range(0, n, stride), n - 1})) for n in shape[-2:])
        metas = [dict(img_shape=shape[-2:], ori_shape=shape[-2:], pad_shape=shape[-2:])]
        with torch.no_grad():
            tensors[f"{prefix}input"] = x
            tensors[f"{prefix}rows"], tensors[f"{prefix}cols"] = rows, cols
            logits = model.encode_decode(x, metas)
            assert logits.shape[-2:] == shape[-2:]
            tensors[f"{prefix}seg_logits"] = _sampled(logits, rows, cols)
            if not prefix:
                features = model.extract_feat(x)
                for i, head in enumerate(model.auxiliary_head):
                    aux = F.interpolate(head(features), size=shape[-2:], mode="bilinear", align_corners=False)
                    tensors[f"aux_logits.{i}"] = _sampled(aux, rows, cols)
    path = OUT / f"mmseg_{name}_tiny.safetensors"
    metadata = {
        "tag": tag,
        "overrides": json.dumps(ours),
        "mmseg_config": config_file,
        "mmseg_version": mmseg.__version__,
        "torch_version": torch.__version__,
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def main() -> None:
    register_all_modules()
    for seed, (name, (config_file, tag)) in enumerate(MODELS_TO_MAKE.items()):
        path = make(name, config_file, tag, seed)
        print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()

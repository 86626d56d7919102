"""Build each SETR model by name and segment a generated image.

    python examples/demo.py [--full]

Without ``--full`` the models are shrunk (4 blocks, width 64) so this runs in seconds on a CPU; the
heads, the padding to a multiple of 16 and the run-time position embeddings are the real ones.
"""

from __future__ import annotations

import argparse
import time

import torch

import setr


def generated_image(height: int, width: int) -> torch.Tensor:
    """A (1, 3, H, W) RGB image on the 0-255 scale: gradients and a disc."""
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    disc = ((ys - 0.5) ** 2 + (xs - 0.4) ** 2 < 0.08).float()
    rgb = torch.stack([255 * ys.expand(height, width), 255 * xs.expand(height, width), 255 * disc])
    return rgb[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="build the full ViT-L models (slow on CPU)")
    args = parser.parse_args()
    small = {} if args.full else dict(embed_dim=64, depth=4, num_heads=4)
    image = generated_image(300, 410)  # deliberately not a multiple of 16 and not square
    torch.manual_seed(0)
    for name in ("setr_naive_vitl_cityscapes", "setr_pup_vitl_ade20k", "setr_mla_vitl_pcontext"):
        overrides = dict(small)
        if small:
            overrides["mla_indices" if "mla" in name else "decode_index"] = [0, 1, 2, 3] if "mla" in name else 3
        model = setr.create_model(name, **overrides).eval()
        info = model.info  # setr.ModelInfo: class names, palette, mean/std, test protocol
        mean = torch.tensor(info.mean).view(1, 3, 1, 1)
        std = torch.tensor(info.std).view(1, 3, 1, 1)
        start = time.perf_counter()
        with torch.inference_mode():
            logits = model((image - mean) / std)
        mask = logits.argmax(1)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{name:28s} params {params:7.2f}M  input {tuple(image.shape[-2:])} -> logits {tuple(logits.shape)}"
            f"  classes used {mask.unique().numel():3d}/{len(info.class_names)}"
            f"  {1000 * (time.perf_counter() - start):.0f} ms"
        )


if __name__ == "__main__":
    main()

"""High-level inference: the official test protocol (resize, sliding window, multi-scale + flip) on user images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.meta import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol
from ..devices import resolve_device
from ..export import ExportedNetwork, load_exported
from ..fast import optimize_for_inference, resolve_precision, to_precision
from ..fast.precision import floating_dtype
from ..models import ModelInfo
from ..zoo import create_model, is_model
from .preprocess import ImageInput, is_batch, normalize, to_rgb_tensors
from .resize import multi_scale_sizes, resize_image, resize_logits, resized_argmax, single_scale_size
from .sliding import slide_inference, whole_inference

__all__ = ["MODES", "Predictor", "Segmentation", "predict", "resolve_protocol"]

MODES = ("whole", "slide")
_PROTOCOL_FIELDS = tuple(f.name for f in fields(EvalProtocol))


@dataclass
class Segmentation:
    """The result for one image, at the image's own size.

    Attributes:
        mask: ``(H, W)`` int64 class indices.
        probs: ``(C, H, W)`` float32 softmax probabilities (averaged over views for ms+flip), or
            ``None`` unless requested.
    """

    mask: torch.Tensor
    probs: torch.Tensor | None = None


def _info(model: nn.Module) -> ModelInfo:
    """``model.info`` of a SETR; the defaults for any other segmentor."""
    info = getattr(model, "info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo()


def _normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` that ``model``'s inputs are normalised with: its ``info``'s, else ImageNet's."""
    info = _info(model)
    return (tuple(info.mean) if info.mean else IMAGENET_MEAN, tuple(info.std) if info.std else IMAGENET_STD)


def _as_protocol(value: EvalProtocol | dict[str, Any]) -> EvalProtocol:
    if isinstance(value, EvalProtocol):
        return value
    unknown = set(value) - set(_PROTOCOL_FIELDS)
    if unknown:
        raise TypeError(f"unknown protocol fields {sorted(unknown)}; known: {', '.join(_PROTOCOL_FIELDS)}")
    return EvalProtocol(**value)


def resolve_protocol(
    model: nn.Module, protocol: EvalProtocol | dict[str, Any] | None = None, **overrides: Any
) -> EvalProtocol:
    """The test protocol to use: ``protocol``, else the model's zoo entry, else a default; then ``overrides``.

    The default for a model without a dataset (built by architecture name or by hand) is a sliding
    window of the model's training crop ``img_size`` with stride ``2/3`` of it (the official
    ratio) and no test resize.

    Args:
        model: the segmentor; its ``info.protocol`` (:class:`setr.ModelInfo`) is used when set.
        protocol: an :class:`setr.EvalProtocol` or a dict of its fields.
        **overrides: :class:`setr.EvalProtocol` fields (``mode``, ``crop``, ``stride``,
            ``test_scale``, ``short_side``, ``ms_ratios``); ``None`` is a value (e.g.
            ``test_scale=None`` turns the test resize off).

    Raises:
        TypeError: an unknown field.
        ValueError: an invalid value.
    """
    if protocol is None:
        protocol = _info(model).protocol
    if protocol is None:
        crop = int(getattr(getattr(model, "config", None), "img_size", 512))  # any segmentor may come here
        protocol = EvalProtocol(mode="slide", crop=crop, stride=crop * 2 // 3, test_scale=None)
    protocol = _as_protocol(protocol)
    unknown = set(overrides) - set(_PROTOCOL_FIELDS)
    if unknown:
        raise TypeError(f"unknown protocol fields {sorted(unknown)}; known: {', '.join(_PROTOCOL_FIELDS)}")
    protocol = replace(protocol, **overrides)
    if protocol.test_scale is not None:
        protocol = replace(protocol, test_scale=tuple(protocol.test_scale))
    protocol = replace(protocol, ms_ratios=tuple(float(r) for r in protocol.ms_ratios))
    if protocol.mode not in MODES:
        raise ValueError(f"unknown mode {protocol.mode!r}; choose one of {', '.join(MODES)}")
    if protocol.crop <= 0 or not 0 < protocol.stride <= protocol.crop:
        raise ValueError(f"need 0 < stride <= crop, got crop {protocol.crop} and stride {protocol.stride}")
    if not protocol.ms_ratios or min(protocol.ms_ratios) <= 0:
        raise ValueError(f"ms_ratios must be positive numbers, got {protocol.ms_ratios}")
    if protocol.test_scale is not None and (len(protocol.test_scale) != 2 or min(protocol.test_scale) <= 0):
        raise ValueError(f"test_scale must be (long, short) positive sizes or None, got {protocol.test_scale}")
    return protocol


_AUTO_BATCH = 4
AUTO_BATCH_LOGIT_BYTES = 256 * 2**20
"""On the CPU, the default ``batch_size`` keeps one forward's float32 logits within this many bytes."""


class Predictor:
    """Segment images the way the official code evaluates: test resize, slide/whole, optional ms+flip.

    Example:
        >>> model = setr.create_model("setr_pup_vitl_ade20k", pretrained=True)
        >>> predictor = Predictor(model, batch_size=8, device="cuda")
        >>> seg = predictor("room.jpg")                     # Segmentation(mask (H, W), probs None)
        >>> segs = predictor([img1, img2], ms_flip=True, return_probs=True)

    Single-scale: the image is resized by the protocol's ``short_side``/``test_scale`` (if any), the
    network runs on it (whole or sliding window), and the logits are resized back to the image size.
    Multi-scale + flip: for every ratio (and its horizontal flip) the same is done at the
    ``setr_multi_scale`` size and the softmax probabilities are averaged.
    """

    def __init__(
        self,
        model: nn.Module,
        protocol: EvalProtocol | dict[str, Any] | None = None,
        *,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        flip: bool = True,
        optimize: bool | None = None,
        precision: str | None = None,
        mask_dtype: torch.dtype = torch.int64,
        **overrides: Any,
    ) -> None:
        """
        Args:
            model: a SETR (or any ``(B, 3, H, W) -> (B, C, H, W)`` segmentor); put in eval mode. Or a
                model folder (``save_pretrained``) or a release's name (its released weights), as
                :func:`setr.create_model` takes them.
                Or an exported model: a file written by :func:`setr.export.export_model` (ONNX,
                ``torch.export`` program, AOTInductor package, OpenVINO IR) or its
                :class:`~setr.export.ExportedNetwork`, run with the same preprocessing and protocol.
            protocol: the test protocol; default: the model's zoo entry (see :func:`resolve_protocol`).
            batch_size: windows (slide) or images (whole) per forward pass. Default: 4 on an
                accelerator; on the CPU as many (up to 4) as keep one forward's logits within
                ``AUTO_BATCH_LOGIT_BYTES`` (256 MiB): 150 classes at 512x512 run one window at a
                time, which throughput hardly notices there and which bounds the peak memory.
            device: move the model there; default: where the model already is.
            flip: include horizontal flips in multi-scale testing.
            optimize: run the network through :func:`setr.optimize_for_inference` (same function,
                same weights, shared with ``model``). Default: on the CPU only, where it was
                measured to help; the plain model elsewhere.
            precision: ``"fp32"``, ``"bf16"``, ``"int8"`` (CPU) or ``"auto"`` (bf16 where the device
                computes it natively, else fp32): the network runs in it (weights converted in a
                twin, ``model`` itself unchanged; :func:`setr.optimize_for_inference`). Default: the
                model's own dtype. An exported file runs in the precision it was exported in (only
                fp32 is taken), except an OpenVINO IR: ``fp32``, ``bf16`` or ``auto``, chosen when it
                is compiled (bf16 on a CPU without it runs fp32, with a warning). Whatever the
                precision, inputs are normalised in fp32, window logits are merged in fp32 and
                ``probs`` are float32.
            mask_dtype: the integer dtype of ``Segmentation.mask``. ``torch.uint8`` holds up to 256
                classes in an eighth of int64's memory (``setr predict`` uses it: the full-size int64
                mask of a 48 MP photo alone is 384 MB).
            **overrides: protocol fields, e.g. ``mode="whole"``, ``crop=512, stride=341``.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, str | os.PathLike):
            folder = Path(model).is_dir()
            if folder or is_model(str(model)):  # a model folder, or a release's name (its released weights)
                model = create_model(str(model), pretrained=not folder)
            else:
                model = load_exported(model, precision=precision)  # an OpenVINO IR is compiled in it
        elif isinstance(model, ExportedNetwork):
            model = model.with_precision(precision)  # refused but for an OpenVINO IR (a twin in it)
        _check_mask_dtype(mask_dtype, getattr(model, "num_classes", None))
        self.mask_dtype = mask_dtype
        exported = isinstance(model, ExportedNetwork)
        if exported and optimize:
            raise ValueError("an exported model is run as exported: optimize=True applies to a SETR module")
        if exported:
            precision = None  # chosen above, where the file takes one
        self.model = model.eval()
        if device is not None:
            self.device = resolve_device(device)
            self.model.to(self.device)
        else:
            parameter = next(model.parameters(), None)
            self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.protocol = resolve_protocol(model, protocol, **overrides)
        self.mean, self.std = _normalisation(model)
        self.channels = int(getattr(getattr(model, "config", None), "in_chans", 3))
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"the model takes {self.channels} channels but model.info has {len(self.mean)} means and "
                f"{len(self.std)} stds; set model.info = model.info.replace(mean=..., std=...) with one per channel"
            )
        if optimize is None:
            optimize = self.device.type == "cpu" and not exported
        self.precision = resolve_precision(precision, self.device) if precision is not None else None
        if optimize:
            self.network_model = optimize_for_inference(self.model, precision=self.precision)
        elif self.precision is not None:
            self.network_model = to_precision(self.model, self.precision).eval()
        else:
            self.network_model = self.model
        """The module the windows run through: ``model`` itself, or its optimised / converted twin."""
        self.input_dtype = torch.float32 if exported else floating_dtype(self.network_model)
        self.batch_size = batch_size
        self.flip = flip

    def __repr__(self) -> str:
        batch = "auto" if self.batch_size is None else self.batch_size
        return f"{type(self).__name__}(protocol={self.protocol}, batch_size={batch}, device={self.device})"

    def per_forward(self, height: int, width: int) -> int:
        """Windows or images per forward pass for network inputs of ``height x width`` (see
        ``batch_size``)."""
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type != "cpu":
            return _AUTO_BATCH
        classes = int(getattr(self.model, "num_classes", 1) or 1)
        return max(1, min(_AUTO_BATCH, AUTO_BATCH_LOGIT_BYTES // (classes * height * width * 4)))

    def network(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits of normalised ``(B, 3, H, W)`` images at their size, by the protocol's mode:
        ``(B, C, H, W)``. The images are cast to the network's dtype; window logits merge in fp32.

        Raises:
            ValueError: a logit is NaN or infinite (a mask from them would be meaningless).
        """
        images = images.to(self.input_dtype)
        if self.protocol.mode == "whole":
            per_forward = self.per_forward(*images.shape[-2:])
            logits = whole_inference(self.network_model, images, per_forward).float()
        else:
            crop, stride = self.protocol.crop, self.protocol.stride
            per_forward = self.per_forward(min(crop, images.shape[-2]), min(crop, images.shape[-1]))
            logits = slide_inference(self.network_model, images, crop, stride, per_forward).float()
        # a few classes at a time: a boolean map of every class would cost a quarter of the logits
        if not all(bool(torch.isfinite(part).all()) for part in logits.split(16, dim=1)):
            bad = sum(int((~torch.isfinite(part)).sum()) for part in logits.split(16, dim=1))
            raise ValueError(
                f"the network gave {bad} NaN or infinite logits of {logits.numel()} on a {images.shape[-2]}x"
                f"{images.shape[-1]} input: its weights hold NaN/Inf, or the precision overflowed (try fp32)"
            )
        return logits

    def _view_logits(self, views: torch.Tensor) -> torch.Tensor:
        """Float32 logits of 0-255 ``views`` at their own size (the network's input size)."""
        return self.network(normalize(views.to(self.device, torch.float32), self.mean, self.std))

    def _single_scale_view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of same-size 0-255 ``(B, 3, H, W)`` images seen at the protocol's single test size,
        not yet resized back: ``(B, C, h, w)``."""
        return self._view_logits(resize_image(images, single_scale_size(*images.shape[-2:], self.protocol)))

    def single_scale_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Single-scale logits of same-size 0-255 RGB ``(B, 3, H, W)`` images (uint8 or float, resized
        where they are, then moved to the device): ``(B, C, H, W)``."""
        return resize_logits(self._single_scale_view_logits(images), tuple(images.shape[-2:]))

    def ms_flip_probs(self, image: torch.Tensor) -> torch.Tensor:
        """Multi-scale (+ flip) softmax probabilities of one 0-255 RGB ``(3, H, W)`` image: ``(C, H, W)``."""
        image = image[None]
        total: torch.Tensor | None = None
        views = 0
        for size in multi_scale_sizes(*image.shape[-2:], self.protocol):
            view = resize_image(image, size)  # resized, then flipped: the official pipeline's order
            batch = torch.cat([view, view.flip(-1)]) if self.flip else view
            probs = resize_logits(self._view_logits(batch), tuple(image.shape[-2:])).softmax(1)
            if self.flip:
                probs[1] = probs[1].flip(-1)
            summed = probs.sum(0)
            total = summed if total is None else total + summed
            views += probs.shape[0]
        assert total is not None
        return total / views

    @torch.inference_mode()
    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        ms_flip: bool = False,
        return_probs: bool = False,
    ) -> Segmentation | list[Segmentation]:
        """Segment one image or a batch.

        Args:
            images: one image (path, PIL image, ``(H, W, 3)`` array, ``(3, H, W)`` tensor) or a
                batch (list/tuple of those, ``(B, H, W, 3)`` array, ``(B, 3, H, W)`` tensor);
                RGB on the 0-255 scale; sizes may differ.
            ms_flip: multi-scale + flip testing with the protocol's ratios.
            return_probs: also return the softmax probabilities.

        Returns:
            A :class:`Segmentation` for one image, a list of them for a batch; tensors on the CPU.
        """
        single = not is_batch(images)
        rgb = to_rgb_tensors(images, self.channels, keep_uint8=True)  # 8-bit images resize as the official code
        if len({t.dtype for t in rgb}) > 1:
            rgb = [t.float() for t in rgb]
        results: list[Segmentation] = []
        if ms_flip:
            for image in rgb:
                probs = self.ms_flip_probs(image)
                mask = probs.argmax(0).to(self.mask_dtype).cpu()
                results.append(Segmentation(mask, probs.cpu() if return_probs else None))
        else:
            for group in _same_size_groups(rgb, self.batch_size or _AUTO_BATCH):
                batch = torch.stack(group) if len(group) > 1 else group[0][None]  # no copy of a lone image
                size = tuple(batch.shape[-2:])
                for one in self._single_scale_view_logits(batch):  # single_scale_logits, resized per image
                    if return_probs:
                        one = resize_logits(one[None], size)[0]
                        results.append(Segmentation(one.argmax(0).to(self.mask_dtype).cpu(), one.softmax(0).cpu()))
                    else:  # the mask alone never needs the full-size logits of every class at once
                        results.append(Segmentation(resized_argmax(one, size, dtype=self.mask_dtype).cpu(), None))
        return results[0] if single else results


def _check_mask_dtype(dtype: torch.dtype, num_classes: int | None) -> None:
    """Refuse a mask dtype that is not an integer type or cannot hold every class index."""
    if not isinstance(dtype, torch.dtype) or dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"mask_dtype={dtype!r}: expected an integer torch dtype, e.g. torch.uint8 or torch.int64")
    if num_classes is not None and num_classes - 1 > torch.iinfo(dtype).max:
        raise ValueError(f"mask_dtype={dtype}: {num_classes} classes do not fit; use torch.int16 or torch.int64")


def _same_size_groups(images: list[torch.Tensor], batch_size: int) -> list[list[torch.Tensor]]:
    """Consecutive images of one size, at most ``batch_size`` per group, in input order."""
    groups: list[list[torch.Tensor]] = []
    for image in images:
        if groups and len(groups[-1]) < batch_size and groups[-1][0].shape == image.shape:
            groups[-1].append(image)
        else:
            groups.append([image])
    return groups


def predict(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    *,
    ms_flip: bool = False,
    return_probs: bool = False,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    protocol: EvalProtocol | dict[str, Any] | None = None,
    optimize: bool | None = None,
    precision: str | None = None,
    **overrides: Any,
) -> Segmentation | list[Segmentation]:
    """One-call inference: ``Predictor(model, protocol, batch_size=..., device=..., **overrides)(images, ...)``.

    Example:
        >>> seg = setr.inference.predict(model, "street.png", mode="slide", ms_flip=True)
        >>> seg.mask.shape                                   # (H, W), class indices
    """
    predictor = Predictor(
        model, protocol, batch_size=batch_size, device=device, optimize=optimize, precision=precision, **overrides
    )
    return predictor(images, ms_flip=ms_flip, return_probs=return_probs)

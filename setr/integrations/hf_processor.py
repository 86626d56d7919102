"""``SetrImageProcessor``: setr's single-scale test protocol as a transformers image processor.

It runs setr's own steps, so a transformers pipeline sees what :class:`setr.Predictor` in whole mode
sees: the protocol's keep-ratio test resize (OpenCV bilinear on uint8,
:func:`setr.inference.resize.resize_image`), normalisation on the 0-255 scale, and, after the
network, the logits resized back to the image bilinearly and argmaxed
(:func:`setr.inference.resize.resized_argmax`, bit for bit the Predictor's mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ..data.meta import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol
from ..data.resize import resize_nearest
from ..inference.preprocess import ImageInput, normalize, to_rgb_tensors
from ..inference.resize import resize_image, resized_argmax, single_scale_size
from ..models import ModelInfo
from ..models.hub_mixin import preprocessor_config
from .hf_config import write_remote_code

__all__ = ["SetrImageProcessor"]


class SetrImageProcessor(BaseImageProcessor):
    """Images -> ``pixel_values`` by the model's single-scale test protocol; logits -> masks.

    The pipeline runs the network once on the whole (resized) image: the protocol's ``mode``
    (sliding window) and multi-scale testing are :class:`setr.Predictor`'s.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        test_scale: Sequence[int] | None = None,
        short_side: int | None = None,
        num_channels: int = 3,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            image_mean: per-channel mean, on the 0-255 scale of the pixels (no rescaling to 0-1).
            image_std: per-channel std, same scale.
            test_scale: ``(long, short)`` of the keep-ratio test resize (``None``: none).
            short_side: resize so that the short side is this instead (Pascal Context).
            num_channels: the model's input channels.
        """
        kwargs.pop("auto_map", None)  # the model's config.json names this class (see to_dict)
        super().__init__(**kwargs)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.test_scale = [int(v) for v in test_scale] if test_scale else None
        self.short_side = int(short_side) if short_side else None
        self.num_channels = int(num_channels)

    @classmethod
    def from_model_info(cls, info: ModelInfo, num_channels: int = 3) -> SetrImageProcessor:
        """The processor of a model with ``info`` (its normalisation and test resize): the settings
        :meth:`setr.SETR.save_pretrained` writes to ``preprocessor_config.json``."""
        return cls(**preprocessor_config(info, num_channels))

    @property
    def protocol(self) -> EvalProtocol:
        """The single-scale resize rule as an :class:`setr.EvalProtocol` (whole mode)."""
        test_scale = tuple(self.test_scale) if self.test_scale else None
        return EvalProtocol(mode="whole", test_scale=test_scale, short_side=self.short_side)

    def preprocess(
        self,
        images: ImageInput | Sequence[ImageInput],
        segmentation_maps: Any = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """``pixel_values`` ``(B, C, h, w)`` float32 of one image or a batch of one size after the
        test resize, and ``labels`` ``(B, h, w)`` int64 when ``segmentation_maps`` are given
        (resized with OpenCV's nearest neighbour).

        Args:
            images: paths, PIL images, ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors, RGB 0-255.
            segmentation_maps: one class-index map ``(H, W)`` per image (PIL, array or tensor).
            return_tensors: ``"pt"`` (the default) or ``"np"``.

        Raises:
            ValueError: images whose resized sizes differ (send them one at a time).
        """
        if kwargs:
            raise TypeError(f"SetrImageProcessor got unknown option(s) {', '.join(map(repr, sorted(kwargs)))}")
        rgb = to_rgb_tensors(images, self.num_channels, keep_uint8=True)
        sizes = [single_scale_size(*image.shape[-2:], self.protocol) for image in rgb]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"images of {len(set(sizes))} sizes after the test resize ({sorted(set(sizes))}) cannot share a "
                "batch: pass them one at a time (pipeline batch_size=1)"
            )
        views = [resize_image(image[None], size) for image, size in zip(rgb, sizes)]
        data = {"pixel_values": normalize(torch.cat(views), self.image_mean, self.image_std)}
        if segmentation_maps is not None:
            maps = segmentation_maps if isinstance(segmentation_maps, list | tuple) else [segmentation_maps]
            if len(maps) != len(rgb):
                raise ValueError(f"{len(maps)} segmentation maps for {len(rgb)} images")
            labels = [torch.as_tensor(np.asarray(m)).long() for m in maps]
            data["labels"] = torch.stack([resize_nearest(m, size) for m, size in zip(labels, sizes)])
        return BatchFeature(data=data, tensor_type=return_tensors)

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """One ``(H, W)`` int64 class-index mask per image: the logits resized bilinearly to
        ``target_sizes`` (each ``(height, width)``, the images' own sizes) and argmaxed, as
        :class:`setr.Predictor` does; at the logits' size without ``target_sizes``."""
        logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(f"{len(target_sizes)} target sizes for {len(logits)} images")
        masks = []
        for i, one in enumerate(logits.detach().float().cpu()):
            size = tuple(int(v) for v in target_sizes[i]) if target_sizes is not None else tuple(one.shape[-2:])
            masks.append(resized_argmax(one, size))
        return masks

    def to_dict(self) -> dict[str, Any]:
        """The settings, without ``image_processor_type`` or ``auto_map``: ``AutoImageProcessor`` finds
        this class through the model's ``config.json`` (its ``model_type`` once setr registered it,
        else its ``auto_map`` with ``trust_remote_code=True``). Named by type alone it is not found
        in a process that has not imported setr yet; an ``auto_map`` here makes transformers look
        for a remote ``AutoVideoProcessor`` beside it and ask whether to trust that code."""
        output = super().to_dict()
        output.pop("image_processor_type", None)
        return output

    def save_pretrained(self, save_directory: Any, push_to_hub: bool = False, **kwargs: Any) -> list[str]:
        """``preprocessor_config.json`` and the module its ``auto_map`` names."""
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        write_remote_code(save_directory)
        return files

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoImageProcessor") -> None:
        """Nothing to do: ``auto_map`` is always written (see :class:`SetrConfig`)."""

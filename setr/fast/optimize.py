"""``optimize_for_inference``: the one explicit step that swaps the fast inference modules into a model."""

from __future__ import annotations

import itertools

from timm.models.vision_transformer import Block
from torch import nn

from ..models.heads import ConvBNReLU, MLAAuxHead, MLAHead, UpHead
from ..models.segmentor import SETR
from ._hooks import has_hooks
from ._twin import shared_twin
from .blocks import FusedBlock, can_fuse_block
from .convs import ClassifierConv2d, FoldedConvBNReLU, can_fold
from .heads import FastUpHead, runs_last_stage_in_strips
from .precision import resolve_precision, to_precision
from .segmentor import FastSETR

__all__ = ["optimize_for_inference"]

_CLASSIFIER_OWNERS = (UpHead, MLAHead, MLAAuxHead)


def optimize_for_inference(model: nn.Module, *, precision: str | None = None, inplace: bool = False) -> nn.Module:
    """The same network, with the fast inference modules swapped in; returned in eval mode.

    Each swap keeps the module's parameters, buffers and ``state_dict`` keys and only changes how
    its inference forward is computed (tests hold every swap equal to the plain module):

    - timm encoder blocks -> :class:`~setr.fast.blocks.FusedBlock` (residual adds folded into the
      projection GEMMs, the MLP in cache-sized chunks of tokens);
    - ``conv -> BN -> ReLU`` units -> :class:`~setr.fast.convs.FoldedConvBNReLU` (BatchNorm folded
      into a channels-last convolution);
    - classifiers -> :class:`~setr.fast.convs.ClassifierConv2d` (channels-last);
    - Naive/PUP heads -> :class:`~setr.fast.heads.FastUpHead` (PUP's last stage in row strips, so
      its two largest maps never exist whole);
    - the segmentor -> :class:`~setr.fast.segmentor.FastSETR` (the padding cut from the logits as a
      view, not a copy).

    Modules with hooks, or of types other than the plain ones, are left as they are. In training
    mode, or with autograd on, the swapped modules compute the plain forward, so an optimised model
    still trains correctly (only more slowly than it infers).

    These paths were measured on CPU (``docs/benchmarks.md``); :class:`setr.Predictor` and the CLI
    apply them there only. The plain model stays the reference, and the one to export.

    Args:
        model: a :class:`setr.SETR` (or any module containing its parts).
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"`` (bf16 where the device computes it
            natively, else fp32; :func:`setr.fast.precision.resolve_precision`). The weights are
            converted (:func:`setr.fast.precision.to_precision`; new tensors, ``model``'s own are
            never changed); feed a bf16 model bf16 inputs (:class:`setr.Predictor` does). Default:
            keep the model's own dtype. int8 quantizes the encoder's Linear layers (CPU only).
        inplace: change ``model`` itself. By default a new module tree is returned that shares
            every parameter and buffer with ``model`` (no weights are copied; loading weights into
            one changes both), and ``model`` is left as it was. Tensors converted to another
            precision are new ones either way.

    Returns:
        The optimised model, in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference takes a torch.nn.Module, got {type(model).__name__}")
    if precision is not None:
        parameter = next(itertools.chain(model.parameters(), model.buffers()), None)
        precision = resolve_precision(precision, parameter.device if parameter is not None else "cpu")
    if not inplace:
        model = shared_twin(model)
    if precision is not None:
        to_precision(model, precision, inplace=True)  # before the swaps: int8 layers keep their blocks plain
    for module in model.modules():
        if type(module) is Block and can_fuse_block(module):
            module.__class__ = FusedBlock
        elif type(module) is ConvBNReLU and can_fold(module):
            module.__class__ = FoldedConvBNReLU
    for module in model.modules():
        if isinstance(module, _CLASSIFIER_OWNERS):
            classifier = module.classifier
            if type(classifier) is nn.Conv2d and classifier.padding_mode == "zeros" and not has_hooks(classifier):
                classifier.__class__ = ClassifierConv2d
        if isinstance(module, UpHead) and type(module).forward is UpHead.forward and not has_hooks(module):
            module.__class__ = FastUpHead
            module.strips = runs_last_stage_in_strips(module)
    if type(model) is SETR:
        model.__class__ = FastSETR
    return model.eval()

"""The SETR segmentor: a ViT encoder and a Naive, PUP or MLA decoder, with auxiliary heads."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import ViTEncoder
from .heads import MLAAuxHead, MLAHead, MLANeck, UpHead
from .hub_mixin import SETRHubMixin
from .info import ModelInfo

__all__ = ["HEAD_TYPES", "SETR", "default_taps", "official_aux_indices"]

HEAD_TYPES = ("naive", "pup", "mla")

# The encoder taps of the official configs: ViT-L (24 blocks) and ViT-B/DeiT-B (12 blocks).
# "aux" are the Naive/PUP auxiliary heads' blocks, "mla" the four blocks the MLA neck reads.
_OFFICIAL_TAPS: dict[int, dict[str, tuple[int, ...]]] = {
    24: {"naive": (9, 14, 19), "pup": (9, 14, 19, 23), "mla": (5, 11, 17, 23)},
    12: {"naive": (2, 5, 8), "pup": (4, 7, 9, 11), "mla": (2, 5, 8, 11)},
}
# Official head topology: (kernel, up_scales) of the decode head and of the auxiliary heads.
_OFFICIAL_DECODE = {"naive": (1, (1,)), "pup": (3, (2, 2, 2, 1))}
_OFFICIAL_AUX = {"naive": (1, (1,)), "pup": (3, (4,))}


def default_taps(head: str, depth: int) -> list[int]:
    """The official encoder taps of ``head`` for an encoder of ``depth`` blocks.

    Naive/PUP: the auxiliary heads' blocks; MLA: the neck's four blocks. Depths 24 (ViT-L) and 12
    (ViT-B, DeiT-B) have official configs; other depths scale ViT-L's as ``floor(i * depth / 24)``.
    """
    if depth in _OFFICIAL_TAPS:
        return list(_OFFICIAL_TAPS[depth][head])
    return [i * depth // 24 for i in _OFFICIAL_TAPS[24][head]]


def official_aux_indices(head: str, depth: int) -> list[int]:
    """What the official config's auxiliary heads read: encoder blocks for Naive/PUP
    (:func:`default_taps`), all four neck levels for MLA."""
    return [0, 1, 2, 3] if head == "mla" else default_taps(head, depth)


_POSITIVE_INTS = ("num_classes", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                  "head_channels", "mla_channels", "mla_head_channels", "mla_classifier_kernel",
                  "decode_kernel_size", "aux_kernel_size")  # fmt: skip
_BOOLS = ("qkv_bias", "class_token", "patch_bias", "head_conv_bias", "mla_align_corners", "mla_aux_bias",
          "grad_checkpointing")  # fmt: skip
_INT_LISTS = ("aux_indices", "mla_indices", "decode_up_scales", "aux_up_scales")
_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(args: dict[str, Any]) -> None:
    """Refuse constructor arguments of the wrong type or range, naming the argument and value
    (``None`` means "the default" wherever the signature allows it)."""
    for name in _POSITIVE_INTS:
        value = args[name]
        if value is not None and not _is_int(value):
            raise TypeError(f"SETR({name}={value!r}): expected a positive integer")
        if value is not None and value < 1:
            raise ValueError(f"SETR({name}={value!r}): {name} must be at least 1")
    for name in _BOOLS:
        value = args[name]
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"SETR({name}={value!r}): expected True or False")
    for name in _INT_LISTS:
        value = args[name]
        if value is not None and (not isinstance(value, list | tuple) or not all(_is_int(v) and v >= 0 for v in value)):
            raise TypeError(f"SETR({name}={value!r}): expected a list of non-negative integers")
    if args["decode_index"] is not None and (not _is_int(args["decode_index"]) or args["decode_index"] < 0):
        raise TypeError(f"SETR(decode_index={args['decode_index']!r}): expected a non-negative integer")
    if not isinstance(args["mlp_ratio"], int | float) or isinstance(args["mlp_ratio"], bool) or args["mlp_ratio"] <= 0:
        raise TypeError(f"SETR(mlp_ratio={args['mlp_ratio']!r}): expected a positive number")
    for name in _RATES:
        value = args[name]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
            raise TypeError(f"SETR({name}={value!r}): expected a number in [0, 1)")
    if not isinstance(args["head"], str):
        raise TypeError(f"SETR(head={args['head']!r}): expected 'naive', 'pup' or 'mla'")


def _check_num_classes(num_classes: int) -> None:
    if num_classes == 1:
        raise ValueError(
            "num_classes=1: SETR segments with a softmax over classes, so binary segmentation is "
            "num_classes=2 (background, foreground); the foreground probability is probs[:, 1]"
        )


def _crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left ``(height, width)`` of ``(B, C, H', W')`` maps (the padding cut off), as a new
    tensor: a padding by minus the excess. A view (slicing) would make ``torch.export`` decide
    whether the crop is the whole map, i.e. specialise the input size to (not) a multiple of 16."""
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


def _take_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """Block indices in timm's meaning: ``n`` the last ``n``, a sequence those (negative from the
    end), ``None`` all; checked against ``depth``."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 1 <= indices <= depth:
            raise ValueError(f"indices={indices}: take between 1 and {depth} last blocks")
        return list(range(depth - indices, depth))
    taken = []
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool) or not -depth <= i < depth:
            raise ValueError(f"block index {i!r} is out of range for an encoder of depth {depth}")
        taken.append(i % depth)
    return sorted(set(taken))


class SETR(nn.Module, SETRHubMixin):
    """SEgmentation TRansformer (Zheng et al., CVPR 2021).

    The constructor arguments are the whole configuration: flat, JSON-able, and stored resolved
    (no ``None``) in ``model.config``, so ``SETR(**model.config)`` rebuilds the same network.

    ``model.info`` (:class:`setr.ModelInfo`) holds what is not architecture: class names, palette,
    normalisation, test protocol, the release and where the weights came from.

    Hub methods: ``save_pretrained(dir)``, ``SETR.from_pretrained(repo_id_or_dir)``,
    ``push_to_hub(repo_id)`` (``config.json`` + ``model.safetensors`` + model card).

    ``forward``: ``(B, in_chans, H, W)`` normalised images of any size ->
    ``(B, num_classes, H, W)`` logits; with ``return_aux=True`` also the list of auxiliary logits,
    each ``(B, num_classes, H, W)``.
    """

    def __init__(
        self,
        head: str = "pup",
        num_classes: int = 19,
        img_size: int = 768,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool | None = None,
        patch_bias: bool = True,
        decode_index: int | None = None,
        aux_indices: list[int] | tuple[int, ...] | None = None,
        mla_indices: list[int] | tuple[int, ...] | None = None,
        head_channels: int = 256,
        head_conv_bias: bool = True,
        decode_kernel_size: int | None = None,
        decode_up_scales: list[int] | tuple[int, ...] | None = None,
        aux_kernel_size: int | None = None,
        aux_up_scales: list[int] | tuple[int, ...] | None = None,
        mla_channels: int = 256,
        mla_head_channels: int = 128,
        mla_classifier_kernel: int = 3,
        mla_align_corners: bool = True,
        mla_aux_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
    ) -> None:
        """
        Args:
            head: decoder type, ``"naive"``, ``"pup"`` or ``"mla"``.
            num_classes: output classes.
            img_size: training crop side (sets the stored position-embedding grid); inputs of any
                size are accepted.
            patch_size: ViT patch side.
            in_chans: image channels.
            embed_dim: token width D.
            depth: transformer blocks.
            num_heads: attention heads.
            mlp_ratio: MLP hidden width / D.
            qkv_bias: bias in the qkv projection.
            patch_bias: bias in the patch embedding (every released SETR checkpoint has one;
                mmsegmentation >= 1.2 trains without it).
            class_token: run a cls token through the blocks. Default: True for Naive/PUP,
                False for MLA (the official code drops it before the first block).
            decode_index: encoder block (0-based) read by the Naive/PUP decode head.
                Default ``depth - 1``.
            aux_indices: what each auxiliary head reads: encoder blocks for Naive/PUP, neck levels
                for MLA; one training-only auxiliary head per entry. Default: none, so that a plain
                ``model(x)`` uses every parameter (DDP without ``find_unused_parameters``). The
                official recipe's heads are :func:`official_aux_indices` (ViT-L ``(9, 14, 19)``
                Naive, ``(9, 14, 19, 23)`` PUP; ViT-B ``(2, 5, 8)`` and ``(4, 7, 9, 11)``;
                ``(0, 1, 2, 3)`` MLA), which ``create_model(..., aux_heads=True)`` builds.
            mla_indices: the 4 encoder blocks the MLA neck reads. Default: ViT-L
                ``(5, 11, 17, 23)``, ViT-B ``(2, 5, 8, 11)`` (:func:`default_taps`).
            head_channels: width of the Naive/PUP conv stages.
            head_conv_bias: bias in the Naive/PUP stage convolutions (official: yes; mmseg: no).
            decode_kernel_size: conv kernel of the decode head (official: Naive 1, PUP 3).
            decode_up_scales: upsampling after each decode conv stage (official: Naive ``(1,)``,
                PUP ``(2, 2, 2, 1)``).
            aux_kernel_size: conv kernel of the Naive/PUP auxiliary heads (official: Naive 1, PUP 3).
            aux_up_scales: upsampling after each auxiliary conv stage (official: Naive ``(1,)``,
                PUP ``(4,)``).
            mla_channels: width of the MLA neck.
            mla_head_channels: width of each MLA head branch.
            mla_classifier_kernel: MLA classifier kernel (official 3).
            mla_align_corners: ``align_corners`` of the MLA x4 upsampling (official True).
            mla_aux_bias: bias in the MLA auxiliary classifiers (official False).
            drop_rate: dropout in the encoder.
            attn_drop_rate: attention dropout.
            drop_path_rate: stochastic depth of the last block (linear from 0).
            grad_checkpointing: recompute encoder blocks in the backward pass to save memory.
        """
        super().__init__()
        _check_types(locals())
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown head {head!r}: choose one of {', '.join(HEAD_TYPES)}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        _check_num_classes(num_classes)
        is_mla = head == "mla"
        ignored = (
            {"decode_index": decode_index, "decode_kernel_size": decode_kernel_size,
             "decode_up_scales": decode_up_scales, "aux_kernel_size": aux_kernel_size, "aux_up_scales": aux_up_scales}
            if is_mla
            else {"mla_indices": mla_indices}
        )  # fmt: skip
        given = sorted(name for name, value in ignored.items() if value is not None)
        if given:
            raise ValueError(f"{', '.join(given)} do(es) not apply to a {head} head; remove it or change head")
        if class_token is None:
            class_token = not is_mla
        if is_mla:
            mla_indices = list(mla_indices) if mla_indices is not None else default_taps(head, depth)
            if len(mla_indices) != 4:
                raise ValueError(f"mla_indices needs 4 encoder blocks, got {mla_indices}")
            aux_indices = list(aux_indices) if aux_indices is not None else []
            decode_index = decode_kernel_size = aux_kernel_size = None
            decode_up_scales = aux_up_scales = None
            encoder_taps = mla_indices
        else:
            decode_index = depth - 1 if decode_index is None else int(decode_index)
            aux_indices = [int(i) for i in aux_indices] if aux_indices is not None else []
            official_kernel, official_scales = _OFFICIAL_DECODE[head]
            decode_kernel_size = official_kernel if decode_kernel_size is None else decode_kernel_size
            decode_up_scales = list(official_scales if decode_up_scales is None else decode_up_scales)
            aux_kernel, aux_scales = _OFFICIAL_AUX[head]
            aux_kernel_size = aux_kernel if aux_kernel_size is None else aux_kernel_size
            aux_up_scales = list(aux_scales if aux_up_scales is None else aux_up_scales)
            mla_indices = None
            encoder_taps = [decode_index, *aux_indices]
        for i in encoder_taps:
            if not 0 <= i < depth:
                raise ValueError(f"encoder block index {i} is out of range for depth {depth}")
        if is_mla:
            for i in aux_indices:
                if not 0 <= i < 4:
                    raise ValueError(f"MLA aux_indices name neck levels 0..3, got {i}")

        self.config: dict[str, Any] = dict(
            head=head, num_classes=num_classes, img_size=img_size, patch_size=patch_size,
            in_chans=in_chans, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, class_token=class_token, patch_bias=patch_bias,
            decode_index=decode_index, aux_indices=aux_indices, mla_indices=mla_indices,
            head_channels=head_channels, head_conv_bias=head_conv_bias,
            decode_kernel_size=decode_kernel_size, decode_up_scales=decode_up_scales,
            aux_kernel_size=aux_kernel_size, aux_up_scales=aux_up_scales,
            mla_channels=mla_channels, mla_head_channels=mla_head_channels,
            mla_classifier_kernel=mla_classifier_kernel, mla_align_corners=mla_align_corners,
            mla_aux_bias=mla_aux_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate, grad_checkpointing=grad_checkpointing,
        )  # fmt: skip
        self.head_type = head
        self.num_classes = num_classes
        self.encoder_frozen = False
        self.info = ModelInfo().for_channels(in_chans)
        """Classes, normalisation, test protocol and provenance (filled in by the zoo and by loading)."""

        self.encoder = ViTEncoder(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            class_token=class_token, patch_bias=patch_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
        )  # fmt: skip
        self.encoder.set_grad_checkpointing(grad_checkpointing)
        if is_mla:
            self.neck: MLANeck | None = MLANeck(embed_dim, mla_channels)
            self.decode_head: nn.Module = MLAHead(
                num_classes, mla_channels, mla_head_channels,
                classifier_kernel=mla_classifier_kernel, align_corners=mla_align_corners,
            )  # fmt: skip
            self.aux_heads = nn.ModuleList(
                MLAAuxHead(num_classes, mla_channels, bias=mla_aux_bias) for _ in aux_indices
            )
        else:
            self.neck = None
            self.decode_head = UpHead(
                embed_dim, num_classes, head_channels, decode_kernel_size, decode_up_scales, head_conv_bias
            )
            self.aux_heads = nn.ModuleList(
                UpHead(embed_dim, num_classes, head_channels, aux_kernel_size, aux_up_scales, head_conv_bias)
                for _ in aux_indices
            )

    # ----------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        in_chans = self.config["in_chans"]
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != in_chans:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"SETR expects a normalised image batch of shape (B, {in_chans}, H, W), got {shape}; "
                "use setr.inference to preprocess PIL images or arrays"
            )
        # Input validation, not part of the network: skipped while tracing or compiling, where a
        # check on values would put a data-dependent branch into the graph.
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
        checkable = x.is_floating_point() and not x.is_meta  # meta tensors (FLOP counting) hold no values
        if not self.training and not tracing and checkable and not bool(torch.isfinite(x).all()):
            raise ValueError("the input holds NaN or infinite values; the logits would be meaningless")

    def head_inputs(self, x: torch.Tensor, with_aux: bool = False) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """What the heads read.

        Returns:
            For Naive/PUP the encoder tokens ``(B, h*w, D)`` of ``[decode_index, *aux_indices]``
            (only the decode tap unless ``with_aux``); for MLA the neck levels
            ``(B, mla_channels, h, w)``, shallowest first. And the token grid ``(h, w)``.
        """
        self._check_input(x)
        cfg = self.config
        if self.neck is not None:
            tokens, grid = self.encoder(x, cfg["mla_indices"])
            return self.neck(tokens, grid), grid
        taps = [cfg["decode_index"], *cfg["aux_indices"]] if with_aux else [cfg["decode_index"]]
        return self.encoder(x, taps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's ``forward_features``: the tokens ``(B, prefix + h*w, D)`` after the last block
        (with the cls token first when the model has one; SETR's encoder has no final norm)."""
        self._check_input(x)
        tokens, _ = self.encoder.embed(x)
        for block in self.encoder.blocks:
            tokens = block(tokens)
        return tokens

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates`` for the SETR encoder: use it as a backbone.

        Args:
            x: normalised images ``(B, in_chans, H, W)``.
            indices: an int ``n`` takes the last ``n`` blocks, a sequence takes those blocks
                (negative counts from the end), ``None`` all of them.
            norm: accepted for timm compatibility; SETR's encoder has no final norm (each head
                normalises its own input), so there is nothing to apply.
            stop_early: run no block after the last one requested.
            output_fmt: ``"NCHW"`` for maps ``(B, D, h, w)``, ``"NLC"`` for tokens ``(B, h*w, D)``
                (prefix tokens removed either way).
            intermediates_only: return only the list of intermediates.

        Returns:
            ``(final, intermediates)``: the last block's tokens ``(B, prefix + h*w, D)`` and the
            requested blocks' outputs in block order; or the list alone. Block ``decode_index``'s
            output is exactly what the Naive/PUP decode head reads.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        self._check_input(x)
        encoder = self.encoder
        depth = encoder.depth
        take = _take_indices(depth, indices)
        last = max(take) if stop_early or intermediates_only else depth - 1
        tokens, (h, w) = encoder.embed(x)
        intermediates = []
        for i, block in enumerate(encoder.blocks[: last + 1]):
            tokens = block(tokens)
            if i in take:
                patches = tokens[:, encoder.num_prefix_tokens :]
                if output_fmt == "NCHW":
                    patches = patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)
                intermediates.append(patches)
        return intermediates if intermediates_only else (tokens, intermediates)

    def forward(
        self, x: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            x: normalised images ``(B, in_chans, H, W)``, any ``H, W`` (padded internally to a
                multiple of the patch size; the padding is cropped from the output).
            return_aux: also return the auxiliary heads' logits (for training).

        Returns:
            Logits ``(B, num_classes, H, W)``, and with ``return_aux`` the list of auxiliary logits.
        """
        height, width = x.shape[-2:]
        features, grid = self.head_inputs(x, with_aux=return_aux)
        patch = self.config["patch_size"]
        out_size = (grid[0] * patch, grid[1] * patch)
        if self.neck is not None:
            logits = self.decode_head(features, out_size)
            aux_inputs = [features[i] for i in self.config["aux_indices"]] if return_aux else []
            aux = [head(f, out_size) for head, f in zip(self.aux_heads, aux_inputs)]
        else:
            logits = self.decode_head(features[0], grid, out_size)
            aux = [head(f, grid, out_size) for head, f in zip(self.aux_heads, features[1:])]
        logits = _crop(logits, height, width)
        if not return_aux:
            return logits
        return logits, [_crop(a, height, width) for a in aux]

    # ------------------------------------------------------------------------ fine-tuning tools
    def freeze_encoder(self) -> SETR:
        """Stop training the ViT encoder: its parameters stop requiring gradients and it stays in
        eval mode (no dropout or stochastic depth) even under ``model.train()``. Returns ``self``."""
        for param in self.encoder.parameters():
            param.requires_grad_(False)
        self.encoder_frozen = True
        self.encoder.eval()
        return self

    def unfreeze_encoder(self) -> SETR:
        """Undo :meth:`freeze_encoder`; the encoder follows the model's train/eval mode again."""
        for param in self.encoder.parameters():
            param.requires_grad_(True)
        self.encoder_frozen = False
        self.encoder.train(self.training)
        return self

    def train(self, mode: bool = True) -> SETR:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in timm's format, for ``timm.optim.create_optimizer_v2(model,
        layer_decay=...)``: the embeddings are the first group, then one per block; the MLA neck
        and the heads are unmatched, which timm puts in the last group (full learning rate)."""
        return dict(
            stem=r"^encoder\.(?:cls_token|pos_embed|patch_embed)",
            blocks=r"^encoder\.blocks\.(\d+)" if coarse else [(r"^encoder\.blocks\.(\d+)", None)],
        )

    def drop_aux_heads(self) -> SETR:
        """Remove the auxiliary heads (they only add training losses) and their taps from the
        config. Returns ``self``."""
        self.aux_heads = nn.ModuleList()
        self.config["aux_indices"] = []
        return self

    # ------------------------------------------------------------------------------- utilities
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory: recompute encoder blocks during backward."""
        self.encoder.set_grad_checkpointing(enable)
        self.config["grad_checkpointing"] = enable

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def classifier_names(self) -> list[str]:
        """Parameter-name prefixes of every classifier (decode and auxiliary)."""
        names = ["decode_head.classifier"]
        names += [f"aux_heads.{i}.classifier" for i in range(len(self.aux_heads))]
        return names

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every classifier (decode and auxiliary) with a freshly initialised one.

        With a new class count, ``info`` forgets the class names, palette and release numbers.
        """
        _check_num_classes(num_classes)
        if num_classes != self.num_classes:
            self.info = self.info.without_classes()
        for prefix in self.classifier_names():
            owner = self.get_submodule(prefix.rsplit(".", 1)[0])
            old: nn.Conv2d = owner.classifier
            owner.classifier = nn.Conv2d(
                old.in_channels, num_classes, old.kernel_size, padding=old.padding, bias=old.bias is not None
            ).to(device=old.weight.device, dtype=old.weight.dtype)
        self.num_classes = num_classes
        self.config["num_classes"] = num_classes

    def get_config(self) -> dict[str, Any]:
        """A deep copy of the constructor arguments (JSON-able)."""
        return copy.deepcopy(self.config)

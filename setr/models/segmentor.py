"""The SETR segmentor: a ViT encoder and a Naive, PUP or MLA decoder, with auxiliary heads."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import HEAD_TYPES, SETRConfig, as_config, check_num_classes, default_taps, take_indices
from .config import official_aux_indices as official_aux_indices
from .encoder import ViTEncoder, tokens_to_map
from .heads import MLAAuxHead, MLAHead, MLANeck, NaiveHead, PUPAuxHead, PUPHead
from .hub_mixin import SETRHubMixin
from .info import ModelInfo

__all__ = ["HEAD_TYPES", "SETR", "SETRConfig", "default_taps", "official_aux_indices"]

_UP_HEADS = {"naive": (NaiveHead, NaiveHead), "pup": (PUPHead, PUPAuxHead)}  # (decode, auxiliary)


def _crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left ``(height, width)`` of ``(B, C, H', W')`` maps (the padding cut off), as a new
    tensor: a padding by minus the excess. A view (slicing) would make ``torch.export`` decide
    whether the crop is the whole map, i.e. specialise the input size to (not) a multiple of 16."""
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


class SETR(nn.Module, SETRHubMixin):
    """SEgmentation TRansformer (Zheng et al., CVPR 2021).

    Built from a :class:`SETRConfig` (``SETR(SETRConfig(head="mla", num_classes=150))``) or from its
    fields as keywords (``SETR(head="mla", num_classes=150)``); the resolved config is
    ``model.config``, so ``SETR(model.config)`` rebuilds the same network.

    ``model.info`` (:class:`setr.ModelInfo`) holds what is not architecture: class names, palette,
    normalisation, test protocol, the release and where the weights came from.

    Hub methods: ``save_pretrained(dir)``, ``SETR.from_pretrained(repo_id_or_dir)``,
    ``push_to_hub(repo_id)`` (``config.json`` + ``model.safetensors`` + model card).

    ``forward``: ``(B, in_chans, H, W)`` normalised images of any size ->
    ``(B, num_classes, H, W)`` logits; with ``return_aux=True`` also the list of auxiliary logits,
    each ``(B, num_classes, H, W)``.
    """

    config: SETRConfig

    def __init__(self, config: SETRConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """
        Args:
            config: the network's :class:`SETRConfig` (or a dict of its fields).
            **kwargs: :class:`SETRConfig` fields, building a config or overriding ``config``'s.
        """
        super().__init__()
        if isinstance(config, str):  # setr 0.2 took the head as the first positional argument
            warnings.warn(
                f"SETR({config!r}, ...): pass the head by keyword, SETR(head={config!r}, ...), or a SETRConfig",
                DeprecationWarning,
                stacklevel=2,
            )
            config, kwargs = None, {"head": config, **kwargs}
        cfg = as_config(config, **kwargs)
        self.config = cfg
        self.encoder_frozen = False
        self.info = ModelInfo().for_channels(cfg.in_chans)
        """Classes, normalisation, test protocol and provenance (filled in by the zoo and by loading)."""

        self.encoder = ViTEncoder(
            img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, embed_dim=cfg.embed_dim,
            depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
            class_token=cfg.class_token, patch_bias=cfg.patch_bias, drop_rate=cfg.drop_rate,
            attn_drop_rate=cfg.attn_drop_rate, drop_path_rate=cfg.drop_path_rate,
        )  # fmt: skip
        self.encoder.set_grad_checkpointing(cfg.grad_checkpointing)
        if cfg.head == "mla":
            self.neck: MLANeck | None = MLANeck(cfg.embed_dim, cfg.mla_channels)
            self.decode_head: nn.Module = MLAHead(
                cfg.num_classes, cfg.mla_channels, cfg.mla_head_channels,
                classifier_kernel=cfg.mla_classifier_kernel, align_corners=cfg.mla_align_corners,
            )  # fmt: skip
            self.aux_heads = nn.ModuleList(
                MLAAuxHead(cfg.num_classes, cfg.mla_channels, bias=cfg.mla_aux_bias) for _ in cfg.aux_indices
            )
        else:
            decode_head, aux_head = _UP_HEADS[cfg.head]
            self.neck = None
            self.decode_head = decode_head(
                cfg.embed_dim, cfg.num_classes, cfg.head_channels, *cfg.decode_stages, cfg.head_conv_bias
            )
            self.aux_heads = nn.ModuleList(
                aux_head(cfg.embed_dim, cfg.num_classes, cfg.head_channels, *cfg.aux_stages, cfg.head_conv_bias)
                for _ in cfg.aux_indices
            )

    @property
    def num_classes(self) -> int:
        """Output classes (``config.num_classes``)."""
        return self.config.num_classes

    @property
    def head_type(self) -> str:
        """``"naive"``, ``"pup"`` or ``"mla"`` (``config.head``)."""
        return self.config.head

    # ----------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        in_chans = self.config.in_chans
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
            tokens, grid = self.encoder(x, cfg.mla_indices)
            return self.neck(tokens, grid), grid
        return self.encoder(x, cfg.encoder_taps if with_aux else [cfg.decode_index])

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
        take = take_indices(depth, indices)
        last = max(take) if stop_early or intermediates_only else depth - 1
        tokens, (h, w) = encoder.embed(x)
        intermediates = []
        for i, block in enumerate(encoder.blocks[: last + 1]):
            tokens = block(tokens)
            if i in take:
                patches = tokens[:, encoder.num_prefix_tokens :]
                intermediates.append(tokens_to_map(patches, (h, w)) if output_fmt == "NCHW" else patches)
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
        patch = self.config.patch_size
        out_size = (grid[0] * patch, grid[1] * patch)
        if self.neck is not None:
            logits = self.decode_head(features, out_size)
            aux_inputs = [features[i] for i in self.config.aux_indices] if return_aux else []
            aux = [head(f, out_size) for head, f in zip(self.aux_heads, aux_inputs)]
        else:
            logits = self.decode_head(features[0], grid, out_size)
            aux = [head(f, grid, out_size) for head, f in zip(self.aux_heads, features[1:])]
        logits = self.crop_padding(logits, height, width)
        if not return_aux:
            return logits
        return logits, [self.crop_padding(a, height, width) for a in aux]

    def crop_padding(self, maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The top-left ``(height, width)`` of ``(B, C, H', W')`` output maps: the padding to a
        multiple of the patch cut off, as a new tensor (see ``_crop``; the fast inference path
        returns a view instead)."""
        return _crop(maps, height, width)

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
        self.config = self.config.replace(aux_indices=())
        return self

    # ------------------------------------------------------------------------------- utilities
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory: recompute encoder blocks during backward."""
        self.encoder.set_grad_checkpointing(enable)
        self.config = self.config.replace(grad_checkpointing=enable)

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
        check_num_classes(num_classes)
        if num_classes != self.num_classes:
            self.info = self.info.without_classes()
        for prefix in self.classifier_names():
            owner = self.get_submodule(prefix.rsplit(".", 1)[0])
            old: nn.Conv2d = owner.classifier
            owner.classifier = nn.Conv2d(
                old.in_channels, num_classes, old.kernel_size, padding=old.padding, bias=old.bias is not None
            ).to(device=old.weight.device, dtype=old.weight.dtype)
        self.config = self.config.replace(num_classes=num_classes)

    def get_config(self) -> dict[str, Any]:
        """The config as a JSON-able dict (:meth:`SETRConfig.to_dict`)."""
        return self.config.to_dict()

"""What a model needs to know about its dataset: classes, colours, normalisation, test protocol."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetInfo",
    "EvalProtocol",
    "get_dataset_info",
    "label_colormap",
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
"""RGB mean on the 0-255 scale, used by every SETR release."""
IMAGENET_STD = (58.395, 57.12, 57.375)
"""RGB std on the 0-255 scale."""

STANDARD_MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def label_colormap(num_classes: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC bit-interleaving colour map: distinct, deterministic colours per class id."""
    colours = []
    for label in range(num_classes):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return colours


@dataclass(frozen=True)
class EvalProtocol:
    """How the official code evaluates on a dataset (``official_setr.md`` section 8).

    Attributes:
        mode: ``"slide"`` (official) or ``"whole"``.
        crop: slide window side (= the training crop).
        stride: slide window stride.
        test_scale: ``(long, short)`` of the keep-ratio test resize: the image is scaled so that its
            long side is at most ``long`` and its short side at most ``short``. ``None`` keeps
            the original size.
        short_side: when set, single-scale test images are resized so that the short side equals
            this (Pascal Context's intended 520) instead of using ``test_scale``.
        ms_ratios: multi-scale ratios of ``test_scale`` for ms+flip; each scale's short side is
            raised to at least ``crop`` (the official ``setr_multi_scale`` rule).
    """

    mode: str = "slide"
    crop: int = 768
    stride: int = 512
    test_scale: tuple[int, int] | None = None
    short_side: int | None = None
    ms_ratios: tuple[float, ...] = STANDARD_MS_RATIOS


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset as SETR uses it."""

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    protocol: EvalProtocol
    ignore_index: int = 255
    reduce_zero_label: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
# The colours of the Cityscapes label definitions (cityscapesScripts, labels.py), by trainId.
_CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip

_ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

# The palette of the official configs (mmseg 0.x ADE20K; Pascal Context uses its first 60 colours).
_ADE20K_PALETTE_HEX = """
787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d
787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0
0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06
ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00
ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70
00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99
ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52
000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00
08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff
9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00
00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8
005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
"""


def _hex_palette(text: str) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)) for c in text.split())


_ADE20K_PALETTE = _hex_palette(_ADE20K_PALETTE_HEX)

_PCONTEXT_CLASSES = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat",
    "book", "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass",
    "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate",
    "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water",
    "window", "wood",
)  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    "cityscapes": DatasetInfo(
        name="cityscapes",
        class_names=_CITYSCAPES_CLASSES,
        palette=_CITYSCAPES_PALETTE,
        protocol=EvalProtocol(crop=768, stride=512, test_scale=(2049, 1025)),
    ),
    "ade20k": DatasetInfo(
        name="ade20k",
        class_names=_ADE20K_CLASSES,
        palette=_ADE20K_PALETTE,
        protocol=EvalProtocol(crop=512, stride=341, test_scale=(2048, 512)),
        reduce_zero_label=True,
    ),
    "pcontext": DatasetInfo(
        name="pcontext",
        class_names=_PCONTEXT_CLASSES,
        palette=_ADE20K_PALETTE[:60],
        # The official single-scale pipeline is broken at HEAD; the behaviour at weight release was
        # "short side = 520" (official_setr.md sections 8 and 10.2).
        protocol=EvalProtocol(crop=480, stride=320, test_scale=(520, 520), short_side=520),
        extra={"note": "60 classes including background (index 0); the 59-class metric ignores it"},
    ),
}


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``cityscapes``, ``ade20k`` or ``pcontext``."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None

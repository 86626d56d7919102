"""SETR: SEgmentation TRansformer (Zheng et al., CVPR 2021) in PyTorch."""

from .data.meta import DATASETS, DatasetInfo, EvalProtocol, get_dataset_info
from .fast import optimize_for_inference
from .inference import Predictor, predict
from .models import (
    SETR,
    MLAAuxHead,
    MLAHead,
    MLANeck,
    ModelInfo,
    NaiveHead,
    PatchEmbed,
    PUPAuxHead,
    PUPHead,
    Release,
    SETRConfig,
    UpHead,
    ViTEncoder,
)
from .zoo import (
    PretrainedWeightsUnavailable,
    create_model,
    from_pretrained,
    is_model,
    list_models,
    model_info,
    register_model,
)

__version__ = "0.2.0"


def __getattr__(name: str) -> object:
    # setr.training (optimiser, schedule, loss, loop pieces) loads on first use: inference never needs it
    if name == "training":
        import importlib

        return importlib.import_module(f"{__name__}.training")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASETS", "SETR", "DatasetInfo", "EvalProtocol", "MLAAuxHead", "MLAHead", "MLANeck", "ModelInfo",
    "NaiveHead", "PUPAuxHead", "PUPHead", "PatchEmbed", "PretrainedWeightsUnavailable", "Predictor", "Release",
    "SETRConfig", "UpHead", "ViTEncoder", "__version__", "create_model", "from_pretrained", "get_dataset_info", "is_model",
    "list_models", "model_info", "optimize_for_inference", "predict", "register_model",
]  # fmt: skip

"""SETR: SEgmentation TRansformer (Zheng et al., CVPR 2021) in PyTorch."""

from ._registry import is_model, list_models, register_model
from .data.meta import DATASETS, DatasetInfo, EvalProtocol, get_dataset_info
from .factory import create_model
from .hub import PretrainedWeightsUnavailable, from_pretrained
from .inference import Predictor, predict
from .models import (
    SETR,
    MLAAuxHead,
    MLAHead,
    MLANeck,
    NaiveHead,
    PatchEmbed,
    PUPAuxHead,
    PUPHead,
    UpHead,
    ViTEncoder,
)
from .pretrained import PRETRAINED, PretrainedCfg

__version__ = "0.1.0"

__all__ = [
    "DATASETS", "PRETRAINED", "SETR", "DatasetInfo", "EvalProtocol", "MLAAuxHead", "MLAHead",
    "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead", "PatchEmbed", "PretrainedCfg", "UpHead",
    "PretrainedWeightsUnavailable", "Predictor", "ViTEncoder", "__version__", "create_model", "from_pretrained", "get_dataset_info", "is_model", "list_models", "predict",
    "register_model",
]  # fmt: skip

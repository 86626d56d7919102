"""The model zoo: names, the table of architectures and releases, ``create_model``, Hub downloads, model info."""

from .convert import convert_checkpoint
from .create import create_model
from .hub import PretrainedWeightsUnavailable, from_pretrained, load_release_weights
from .listing import zoo_markdown, zoo_rows
from .registry import is_model, list_models, model_info, register_model
from .table import BACKBONES, HUB_ORGANISATION, HUB_REVISION, ZOO, Backbone, ZooEntry, hub_repo_id

__all__ = [
    "BACKBONES", "HUB_ORGANISATION", "HUB_REVISION", "ZOO", "Backbone", "PretrainedWeightsUnavailable",
    "ZooEntry", "convert_checkpoint", "create_model", "from_pretrained", "hub_repo_id", "is_model",
    "list_models", "load_release_weights", "model_info", "register_model", "zoo_markdown", "zoo_rows",
]  # fmt: skip

"""torch.hub entry points: ``torch.hub.load("<owner>/<repo>", "setr_pup", pretrained=False)``.

``setr_naive``, ``setr_pup`` and ``setr_mla`` are the ViT-L architectures; every zoo name of
``setr.list_models()`` is an entry point too, and accepts the same arguments as
``setr.create_model`` (``pretrained``, ``checkpoint_path``, ``num_classes``, ``img_size``, ...).
"""

dependencies = ["torch", "timm", "huggingface_hub", "safetensors", "einops", "numpy", "PIL", "tqdm"]

import setr as _setr  # noqa: E402


def _entry(name: str):
    def entry(pretrained: bool = False, **kwargs):
        return _setr.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"SETR ``{name}`` (see ``setr.create_model``)."
    return entry


setr_naive = _entry("setr_naive_vitl")
setr_pup = _entry("setr_pup_vitl")
setr_mla = _entry("setr_mla_vitl")
for _name in _setr.list_models():
    globals()[_name] = _entry(_name)
del _name

"""setr.integrations.transformers: the config, the model, the processor, the Auto classes, pipeline and Trainer.

Offline and tiny: a local folder stands in for a Hub repository (HF_HUB_OFFLINE=1 in the processes
started here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import setr
from setr.data.meta import IMAGENET_MEAN, EvalProtocol, label_colormap
from setr.data.synthetic import SyntheticShapes
from setr.inference.preprocess import normalize
from setr.inference.resize import resize_image
from setr.models.hub_mixin import PREPROCESSOR_FILE

from .conftest import small

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from setr.integrations.transformers import (  # noqa: E402
    REMOTE_CODE_FILE,
    SetrConfig,
    SetrForSemanticSegmentation,
    SetrImageProcessor,
    segmentation_metrics,
)

CLASSES = ["background", "road", "car", "sky"]
# a test resize that changes every image's size, so the resize there and back is exercised
PROTOCOL = EvalProtocol(mode="whole", crop=32, stride=32, test_scale=(48, 40), ms_ratios=(1.0,))


def _network(head: str = "pup", aux: bool = True, seed: int = 0) -> setr.SETR:
    torch.manual_seed(seed)
    taps = {"mla": [0, 1], "pup": [0, 1, 1], "naive": [0, 1]}[head]
    net = setr.SETR(head=head, **small(narrow_heads=True, num_classes=len(CLASSES), aux_indices=taps if aux else None))
    net.info = net.info.replace(class_names=CLASSES, palette=label_colormap(4), protocol=PROTOCOL)
    return net.eval()


def _image(height: int, width: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine a second one can cost 100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``ours``: written by setr.SETR.save_pretrained (with auxiliary heads); ``hf``: the same model
    written through transformers."""
    root = tmp_path_factory.mktemp("hf")
    net = _network()
    net.save_pretrained(root / "ours")
    SetrForSemanticSegmentation.from_pretrained(root / "ours").save_pretrained(root / "hf")
    return {"ours": root / "ours", "hf": root / "hf", "network": net}


# ----------------------------------------------------------------------------------- config


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_config_round_trips_every_setr_field(head, tmp_path):
    network = _network(head)
    config = SetrConfig.from_setr(network.config, network.info)
    assert config.setr_config == network.config
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert setr.SETRConfig.from_dict({k: saved[k] for k in setr.SETRConfig.field_names()}) == network.config
    assert saved["model_type"] == "setr" and saved["info"]["class_names"] == CLASSES
    assert saved["auto_map"]["AutoModelForSemanticSegmentation"] == "setr_transformers.SetrForSemanticSegmentation"
    assert (tmp_path / REMOTE_CODE_FILE).is_file()
    loaded = SetrConfig.from_pretrained(tmp_path)
    assert loaded.setr_config == network.config and loaded.model_info == network.info
    assert loaded.id2label == dict(enumerate(CLASSES)) and loaded.label2id == {n: i for i, n in enumerate(CLASSES)}


def test_config_class_count_is_num_labels():
    config = SetrConfig.from_setr(_network().config, _network().info)
    assert config.num_classes == config.num_labels == 4
    fewer = SetrConfig(**{**config.to_dict(), "num_labels": 3})  # from_pretrained(..., num_labels=3)
    assert fewer.setr_config.num_classes == 3 and fewer.model_info.class_names is None
    assert fewer.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    with pytest.raises(ValueError, match="unknown head 'segformer'"):
        SetrConfig(head="segformer")


# ------------------------------------------------------------------------------------ model


def test_state_dict_keys_and_initialisation_are_setrs():
    config = SetrConfig.from_setr(_network().config)
    torch.manual_seed(3)
    wrapped = SetrForSemanticSegmentation(config)
    plain = _network(seed=3)
    ours, theirs = wrapped.state_dict(), plain.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # SETR's own initialisation, not re-drawn


@pytest.mark.parametrize("source", ["ours", "hf"])
def test_folders_load_into_each_other_strictly(folders, source):
    x = torch.randn(2, 3, 40, 56)
    expected = folders["network"](x)
    model, info = SetrForSemanticSegmentation.from_pretrained(folders[source], output_loading_info=True)
    assert not model.training and not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert len(model.network.aux_heads) == 3  # the auxiliary heads come along, for training
    assert torch.equal(model(x).logits, expected)
    back = setr.from_pretrained(folders[source], aux_heads=True)  # the other direction
    assert back.info.class_names == tuple(CLASSES) and back.info.protocol == PROTOCOL
    assert torch.equal(back(x), expected)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))


def test_files_of_both_kinds_hold_the_same_tensors(folders):
    from safetensors.torch import load_file

    ours, hf = (load_file(str(folders[k] / "model.safetensors")) for k in ("ours", "hf"))
    assert sorted(ours) == sorted(hf) and all(torch.equal(ours[k], hf[k]) for k in ours)


@pytest.mark.parametrize("source", ["ours", "hf"])
def test_auto_classes_load_the_folder(folders, source):
    """A folder of either kind: ``setr.SETR.save_pretrained``'s as it is, or one written through transformers."""
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(folders[source])
    processor = transformers.AutoImageProcessor.from_pretrained(folders[source])
    assert isinstance(model, SetrForSemanticSegmentation) and isinstance(processor, SetrImageProcessor)
    assert processor.test_scale == [48, 40] and processor.image_mean == list(IMAGENET_MEAN)
    assert model.config.id2label == dict(enumerate(CLASSES))
    x = torch.randn(1, 3, 40, 56)
    assert torch.equal(model(x).logits, folders["network"](x))


def test_a_setr_folder_is_data_only_and_its_preprocessor_file_is_transformers(folders):
    """setr writes ``model_type`` and ``preprocessor_config.json`` (byte for byte the one transformers
    writes: both are made from ``info``), and no code: ``auto_map`` and its module come only with
    a save through transformers."""
    ours, hf = folders["ours"], folders["hf"]
    assert {p.name for p in ours.iterdir()} == {"config.json", "model.safetensors", "README.md", PREPROCESSOR_FILE}
    config = json.loads((ours / "config.json").read_text())
    assert config["model_type"] == "setr" and "auto_map" not in config
    assert (ours / PREPROCESSOR_FILE).read_bytes() == (hf / PREPROCESSOR_FILE).read_bytes()


def test_a_folder_written_before_model_type_still_loads(folders, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((folders["ours"] / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps(config))
    (old / "model.safetensors").write_bytes((folders["ours"] / "model.safetensors").read_bytes())
    x = torch.randn(1, 3, 40, 56)
    expected = folders["network"](x)
    assert torch.equal(setr.create_model(str(old))(x), expected)
    assert torch.equal(SetrForSemanticSegmentation.from_pretrained(old)(x).logits, expected)
    with pytest.raises(ValueError):  # the Auto classes need model_type: re-save it with setr
        transformers.AutoModelForSemanticSegmentation.from_pretrained(old)
    setr.from_pretrained(old, aux_heads=True).save_pretrained(old)
    assert json.loads((old / "config.json").read_text())["model_type"] == "setr"
    assert torch.equal(transformers.AutoModelForSemanticSegmentation.from_pretrained(old)(x).logits, expected)


def test_not_a_setr_folder_is_refused_in_one_line(tmp_path):
    transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"not a SETR model \(model_type 'vit'") as error:
        SetrForSemanticSegmentation.from_pretrained(tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="model_type 'vit': the config of another model"):  # setr's reader too
        setr.SETRConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))


def test_loss_is_the_official_recipe(folders):
    model = SetrForSemanticSegmentation.from_pretrained(folders["hf"]).train()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 4, (2, 32, 32))
    labels[:, :5] = 255
    torch.manual_seed(1)
    out = model(pixel_values=x, labels=labels)
    torch.manual_seed(1)
    logits, aux = model.network(x, return_aux=True)

    def ce(z):  # the official mean: ignored pixels count as zero-loss pixels
        return F.cross_entropy(z, labels, ignore_index=255, reduction="none").mean()

    expected = ce(logits) + 0.4 * sum(ce(a) for a in aux)
    assert len(aux) == 3 and torch.allclose(out.loss, expected, rtol=1e-6)
    assert out.logits.shape == (2, 4, 32, 32)
    loss, logits_tuple = model(x, labels=labels, return_dict=False)
    assert logits_tuple.shape == (2, 4, 32, 32)


def test_gradient_checkpointing_maps_to_setr_and_keeps_gradients(folders):
    model = SetrForSemanticSegmentation.from_pretrained(folders["hf"]).train()
    x, labels = torch.randn(1, 3, 32, 32), torch.randint(0, 4, (1, 32, 32))
    grads = []
    for enabled in (False, True):
        model.gradient_checkpointing_enable() if enabled else None
        model.zero_grad()
        model(x, labels=labels).loss.backward()
        grads.append(model.network.encoder.blocks[0].attn.qkv.weight.grad.clone())
    assert model.network.encoder.grad_checkpointing and model.is_activation_checkpointing
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# -------------------------------------------------------------------------------- processor


def test_processor_is_the_predictor_pipeline(folders):
    network = setr.from_pretrained(folders["hf"])
    processor = SetrImageProcessor.from_model_info(network.info)
    image = _image(37, 61, 1)
    inputs = processor(image)
    predictor = setr.Predictor(network, mode="whole", optimize=False)
    rgb = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None]
    view = resize_image(rgb, (29, 48))  # 37x61 fitted into (48, 40)
    assert torch.equal(inputs["pixel_values"], normalize(view, network.info.mean))
    logits = predictor.network(inputs["pixel_values"])
    (mask,) = processor.post_process_semantic_segmentation(
        transformers.modeling_outputs.SemanticSegmenterOutput(logits=logits), target_sizes=[(37, 61)]
    )
    assert torch.equal(mask, predictor(image).mask)
    with pytest.raises(ValueError, match="cannot share a batch"):
        processor([image, _image(50, 20, 2)])
    labelled = processor(image, segmentation_maps=np.full((37, 61), 2))
    assert labelled["labels"].shape == (1, 29, 48) and bool((labelled["labels"] == 2).all())


# ---------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("source", ["ours", "hf"])
def test_pipeline_masks_are_the_predictors_whole_mode(folders, source):
    """The pipeline on the folder itself (setr's own, or written through transformers) against
    ``setr.Predictor`` on the same folder."""
    pipe = transformers.pipeline("image-segmentation", model=str(folders[source]))
    predictors = {
        optimize: setr.Predictor(str(folders[source]), mode="whole", optimize=optimize) for optimize in (False, True)
    }
    agreement = {}
    for seed, (height, width) in enumerate([(45, 70), (64, 33), (37, 61)]):
        image = _image(height, width, seed)
        results = pipe(image)
        union = np.full((height, width), -1)
        for result in results:
            selected = np.asarray(result["mask"]) == 255
            assert (union[selected] == -1).all()  # masks do not overlap
            union[selected] = CLASSES.index(result["label"])
        assert (union >= 0).all()  # and cover the image
        for optimize in (False, True):
            mask = predictors[optimize](image).mask.numpy()
            assert sorted(r["label"] for r in results) == sorted(CLASSES[c] for c in np.unique(mask))
            agreement.setdefault(optimize, []).append(float((union == mask).mean()))
    print(f"{source}: pipeline vs Predictor whole mode, pixels equal: plain {agreement[False]}, "
          f"optimised {agreement[True]}")  # fmt: skip
    assert agreement[False] == [1.0, 1.0, 1.0] and agreement[True] == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------------- Trainer


def _dataset(count: int, seed: int) -> datasets.Dataset:
    shapes = SyntheticShapes(num_samples=count, size=32, num_classes=4, seed=seed)
    rows = {"pixel_values": [], "labels": []}
    processor = SetrImageProcessor()
    for image, label in shapes:
        label[:2] = 255  # unlabelled rows, ignored by the loss and the metrics
        inputs = processor(image, segmentation_maps=label)
        rows["pixel_values"].append(inputs["pixel_values"][0].numpy())
        rows["labels"].append(inputs["labels"][0].numpy())
    return datasets.Dataset.from_dict(rows).with_format("torch")


def _train(model, out, steps: int, **flags):
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, learning_rate=2e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_num_workers=0, **flags,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_dataset(16, 0), eval_dataset=_dataset(4, 1),
        compute_metrics=segmentation_metrics(model.config.num_labels),
    )  # fmt: skip
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return trainer, losses


def test_trainer_fine_tunes_with_gradient_checkpointing(folders, tmp_path):
    model = SetrForSemanticSegmentation.from_pretrained(folders["hf"])
    trainer, losses = _train(model, tmp_path, 25, gradient_checkpointing=True)
    print("Trainer loss curve:", [round(v, 3) for v in losses])
    assert model.network.encoder.grad_checkpointing
    assert len(losses) == 25 and np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    metrics = trainer.evaluate()
    print("eval:", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    assert 0 <= metrics["eval_mIoU"] <= 1 and metrics["eval_aAcc"] > 0.25
    trainer.save_model(tmp_path / "final")
    reloaded = setr.from_pretrained(tmp_path / "final")  # what Trainer saves, setr reads
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_trainer_bf16_flag_trains_in_bf16_on_cpu(folders, tmp_path):
    model = SetrForSemanticSegmentation.from_pretrained(folders["hf"])
    dtypes = []
    model.network.decode_head.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    _, losses = _train(model, tmp_path, 3, bf16=True)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert dtypes[:3] == [torch.bfloat16] * 3  # the forward ran under bf16 autocast
    assert model.network.encoder.pos_embed.dtype == torch.float32  # the weights stay fp32


# ------------------------------------------------------------------- processes of their own


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_import_setr_imports_no_transformers(tmp_path):
    result = _run("import sys, setr, setr.integrations; print('transformers' in sys.modules)", tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


@pytest.mark.slow
def test_trust_remote_code_loads_the_folder_without_importing_setr(folders, tmp_path):
    code = f"""
import sys
import numpy as np
from PIL import Image
from transformers import pipeline
assert "setr" not in sys.modules
pipe = pipeline("image-segmentation", model={str(folders["hf"])!r}, trust_remote_code=True)
print(type(pipe.model).__module__, sorted(r["label"] for r in pipe(Image.fromarray(np.zeros((40, 50, 3), np.uint8)))))
"""
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    module, labels = result.stdout.strip().split(" ", 1)
    assert module == "setr.integrations.hf_model" and set(eval(labels)) <= set(CLASSES)

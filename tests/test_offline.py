"""The network is not there: one short attempt, then the message; local paths never go to the Hub."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import setr

pytestmark = pytest.mark.filterwarnings("ignore")


def run_without_network(script: str, tmp_path, **env_extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """``script`` in a fresh interpreter with HF_HUB_OFFLINE unset and an empty HF_HOME: the Hub is
    really asked (this machine has no route to it: the DNS lookup fails or the connection is refused)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), **env_extra)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120, env=env
    )
    return result, time.perf_counter() - start


CALL_AND_TIME = """
import time, setr
start = time.perf_counter()
try:
    {call}
except Exception as error:
    print(type(error).__name__ + ": " + str(error))
print("SECONDS", time.perf_counter() - start)
"""


def seconds(result: subprocess.CompletedProcess) -> float:
    return float(result.stdout.rsplit("SECONDS", 1)[1])


@pytest.mark.slow
def test_pretrained_without_network_answers_in_one_short_try(tmp_path):
    call = 'setr.create_model("setr_pup_vitl_cityscapes", pretrained=True)'
    result, wall = run_without_network(CALL_AND_TIME.format(call=call), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    message = result.stdout.splitlines()[0]
    assert message.startswith("PretrainedWeightsUnavailable: the weights of setr_pup_vitl_cityscapes.official_80k")
    assert "setr convert --model setr_pup_vitl_cityscapes.official_80k --checkpoint <downloaded file>" in message
    assert len(result.stdout.splitlines()) == 2  # the one-line message, then the timing
    assert "Retrying" not in result.stderr
    assert seconds(result) < 5, (seconds(result), wall)


@pytest.mark.slow
def test_hub_repo_id_without_network_answers_in_one_short_try(tmp_path):
    result, _ = run_without_network(CALL_AND_TIME.format(call='setr.from_pretrained("someone/some-model")'), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("FileNotFoundError: could not load 'someone/some-model' (revision main): no answer")
    assert "Retrying" not in result.stderr
    assert seconds(result) < 5


@pytest.mark.slow
def test_an_unanswering_endpoint_costs_one_short_timeout(tmp_path):
    # a non-routable address: the connection hangs (or is refused) instead of failing in DNS
    call = 'setr.create_model("setr_pup_vitl_cityscapes", pretrained=True)'
    result, _ = run_without_network(CALL_AND_TIME.format(call=call), tmp_path, HF_ENDPOINT="http://10.255.255.1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PretrainedWeightsUnavailable" in result.stdout and "Retrying" not in result.stderr
    assert seconds(result) < 5


def _no_hub(monkeypatch):
    import huggingface_hub
    import huggingface_hub.hub_mixin

    def fail(*args, **kwargs):
        raise AssertionError(f"a local path went to the Hub: {args} {kwargs}")

    for target in (
        huggingface_hub, huggingface_hub.hub_mixin, "setr.models.hub_mixin", "setr.zoo.hub",
    ):  # fmt: skip
        for name in ("hf_hub_download", "get_hf_file_metadata", "try_to_load_from_cache", "snapshot_download"):
            module = sys.modules[target] if isinstance(target, str) else target
            if hasattr(module, name):
                monkeypatch.setattr(module, name, fail)


def test_local_looking_paths_never_touch_the_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _no_hub(monkeypatch)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for missing in ("./x", "runs/fnal", str(tmp_path / "nothere"), "~/surely-not-a-folder-of-setr", "../a/b"):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            setr.from_pretrained(missing)
        with pytest.raises(FileNotFoundError, match="no such folder"):
            setr.create_model(missing)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        setr.create_model("runs")  # a folder, not a zoo name nor a saved model
    (tmp_path / "runs" / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="is a checkpoint file.*checkpoint_path="):
        setr.create_model("runs/w.pth")
    with pytest.raises(KeyError, match="unknown model"):
        setr.create_model("setr_pup_vitl_cityscape")  # a typo of a zoo name is still a name

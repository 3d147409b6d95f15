"""Pretrained ensemble: shipped checkpoints (sha256), corruption, the hub path offline."""

from __future__ import annotations

import json
import os

import huggingface_hub.constants as hf_constants
import pytest
import torch

from tutorial_lib import hub
from tutorial_lib.data import TensorBatchLoader, load_split
from tutorial_lib.metrics import evaluate_predictions
from tutorial_lib.models import LeNet
from tutorial_lib.routine import predict


def make_shipped(folder, n=2):
    """Write n seeded LeNets and their manifest, as `tutorial-lib pretrain` does."""
    folder.mkdir(parents=True, exist_ok=True)
    models, files = [], []
    for i in range(n):
        torch.manual_seed(i)
        model = LeNet()
        files.append(
            {
                "file": f"lenet_{i}.ckpt",
                "sha256": hub.save_member(model, folder / f"lenet_{i}.ckpt"),
                "seed": i,
            }
        )
        models.append(model)
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return models


def test_local_round_trip_in_reference_format(tmp_path):
    models = make_shipped(tmp_path / "pre")
    saved = torch.load(tmp_path / "pre" / "lenet_0.ckpt", weights_only=True)
    assert set(saved["state_dict"]) == {f"model.{k}" for k in LeNet().state_dict()}
    ensemble = hub.load_pretrained_ensemble("local", 2, directory=tmp_path / "pre")
    assert not ensemble.training and ensemble.num_estimators == 2
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(ensemble(x), torch.cat([m(x) for m in models]))


def test_sha256_mismatch_and_missing_files_name_the_file(tmp_path):
    make_shipped(tmp_path / "pre")
    target = tmp_path / "pre" / "lenet_1.ckpt"
    blob = bytearray(target.read_bytes())
    blob[-100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(hub.PretrainedError, match=r"lenet_1\.ckpt is corrupted: sha256"):
        hub.load_pretrained_ensemble("local", 2, directory=tmp_path / "pre")
    target.unlink()
    with pytest.raises(hub.PretrainedError, match=r"lenet_1\.ckpt is missing"):
        hub.load_pretrained_ensemble("local", 2, directory=tmp_path / "pre")
    with pytest.raises(hub.PretrainedError, match="manifest.json is missing"):
        hub.load_pretrained_ensemble("local", directory=tmp_path / "nowhere")
    with pytest.raises(hub.PretrainedError, match="lists 2 members, 3 asked"):
        hub.load_pretrained_ensemble("local", 3, directory=tmp_path / "pre")


def test_corrupted_and_wrong_architecture_checkpoints(tmp_path):
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(hub.PretrainedError, match="cannot be read"):
        hub.load_member(tmp_path / "broken.ckpt")
    state = {f"model.{k}": v for k, v in LeNet(1, 5).state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "other.ckpt")
    with pytest.raises(hub.PretrainedError, match="wrong architecture"):
        hub.load_member(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="source"):
        hub.load_pretrained_ensemble("cloud")
    state = {f"model.{k}": v for k, v in LeNet(3, 10).state_dict().items()}  # colour images
    torch.save({"state_dict": state}, tmp_path / "rgb.ckpt")
    with pytest.raises(hub.PretrainedError, match="3-channel images; the course's images have 1"):
        hub.load_member(tmp_path / "rgb.ckpt")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A hub cache laid out as huggingface_hub lays it, and the hub in offline mode."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf-cache"


def fill_cache(cache, n=2):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + hub.HUB_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    models = []
    for i in range(n):
        torch.manual_seed(10 + i)
        model = LeNet()
        # the reference's files are Lightning checkpoints: a state_dict prefixed "model." + more
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        torch.save(
            {"state_dict": state, "epoch": 74, "global_step": 1000}, snapshot / f"version_{i}.ckpt"
        )
        models.append(model)
    return models


def test_hub_path_offline_from_the_cache(offline_hub):
    models = fill_cache(offline_hub)
    ensemble = hub.load_pretrained_ensemble("hub", 2, cache_dir=offline_hub)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(ensemble(x), torch.cat([m(x) for m in models]))


def test_hub_unreachable_and_auto_fallback(offline_hub, tmp_path):
    with pytest.raises(hub.PretrainedError, match="HF_HUB_OFFLINE is set"):
        hub.load_pretrained_ensemble("hub", 1, cache_dir=offline_hub)
    fill_cache(offline_hub)
    with pytest.warns(UserWarning, match="Trying the hub"):
        ensemble = hub.load_pretrained_ensemble(
            "auto", 2, directory=tmp_path / "none", cache_dir=offline_hub
        )
    assert ensemble.num_estimators == 2


def test_shipped_ensemble_matches_its_manifest(real_root):
    manifest = json.loads((hub.DEFAULT_DIR / "manifest.json").read_text())
    ensemble = hub.load_pretrained_ensemble("local")
    assert ensemble.num_estimators == len(manifest["files"]) == 8
    test = predict(ensemble, TensorBatchLoader(*load_split("MNIST", False, real_root), 2048, False))
    ood = predict(
        ensemble, TensorBatchLoader(*load_split("FashionMNIST", False, real_root), 2048, False)
    )
    measured = evaluate_predictions(test["probs"], test["targets"], ood["probs"])
    for key in ("cls/Acc", "ood/AUROC"):
        assert measured[key] == pytest.approx(manifest["ensemble"][key], abs=3e-4), key
    assert measured["cls/Acc"] >= 0.995 and measured["ood/AUROC"] >= 0.99
    assert os.path.getsize(hub.DEFAULT_DIR / manifest["files"][0]["file"]) < 250_000


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        ("{truncated", "manifest.json is damaged"),
        (json.dumps({"no_files": []}), "manifest.json is damaged"),
        (json.dumps({"files": [{"file": "lenet_0.ckpt"}]}), "manifest.json is damaged"),
        (json.dumps({"files": [{"file": "../other/lenet_0.ckpt", "sha256": "0"}]}), "outside"),
    ],
)
def test_damaged_manifests_are_clear_errors_and_auto_falls_back(tmp_path, manifest, match,
                                                                 offline_hub):  # fmt: skip
    make_shipped(tmp_path / "pre")
    (tmp_path / "other").mkdir()
    (tmp_path / "pre" / "manifest.json").write_text(manifest)
    with pytest.raises(hub.PretrainedError, match=match):
        hub.load_pretrained_ensemble("local", 1, directory=tmp_path / "pre")
    fill_cache(offline_hub, n=1)
    with pytest.warns(UserWarning, match="Trying the hub"):
        ensemble = hub.load_pretrained_ensemble("auto", 1, directory=tmp_path / "pre",
                                                cache_dir=offline_hub)  # fmt: skip
    assert ensemble.num_estimators == 1


def test_a_refused_pickle_never_suggests_weights_only_false(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    import pickle

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(hub.PretrainedError) as info:
        hub.load_member(tmp_path / "evil.ckpt")
    message = str(info.value)
    assert "refused for safety" in message and "weights_only=False" not in message


def test_hub_files_of_wrong_size_are_refused_and_network_errors_wrapped(offline_hub, monkeypatch):
    fill_cache(offline_hub, n=1)
    monkeypatch.setattr(hub, "HUB_FILE_BYTES", (10, 20))
    with pytest.raises(hub.PretrainedError, match="not a LeNet checkpoint: refused"):
        hub.load_pretrained_ensemble("hub", 1, cache_dir=offline_hub)

    class ProxyError(Exception):  # what httpx raises behind a broken proxy
        pass

    def broken(*args, **kwargs):
        raise ProxyError("407 Proxy Authentication Required")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(hub.PretrainedError, match="ProxyError: 407 Proxy"):
        hub.load_pretrained_ensemble("hub", 1, cache_dir=offline_hub)


def test_an_unreachable_hub_fails_at_once_from_the_cache_alone(tmp_path, monkeypatch):
    import socket
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    asked = []

    def no_network(address, timeout=None):
        asked.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(hub.PretrainedError, match="unreachable .* not in the hub cache"):
        hub.load_pretrained_ensemble("hub", 1, cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - start < 5 and asked[0][1] == 3.0  # one short probe, no retries
    models = fill_cache(tmp_path / "cache", n=1)  # cached files still work without the network
    ensemble = hub.load_pretrained_ensemble("hub", 1, cache_dir=tmp_path / "cache")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(ensemble(x), models[0](x))

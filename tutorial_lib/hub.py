"""The pretrained 8-member deep ensemble: shipped checkpoints, or the reference's hub checkpoints.

The course ships its own ensemble under ``data/pretrained/``: eight LeNets trained by
``tutorial-lib pretrain`` (one ``.ckpt`` each, in the reference's format: a dict whose
``state_dict`` keys are ``model.conv1.weight`` ...) and ``manifest.json`` (file names, sha256,
seeds, recipe, measured metrics, machine). They load offline, are verified by sha256, and are
small (about 180 KB each).

The reference tutorial downloads eight LeNets from the Hugging Face hub instead
(``ENSTA-U2IS/tutorial-models``, ``version_0.ckpt`` ... ``version_7.ckpt``). ``source="hub"``
keeps that path, through ``huggingface_hub.hf_hub_download`` and its cache (so it works offline
with ``HF_HUB_OFFLINE=1`` once the files are cached).

Every file is read with ``torch.load(..., weights_only=True)`` into a :class:`LeNet` with
``strict=True``; a hub file's size is checked before it is read. Manifest entries must name files
inside their folder.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Literal

import torch

from tutorial_lib.data import file_digest
from tutorial_lib.ensembles import DeepEnsemble
from tutorial_lib.errors import PretrainedError
from tutorial_lib.files import save_tensors
from tutorial_lib.models import LeNet, lenet_from_state_dict

HUB_REPO = "ENSTA-U2IS/tutorial-models"
HUB_FILES = [f"version_{i}.ckpt" for i in range(8)]
# The revision to download. Pin it to a commit id of the hub repository for reproducibility
# (HUB_REVISION = "<40-hex commit>") once one is known; "main" follows the repository. No commit id
# could be looked up for this release (its development machines have no network).
HUB_REVISION = "main"
# A LeNet checkpoint holds ~44k float32 parameters (~180 KB) plus Lightning's bookkeeping: a hub
# file outside this range is not one of the tutorial's members and is not even unpickled.
HUB_FILE_BYTES = (100_000, 5_000_000)
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "pretrained"


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    return file_digest(path, "sha256")


def save_member(model: LeNet, path: str | os.PathLike) -> str:
    """Write one member in the reference's format (``{"state_dict": {"model.*": ...}}``),
    atomically; return its sha256."""
    state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors({"state_dict": state}, path)
    return sha256sum(path)


def load_member(path: str | os.PathLike) -> LeNet:
    """One LeNet from a checkpoint file (weights only, strict).

    Raises:
        PretrainedError: unreadable file, or weights that are not a LeNet's.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        # torch's own message would suggest weights_only=False: never do that with a file you did
        # not make, it runs arbitrary code
        raise PretrainedError(
            f"{path} cannot be read as a weights-only checkpoint ({type(err).__name__}): the file "
            "is corrupted, or it holds objects other than tensors, which are refused for safety. "
            "Delete it and fetch it again."
        ) from err
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise PretrainedError(f"{path} holds no state_dict: it is not a LeNet checkpoint.")
    try:
        model = lenet_from_state_dict(state)
    except (ValueError, KeyError) as err:
        raise PretrainedError(f"{path}: wrong architecture. {err}") from err
    if model.conv1.in_channels != 1:
        raise PretrainedError(
            f"{path} is a LeNet for {model.conv1.in_channels}-channel images; the course's "
            "images have 1 channel (grey): wrong checkpoint."
        )
    return model


def _read_manifest(directory: Path) -> list[dict]:
    """The manifest's file entries, checked: each names a file inside ``directory``."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise PretrainedError(
            f"No shipped checkpoints: {manifest_path} is missing. Restore the folder from the "
            "repository (git checkout -- data/pretrained), run `tutorial-lib pretrain`, or use "
            "source='hub'."
        )
    try:
        entries = json.loads(manifest_path.read_text())["files"]
        checked = [{"file": str(e["file"]), "sha256": str(e["sha256"])} for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise PretrainedError(
            f"{manifest_path} is damaged ({type(err).__name__}: {err}): restore it (git checkout "
            "-- data/pretrained) or re-run `tutorial-lib pretrain`."
        ) from err
    root = directory.resolve()
    for entry in checked:
        if not (root / entry["file"]).resolve().is_relative_to(root):
            raise PretrainedError(f"{manifest_path} names {entry['file']!r}, outside {directory}: "
                                  "refused. Restore the manifest.")  # fmt: skip
    return checked


def _load_local(directory: Path, num_members: int) -> list[LeNet]:
    entries = _read_manifest(directory)
    if num_members > len(entries):
        raise PretrainedError(f"{directory / 'manifest.json'} lists {len(entries)} members, "
                              f"{num_members} asked.")  # fmt: skip
    models = []
    for entry in entries[:num_members]:
        path = directory / entry["file"]
        if not path.exists():
            raise PretrainedError(
                f"{path} is missing. Restore it (git checkout -- {path}) or use source='hub'."
            )
        actual = sha256sum(path)
        if actual != entry["sha256"]:
            raise PretrainedError(
                f"{path} is corrupted: sha256 {actual}, the manifest says {entry['sha256']}. "
                f"Restore it (git checkout -- {path}), re-run `tutorial-lib pretrain`, or use "
                "source='hub'."
            )
        models.append(load_member(path))
    return models


def hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host (``endpoint``, e.g. https://huggingface.co)
    opens within ``timeout`` seconds. Behind an HTTP proxy (``HTTPS_PROXY``) the answer is the
    proxy's business: True."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(num_members: int, revision: str, cache_dir: str | os.PathLike | None) -> list[LeNet]:
    import huggingface_hub.constants as hf_constants
    from huggingface_hub import hf_hub_download

    if num_members > len(HUB_FILES):
        raise PretrainedError(f"The hub holds {len(HUB_FILES)} members, {num_members} asked.")
    # offline, the download would retry for half a minute: ask the network once, briefly, and
    # use the hub cache alone when it does not answer
    cached_only = bool(hf_constants.HF_HUB_OFFLINE) or not hub_reachable(hf_constants.ENDPOINT)
    models = []
    for filename in HUB_FILES[:num_members]:
        try:
            path = hf_hub_download(HUB_REPO, filename, revision=revision, cache_dir=cache_dir,
                                   local_files_only=cached_only)  # fmt: skip
        except Exception as err:  # any transport error (HTTP, proxy, DNS, TLS, offline cache)
            hint = (
                "HF_HUB_OFFLINE is set and the file is not in the hub cache"
                if hf_constants.HF_HUB_OFFLINE
                else "the hub is unreachable (no network, proxy, or the hub is down) and the "
                "file is not in the hub cache"
                if cached_only
                else "the download failed"
            )
            raise PretrainedError(
                f"Could not get {HUB_REPO}/{filename} (revision {revision}): {hint}. "
                f"Details: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
                "Use source='local' for the checkpoints shipped with the course, which need no "
                "network."
            ) from err
        size = os.path.getsize(path)
        if not HUB_FILE_BYTES[0] <= size <= HUB_FILE_BYTES[1]:
            raise PretrainedError(f"{HUB_REPO}/{filename} is {size:,} bytes, not a LeNet "
                                  "checkpoint: refused. Delete it from the hub cache.")  # fmt: skip
        models.append(load_member(path))
    return models


def load_pretrained_ensemble(
    source: Literal["auto", "local", "hub"] = "auto",
    num_members: int = 8,
    directory: str | os.PathLike | None = None,
    revision: str = HUB_REVISION,
    cache_dir: str | os.PathLike | None = None,
) -> DeepEnsemble:
    """The pretrained deep ensemble of LeNets, in eval mode.

    Args:
        source: ``"local"``: the shipped checkpoints (sha256-verified); ``"hub"``: the reference
            tutorial's checkpoints from the Hugging Face hub; ``"auto"``: local, falling back to
            the hub with a warning.
        num_members: how many members to load (1 to 8).
        directory: folder of the shipped checkpoints (default: the repository's
            ``data/pretrained``).
        revision: hub revision (branch, tag or commit id).
        cache_dir: hub cache folder (default: huggingface_hub's, ``$HF_HOME``).

    Raises:
        ValueError: a bad ``source`` or ``num_members``.
        PretrainedError: the files are missing, corrupted, of another architecture, or the hub
            is unreachable; the message names the file and the remedy.
    """
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be 'auto', 'local' or 'hub', got {source!r}.")
    if num_members < 1:
        raise ValueError(f"num_members must be >= 1, got {num_members}.")
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    if source == "hub":
        models = _load_hub(num_members, revision, cache_dir)
    elif source == "local":
        models = _load_local(directory, num_members)
    else:
        try:
            models = _load_local(directory, num_members)
        except PretrainedError as local_error:
            warnings.warn(f"{local_error} Trying the hub instead.", UserWarning, stacklevel=2)
            models = _load_hub(num_members, revision, cache_dir)
    return DeepEnsemble(models).eval()

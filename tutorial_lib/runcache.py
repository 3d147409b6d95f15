"""The run cache: a trained run is stored once and loaded, not retrained, by a later experiment.

A run is stored under a key made of everything that shapes it (:func:`run_key`): the model
(kind, M, alpha, gamma, width), its seed, the data (dataset, subsets, validation split, the
first seed that orders the batches), the recipe (epochs, batch size, optimiser, learning rate),
the device kind, and the code that trained it (the library's version and a digest of its source,
PyTorch's version). Change any of them and the run trains again. Calibration is not in the key:
a temperature is fitted again on the stored validation predictions.

Layout (one folder per run, readable by hand)::

    <cache>/<model slug>/seed<k>-<12 hex digits>/
        key.json     the key, in words
        run.pt       metrics, times, test and validation predictions, weights (torch.save)
        logs/        the run's TensorBoard folder, copied into the next experiment's --out

An entry is written in a temporary folder and renamed into place when complete, so an
interrupted run leaves nothing half-written; a second experiment that finished the same run
first keeps its entry. Delete the folder (``rm -rf outputs/cache``) to clear the cache.

``tutorial-lib compare --cache DIR`` uses it; the notebooks use the course's ``outputs/cache``
(``cache="auto"``), so a chapter never retrains what an earlier chapter trained. A study that
is stopped half-way and started again with the same cache picks up where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from tutorial_lib import __version__, files
from tutorial_lib.config import ExperimentConfig, ModelSpec

ENV = "TUTORIAL_CACHE_DIR"
PAYLOAD = "run.pt"  # in each entry: what load() reads
# the settings of a config that shape a trained run (the rest: which models, where to write, ...)
SHAPING = ("dataset", "classes", "epochs", "batch_size", "recipe", "lr", "val_size",
           "train_subset", "eval_subset", "grouping_loss", "mc_samples", "ood_score")  # fmt: skip


def cache_dir(value: str) -> Path:
    """The cache folder of ``--cache``: ``"auto"`` is ``$TUTORIAL_CACHE_DIR``, else the course's
    ``outputs/cache`` (found as the data folder is), else ``./outputs/cache``; anything else is
    a path."""
    if value != "auto":
        return Path(value)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    try:
        return files.find_root() / "outputs" / "cache"
    except FileNotFoundError:
        return Path("outputs") / "cache"


@functools.cache
def source_digest() -> str:
    """SHA-256 of the library's Python source (every ``tutorial_lib/**/*.py``): an edit to the
    code that trains and tests runs invalidates the runs it made."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(spec: ModelSpec, config: ExperimentConfig, seed: int, accelerator: str) -> dict:
    """Everything that shapes the run of ``spec`` with ``seed`` under ``config`` (JSON-ready)."""
    return {
        "model": {"kind": spec.kind, "M": spec.members, "alpha": spec.alpha,
                  "gamma": spec.gamma, "width": spec.width},
        "seed": seed, "data_seed": config.seed, "accelerator": accelerator,
        **{name: getattr(config, name) for name in SHAPING},
        "tutorial_lib": __version__, "source": source_digest(), "torch": torch.__version__,
    }  # fmt: skip


def entry_path(cache: Path, spec: ModelSpec, key: dict) -> Path:
    """The folder of a run's entry: ``<cache>/<slug>/seed<k>-<digest>``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache / spec.slug / f"seed{key['seed']}-{digest}"


def store(entry: Path, key: dict, payload: dict[str, Any], logs: Path | None) -> bool:
    """Write a run's entry (``payload``: what :func:`torch.save` can store with
    ``weights_only`` loading) and a copy of its TensorBoard folder ``logs``.

    Returns:
        False when the entry already exists (another experiment stored the same run first).

    Raises:
        OSError: the cache folder cannot be written (full disk, no permission).
    """
    if entry.exists():
        return False
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        files.write_json(staging / "key.json", key)
        files.save_tensors(payload, staging / PAYLOAD)
        if logs is not None and logs.is_dir():
            shutil.copytree(logs, staging / "logs")
        try:
            staging.rename(entry)
        except OSError:
            if entry.exists():  # lost a race with another experiment: its entry is as good
                return False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def is_stored(entry: Path) -> bool:
    """Whether a run's entry holds its payload (what :func:`load` would read)."""
    return (entry / PAYLOAD).is_file()


def load(entry: Path) -> dict[str, Any] | None:
    """A run's stored payload, or None when there is no entry.

    Raises:
        ValueError: the entry exists but cannot be read (truncated, or written by another
            version); the message names it.
    """
    if not is_stored(entry):
        return None
    path = entry / PAYLOAD
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"cache entry {entry} cannot be read ({type(err).__name__}: {err})"
                         ) from err  # fmt: skip

"""Engineering of training: devices and CPU tuning."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
import warnings
from typing import Any

import lightning as L
import torch

# Lightning 2.6 on torch 2.14 warns on every fit about a torch pytree API it still calls; it says
# nothing a course user can act on, so it is silenced (only this message).
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the OS (glibc only).

    On CPU, each training step allocates and frees the same large activations (28 MB for the first
    layer of a fused 4-member LeNet at batch 512). glibc serves blocks above 128 KiB-32 MiB with a
    fresh ``mmap`` and unmaps them on free, so every step pays page faults to zero that memory
    again; on this course's 2-core machine that made a fused ensemble 30 % slower than running
    the members one by one. Raising the mmap and trim thresholds lets the heap keep the memory.
    Costs: the process keeps up to its peak memory until it exits.

    Returns:
        True when the thresholds were set (Linux with glibc), False elsewhere (no-op).
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    _tuned = bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30)) and bool(
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    )
    return _tuned


def release_cpu_memory() -> bool:
    """Hand the heap's free memory back to the OS (glibc ``malloc_trim``); True if it ran.

    :func:`tune_cpu_allocator` keeps freed memory for the next training step; between fits and
    evaluations that memory only inflates the process (a notebook that trains several models
    would otherwise creep past the ~2 GB of a Binder session). The trainer calls this after every
    fit and test on the CPU.
    """
    if not _tuned:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc_trim(0)
    return True


def describe_machine() -> str:
    """One line naming the CPU (and GPU when present), the thread count and the torch version."""
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and PyTorch (every device) in one call; returns the seed.

    The course seeds through this function only, so a notebook run with the same seed on the
    same machine gives the same numbers.
    """
    import lightning as L

    return L.seed_everything(seed, workers=True, verbose=False)


def available_accelerator() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"mps"`` on Apple silicon, else ``"cpu"``."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_GPU_NAMES = {"gpu", "cuda", "mps"}


def _choose_accelerator(requested: str | None) -> str:
    """The accelerator to use for a request: ``None``/``"auto"`` picks the best available; a GPU
    request on a machine without one falls back to the CPU with one warning."""
    have = available_accelerator()
    if requested in (None, "auto"):
        return have
    if requested in _GPU_NAMES and have == "cpu":
        warnings.warn(
            f"accelerator={requested!r} was requested but this machine has no GPU: training on "
            "the CPU instead (slower, same results). On Colab, choose Runtime > Change runtime "
            "type > GPU.",
            UserWarning,
            stacklevel=3,
        )
        return "cpu"
    if requested == "gpu":
        return have
    return requested


class CPUTuning(L.Callback):
    """On the CPU: channels-last convolution weights (oneDNN's fast path: a LeNet step takes
    ~16 ms instead of ~20 ms on the course's machine; outputs are the same), and the memory that
    the tuned allocator kept is released after each fit and test."""

    def _convert(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.strategy.root_device.type == "cpu":
            pl_module.to(memory_format=torch.channels_last)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._convert(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._convert(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_cpu_memory()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_cpu_memory()


def make_trainer(
    max_epochs: int,
    name: str = "default",
    log_dir: str | os.PathLike = "lightning_logs",
    **overrides: Any,
) -> L.Trainer:
    """A Lightning Trainer that runs anywhere, logging to ``<log_dir>/<name>/version_N``.

    - accelerator: the best one the machine has (CUDA, Apple MPS, CPU); ``accelerator="gpu"`` on
      a machine without a GPU falls back to the CPU with one warning instead of failing;
    - TensorBoard logger, learning rate logged every step, a progress bar that renders in a
      terminal and in a notebook;
    - no checkpoints, no sanity validation and no model summary by default (the course's models
      train in seconds; pass ``enable_checkpointing=True`` etc. to get them back);
    - on the CPU, the allocator tuning of :func:`tune_cpu_allocator` (memory released after each
      fit and test) and channels-last weights.

    Args:
        max_epochs: number of training epochs.
        name: run name: the logs go to ``<log_dir>/<name>/version_N``.
        log_dir: root folder of the TensorBoard logs.
        overrides: any other ``lightning.Trainer`` argument (``devices``, ``strategy``,
            ``logger=False``, ``callbacks``, ...).
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    accelerator = _choose_accelerator(overrides.pop("accelerator", None))
    if accelerator == "cpu":
        tune_cpu_allocator()
    logger = overrides.pop("logger", None)
    if logger is None:
        logger = TensorBoardLogger(save_dir=str(log_dir), name=name, default_hp_metric=False)
    callbacks: list[L.Callback] = [CPUTuning()]
    if overrides.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    callbacks += list(overrides.pop("callbacks", []))
    settings: dict[str, Any] = {
        "max_epochs": max_epochs,
        "accelerator": accelerator,
        "devices": 1,
        "logger": logger,
        "callbacks": callbacks,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
    }
    settings.update(overrides)
    return L.Trainer(**settings)

"""Engineering of training: devices, CPU tuning, logging, and the callbacks that watch a run.

:func:`make_trainer` builds a Lightning Trainer that runs anywhere. Its callbacks:

- on the CPU, the machine tuning of :func:`tutorial_lib.speed.cpu_tuning_callback`
  (``cpu_tuning=False`` to turn it off);
- :class:`DivergenceGuard`: stops training with :class:`TrainingDiverged` when the loss becomes
  NaN/inf or explodes, instead of training on and failing at test time;
- :class:`ReliabilityFigure`: the reliability diagram of the test set, into TensorBoard;
- :class:`HParamsSummary`: the run's hyper-parameters with its final test metrics, so that
  TensorBoard's HParams dashboard compares runs in one table.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from tutorial_lib.errors import TrainingDiverged
from tutorial_lib.speed import cpu_tuning_callback

HPARAM_METRICS = ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC", "sc/AURC")
# steps between two reads of the training loss (logging, divergence check): each read costs
# Lightning's bookkeeping and makes a GPU wait for the step (benchmarks/step_overhead.py)
LOG_EVERY_N_STEPS = 10


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


def resolved_accelerator(requested: str | None) -> str:
    """What :func:`make_trainer` will use for ``accelerator=requested``, without a warning:
    ``"cpu"``, ``"cuda"``, ``"mps"`` (or the name requested, for other Lightning accelerators)."""
    return choose_accelerator(requested, warn=False)


def choose_accelerator(requested: str | None, warn: bool = True) -> str:
    """The accelerator to use for a request: ``None``/``"auto"`` picks the best available; a GPU
    request on a machine without one falls back to the CPU with a warning. A command that trains
    several runs calls this once and hands the answer to each trainer: one notice per command."""
    have = available_accelerator()
    if requested in (None, "auto"):
        return have
    if requested in _GPU_NAMES and have == "cpu":
        if not warn:
            return "cpu"
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


class DivergenceGuard(L.Callback):
    """Stop training when the loss is NaN/inf, or above ``max(floor, factor x first loss)``.

    The loss is read every ``every`` batches and at the last batch of each epoch: reading it
    makes a GPU wait for the step to finish, and a diverged loss stays NaN or huge.

    Raises:
        TrainingDiverged: "training diverged at epoch e, step k (loss = ...): lower the learning
            rate".
    """

    def __init__(
        self,
        factor: float = 20.0,
        floor: float = 100.0,
        every: int = LOG_EVERY_N_STEPS,
        recipe: str | None = None,
    ) -> None:
        self.factor, self.floor, self.every = factor, floor, every
        self.first: float | None = None
        # what to try: the default recipe, unless it is the one that diverged
        self.remedy = "lower the learning rate (--lr)" + (
            "" if recipe == "default" else " or use the default recipe (--recipe default)"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        last = batch_idx + 1 == trainer.num_training_batches
        if loss is None or (batch_idx % self.every and not last):
            return
        value = float(loss.detach())
        if self.first is None and math.isfinite(value):
            self.first = value
        limit = max(self.floor, self.factor * (self.first or 0.0))
        if not math.isfinite(value) or value > limit:
            raise TrainingDiverged(
                f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step} "
                f"(loss = {value:.4g}, first loss {self.first or float('nan'):.4g}): "
                f"{self.remedy}."
            )


class ReliabilityFigure(L.Callback):
    """After ``trainer.test``: the test set's reliability diagram, into TensorBoard.

    The figure is drawn once, to PNG; ``png`` keeps those bytes (None before a test with a
    TensorBoard logger), so that :func:`tutorial_lib.compare.write_report` writes the same image
    to its ``plots/`` folder instead of drawing it again.
    """

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.png: bytes | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        kept = getattr(pl_module, "test_predictions", {})
        if not isinstance(trainer.logger, TensorBoardLogger) or "probs" not in kept:
            return
        if not trainer.is_global_zero:
            return
        import io

        import numpy as np
        from PIL import Image

        from tutorial_lib.plots import figure_png, reliability_diagram

        self.png = figure_png(reliability_diagram(kept["probs"], kept["targets"], title=self.title))
        with Image.open(io.BytesIO(self.png)) as image:
            pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        trainer.logger.experiment.add_image("test/reliability_diagram", pixels,
                                            trainer.global_step, dataformats="HWC")  # fmt: skip


class HParamsSummary(L.Callback):
    """After ``trainer.test``: the routine's hyper-parameters, ``extra`` ones (model name, seed,
    data set...) and the final test metrics (``hparams/Acc``, ...), as one HParams record."""

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        self.extra = dict(extra or {})

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", {})
        if not trainer.logger or not results or not trainer.is_global_zero:
            return
        params = {**dict(pl_module.hparams), **self.extra}
        metrics = {f"hparams/{k.split('/', 1)[1]}": results[k]
                   for k in HPARAM_METRICS if k in results}  # fmt: skip
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        trainer.logger.log_hyperparams(params, metrics=metrics)
        # the logger writes hparams.yaml only once, empty, at the start of the fit: rewrite it
        save_hparams_to_yaml(os.path.join(trainer.logger.log_dir, "hparams.yaml"), params)


_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed")  # fmt: skip


def _quiet_lightning() -> None:
    """Silence Lightning's start-up banners ("GPU available...", "Tip: ..."), the torch pytree
    deprecation that Lightning 2.6 triggers on every fit and its warning that an epoch has fewer
    batches than the logging interval: nothing a course user can act on."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # short fits (fewer batches than log_every_n_steps) still log: the step counter runs on
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller")


def make_trainer(
    max_epochs: int,
    name: str = "default",
    log_dir: str | os.PathLike = "lightning_logs",
    version: str | None = None,
    title: str = "",
    hparams: Mapping[str, Any] | None = None,
    cpu_tuning: bool = True,
    recipe: str | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A Lightning Trainer that runs anywhere, logging to ``<log_dir>/<name>/<version>``.

    - accelerator: the best one the machine has (CUDA, Apple MPS, CPU); ``accelerator="gpu"`` on
      a machine without a GPU falls back to the CPU with one warning instead of failing;
    - TensorBoard logger (training loss and learning rate every 10 steps, the reliability
      diagram and an HParams record with the final metrics after ``trainer.test``); a progress
      bar only on a terminal (none in notebooks or logs written to a file), no start-up banners;
    - :class:`DivergenceGuard`: a NaN or exploding loss stops the fit with a clear message;
    - no checkpoints, no sanity validation and no model summary by default (the course's models
      train in seconds; pass ``enable_checkpointing=True`` etc. to get them back);
    - ``cpu_tuning`` (on by default): on the CPU, :func:`tutorial_lib.speed.cpu_tuning_callback`.

    Args:
        max_epochs: number of training epochs.
        name: the logs go to ``<log_dir>/<name>/<version>``.
        log_dir: root folder of the TensorBoard logs.
        version: run folder (default: ``version_N``, the next free number).
        title: title of the TensorBoard figures.
        hparams: extra hyper-parameters for the HParams record (model name, seed, ...).
        cpu_tuning: apply :func:`tutorial_lib.speed.cpu_tuning_callback` on the CPU.
        recipe: the optimisation recipe trained with (the divergence message suggests the
            default recipe only when another one diverged).
        overrides: any other ``lightning.Trainer`` argument (``devices``, ``strategy``,
            ``logger=False``, ``callbacks``, ``enable_progress_bar``...).
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    _quiet_lightning()
    accelerator = choose_accelerator(overrides.pop("accelerator", None))
    cpu_tuning = cpu_tuning and accelerator == "cpu"
    logger = overrides.pop("logger", None)
    if logger is None:
        logger = TensorBoardLogger(save_dir=str(log_dir), name=name, version=version,
                                   default_hp_metric=False)  # fmt: skip
    progress = overrides.pop("enable_progress_bar", None)
    progress = sys.stderr.isatty() if progress is None else progress
    callbacks: list[L.Callback] = [DivergenceGuard(recipe=recipe)]
    if cpu_tuning:
        callbacks.append(cpu_tuning_callback())
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if logger:
        callbacks += [LearningRateMonitor(logging_interval="step"), ReliabilityFigure(title),
                      HParamsSummary(hparams)]  # fmt: skip
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
        "log_every_n_steps": LOG_EVERY_N_STEPS,
        "enable_progress_bar": progress,
    }
    settings.update(overrides)
    return L.Trainer(**settings)

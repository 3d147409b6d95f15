"""ClassificationRoutine: the science of training and evaluating a classifier or an ensemble.

The routine holds the model, the loss, the optimisation recipe and the metrics; the Trainer
(:func:`tutorial_lib.trainer.make_trainer`) holds the engineering (devices, logging). The
argument names follow the reference library's routine, so the course code reads the same.

Evaluation: ``trainer.test(routine, dataloaders=[id_loader, ood_loader])`` (or a datamodule whose
``test_dataloader`` returns that list) computes every metric of :mod:`tutorial_lib.metrics`,
logs them (``test/...``) and keeps

- ``routine.test_results``: the flat ``{key: value}`` dict of metrics;
- ``routine.test_predictions``: ``probs`` and ``logits`` (N, M, C), ``targets`` (N,),
  ``ood_probs`` and ``ood_logits`` (N', M, C) and, with ``eval_grouping_loss``, ``features``
  (N, M, F), all on the CPU, so that notebooks plot without running inference again.

Validation (``trainer.fit`` with a validation loader) logs ``val/Acc``, ``val/NLL`` and ``val/ECE``
every epoch and keeps the last epoch's predictions in ``routine.val_predictions``: ``probs``
(N, M, C) and ``targets`` (N,) on the CPU, with ``step``, the global step they were made at (the
temperature of :mod:`tutorial_lib.calibration` is fitted on them without predicting again).

The routine only computes: showing reports is the caller's job (:func:`tutorial_lib.report.show`),
and the trainer's callbacks draw the TensorBoard figures (:mod:`tutorial_lib.trainer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.utilities.data import dim_zero_cat

from tutorial_lib.metrics import UncertaintyMetrics, complexity, grouping_loss
from tutorial_lib.metrics.calibration import CalibrationError
from tutorial_lib.metrics.classification import NegativeLogLikelihood
from tutorial_lib.recipes import Recipe, resolve_recipe


class PredictionStore(Metric):
    """Keeps the test predictions (synchronised across processes like any metric state)."""

    full_state_update = False
    NAMES = ("probs", "logits", "targets", "features", "ood_probs", "ood_logits")

    def __init__(self) -> None:
        super().__init__()
        for name in self.NAMES:
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(self, **tensors: Tensor) -> None:
        for name, value in tensors.items():
            getattr(self, name).append(value.detach())

    def compute(self) -> dict[str, Tensor]:
        out = {}
        for name in self.NAMES:
            values = getattr(self, name)
            if isinstance(values, Tensor) or len(values):
                out[name] = dim_zero_cat(values).cpu()
        return out


def to_input_major(rows: Tensor, batch_size: int) -> Tensor:
    """Estimator-major rows (M*B, F) -> input-major (B, M, F): ``out[i, m] = rows[m*B + i]``."""
    return rows.reshape(-1, batch_size, rows.shape[-1]).transpose(0, 1)


@torch.no_grad()
def predict(model: nn.Module, loader, features: bool = False) -> dict[str, Tensor]:
    """Run ``model`` over ``(inputs, targets)`` batches without Lightning, in eval mode.

    Returns:
        ``probs`` and ``logits`` (N, M, C) and ``targets`` (N,) on the CPU, plus ``features``
        (N, M, F) from
        ``model.feats_forward`` when asked.
    """
    model.eval()
    device = next(model.parameters()).device
    kept: dict[str, list[Tensor]] = {"probs": [], "logits": [], "targets": [], "features": []}
    for inputs, targets in loader:
        inputs = inputs.to(device)
        logits = to_input_major(model(inputs).float(), inputs.shape[0]).cpu()
        kept["logits"].append(logits)
        kept["probs"].append(logits.softmax(-1))
        kept["targets"].append(targets.cpu())
        if features:
            kept["features"].append(
                to_input_major(model.feats_forward(inputs), inputs.shape[0]).cpu()
            )
    return {k: torch.cat(v) for k, v in kept.items() if v}


class ClassificationRoutine(L.LightningModule):
    """Train and evaluate a classifier, or an ensemble whose outputs are estimator-major.

    Args:
        model: maps (B, ...) to logits (B, C), or (M*B, C) for an ensemble.
        num_classes: C.
        loss: training loss on (logits, targets); cross-entropy by default.
        optim_recipe: ``"default"``, ``"reference"``, a callable ``(model, total_steps) -> dict``
            or a dict with ``optimizer`` and ``lr_scheduler`` (the reference's ``scheduler`` key
            is accepted and applied, with a warning): see :mod:`tutorial_lib.recipes`. ``None``
            means the default recipe.
        is_ensemble: the model outputs (M*B, C); compute the diversity metrics.
        format_batch_fn: applied to ``(inputs, targets)`` before the training loss, e.g.
            :class:`~tutorial_lib.ensembles.RepeatTarget` for an ensemble.
        eval_ood: the test's second dataloader is the OOD set.
        eval_grouping_loss: also estimate the grouping loss (needs ``model.feats_forward``).
        eval_complexity: add parameter and FLOP counts to the test results.
        lr_mult: learning-rate multiplier passed to named recipes (see :mod:`tutorial_lib.recipes`).
        lr: peak learning rate of a named recipe (``None``: the recipe's own).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        loss: nn.Module | None = None,
        optim_recipe: str | Recipe | dict[str, Any] | None = None,
        is_ensemble: bool = False,
        format_batch_fn: Callable[[tuple[Tensor, Tensor]], tuple[Tensor, Tensor]] | None = None,
        eval_ood: bool = False,
        eval_grouping_loss: bool = False,
        eval_complexity: bool = True,
        lr_mult: float = 1.0,
        lr: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
        if eval_grouping_loss and not hasattr(model, "feats_forward"):
            raise ValueError("eval_grouping_loss needs a model with a feats_forward method.")
        self.model = model
        self.num_classes = num_classes
        self.loss = loss if loss is not None else nn.CrossEntropyLoss()
        self.optim_recipe = optim_recipe
        self.is_ensemble, self.format_batch_fn = is_ensemble, format_batch_fn
        self.eval_ood, self.eval_grouping_loss = eval_ood, eval_grouping_loss
        self.eval_complexity, self.lr_mult, self.lr = eval_complexity, lr_mult, lr
        recipe_name = optim_recipe if isinstance(optim_recipe, str) else None
        self.save_hyperparameters(
            {
                "model": type(model).__name__,
                "params": sum(p.numel() for p in model.parameters()),
                "num_classes": num_classes,
                "is_ensemble": is_ensemble,
                "recipe": recipe_name or ("default" if optim_recipe is None else "custom"),
                "lr_mult": lr_mult,
                "lr": lr if lr is not None else "recipe default",
                "eval_ood": eval_ood,
                "eval_grouping_loss": eval_grouping_loss,
            },
            logger=False,  # the trainer's HParamsSummary logs them once, with the final metrics
        )
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_nll = NegativeLogLikelihood()
        self.val_ece = CalibrationError(15)
        self.test_metrics = UncertaintyMetrics(num_classes, ensemble=is_ensemble, ood=eval_ood)
        self.store = PredictionStore()
        self.val_kept: list[tuple[Tensor, Tensor]] = []
        self.val_predictions: dict[str, Any] = {}
        self.test_results: dict[str, float] = {}
        self.test_predictions: dict[str, Tensor] = {}
        self.grouping_loss_parts: dict[str, float] = {}

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> logits (B, C) or (M*B, C)."""
        return self.model(x)

    def configure_optimizers(self):
        total = int(self.trainer.estimated_stepping_batches) if self._trainer else 1
        return resolve_recipe(self.optim_recipe, self.model, total, self.lr_mult, self.lr)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.format_batch_fn is not None:
            batch = self.format_batch_fn(batch)
        inputs, targets = batch
        loss = self.loss(self.model(inputs), targets)
        if self._writes_step_logs():
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def _writes_step_logs(self) -> bool:
        """Whether the trainer writes step metrics after this step (every ``log_every_n_steps``
        optimiser steps). Logging a value that it would not write costs Lightning's bookkeeping
        at every step, as much as a LeNet step's compute on a GPU (``benchmarks/RESULTS.md``)."""
        trainer = self._trainer
        if trainer is None:
            return True
        every = trainer.log_every_n_steps  # 0: the trainer writes no step metrics
        return bool(every) and (trainer.global_step + 1) % every == 0

    def _member_logits(self, inputs: Tensor) -> Tensor:
        """(B, ...) -> per-member logits, input-major (B, M, C) float32."""
        logits = to_input_major(self.model(inputs).float(), inputs.shape[0])
        if not self.is_ensemble and logits.shape[1] != 1:
            raise ValueError(
                f"The model returned {logits.shape[1]} rows per input: pass is_ensemble=True."
            )
        return logits

    def _member_probs(self, inputs: Tensor) -> Tensor:
        return self._member_logits(inputs).softmax(-1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        inputs, targets = batch
        probs = self._member_probs(inputs)
        mean = probs.mean(1)
        self.val_kept.append((probs, targets))  # to the CPU once, at the epoch's end
        self.val_acc.update(mean, targets)
        self.val_nll.update(mean, targets)
        self.val_ece.update(mean, targets)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(
            {
                "val/Acc": self.val_acc.compute(),
                "val/NLL": self.val_nll.compute().float(),
                "val/ECE": self.val_ece.compute(),
            },
            prog_bar=True,
        )
        for metric in (self.val_acc, self.val_nll, self.val_ece):
            metric.reset()
        kept, self.val_kept = self.val_kept, []
        if kept and not (self._trainer and self._trainer.sanity_checking):
            self.val_predictions = {
                "probs": torch.cat([p for p, _ in kept]).cpu(),
                "targets": torch.cat([t for _, t in kept]).cpu(),
                "step": self.global_step,
            }

    def test_step(
        self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        inputs, targets = batch
        logits = self._member_logits(inputs)
        probs = logits.softmax(-1)
        features = None
        if self.eval_grouping_loss and dataloader_idx == 0:
            features = to_input_major(self.model.feats_forward(inputs), inputs.shape[0])
        if dataloader_idx == 0:
            self.test_metrics.update(probs, targets)
            kept = {"probs": probs, "logits": logits, "targets": targets}
            if features is not None:
                kept["features"] = features
            self.store.update(**kept)
        elif dataloader_idx == 1 and self.eval_ood:
            self.test_metrics.update_ood(probs)
            self.store.update(ood_probs=probs, ood_logits=logits)
        else:
            raise ValueError(
                f"Test dataloader {dataloader_idx} is not expected: pass [ID] or, with "
                "eval_ood=True, [ID, OOD]."
            )

    def on_test_epoch_end(self) -> None:
        results = self.test_metrics.compute()
        self.test_predictions = self.store.compute()
        if self.eval_grouping_loss:
            kept = self.test_predictions
            self.grouping_loss_parts = grouping_loss(
                kept["probs"], kept["targets"], kept["features"]
            )
            results["cal/GL"] = self.grouping_loss_parts["GL"]
        if self.eval_complexity:
            cost = complexity(self.model)
            results |= {f"cplx/{k}": float(cost[k]) for k in ("params", "flops_per_image")}
        self.log_dict({f"test/{k}": v for k, v in results.items()})
        self.test_results = results
        self.test_metrics.reset()
        self.store.reset()

"""Every metric of the course in one place: a streaming collection and a one-call function.

Keys (values are fractions, never percentages):

- ``cls/Acc``, ``cls/Brier``, ``cls/NLL``, ``cls/Entropy`` (predictive entropy H(p̄)) on the mean
  probabilities p̄;
- ``cal/ECE``, ``cal/MCE`` (15 equal-width bins), ``cal/aECE`` (15 equal-mass bins);
- ``sc/AURC``, ``sc/AUGRC``, ``sc/Cov@5Risk``, ``sc/Cov@1Risk``, ``sc/Risk@80Cov`` (selective
  classification);
- with an OOD set: ``ood/AUROC``, ``ood/AUPR``, ``ood/FPR95``, ``ood/Entropy``;
- for ensembles (M >= 2): ``ens/Disagreement``, ``ens/Entropy`` (expected entropy, the members'
  mean H(p_m)), ``ens/MI`` on the ID set, and ``ood/ens_Disagreement``, ``ood/ens_Entropy``,
  ``ood/ens_MI`` on the OOD set.

Each key's label, direction, format and definition: :mod:`tutorial_lib.metric_registry`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from tutorial_lib.metric_registry import METRICS
from tutorial_lib.metrics.calibration import AdaptiveCalibrationError, CalibrationError
from tutorial_lib.metrics.classification import BrierScore, MeanEntropy, NegativeLogLikelihood
from tutorial_lib.metrics.diversity import EnsembleDiversity
from tutorial_lib.metrics.ood import OODDetection
from tutorial_lib.metrics.selective import RiskCoverage
from tutorial_lib.metrics.validation import check_probs, check_targets

N_BINS = 15

# True: higher is better; False: lower is better; absent: neither (descriptive). From each
# metric's entry in tutorial_lib.metric_registry, which the reports read too.
HIGHER_IS_BETTER: dict[str, bool] = {
    key: metric.higher_is_better
    for key, metric in METRICS.items()
    if metric.higher_is_better is not None
}


class UncertaintyMetrics(nn.Module):
    """All metrics, streamed batch by batch (and synchronised across processes under DDP).

    Every update must have the same number of members M (the first update sets it): the ID and
    OOD sets of one model, batch after batch.

    Args:
        num_classes: number of classes C.
        ensemble: also compute the diversity metrics (needs M >= 2 members in every update).
        ood: also compute the OOD-detection metrics (feed the OOD set through ``update_ood``).
        risk_levels, coverage_level: levels of ``sc/Cov@xRisk`` and ``sc/Risk@xCov``.
    """

    def __init__(
        self,
        num_classes: int,
        ensemble: bool = False,
        ood: bool = False,
        risk_levels: tuple[float, ...] = (0.05, 0.01),
        coverage_level: float = 0.8,
    ) -> None:
        super().__init__()
        self.num_classes, self.ensemble, self.ood = num_classes, ensemble, ood
        self.members: int | None = None
        self.acc = MulticlassAccuracy(num_classes, average="micro")
        self.brier, self.nll, self.entropy = BrierScore(), NegativeLogLikelihood(), MeanEntropy()
        self.ece = CalibrationError(N_BINS, norm="l1")
        self.mce = CalibrationError(N_BINS, norm="max")
        self.aece = AdaptiveCalibrationError(N_BINS)
        self.selective = RiskCoverage(risk_levels, coverage_level)
        if ensemble:
            self.diversity = EnsembleDiversity()
        if ood:
            self.detection = OODDetection()
            self.ood_entropy = MeanEntropy()
            if ensemble:
                self.ood_diversity = EnsembleDiversity()

    def _mean(self, probs: Tensor, name: str) -> tuple[Tensor, Tensor]:
        probs = check_probs(probs, name)
        if self.ensemble and probs.shape[1] < 2:
            raise ValueError(
                f"An ensemble's {name} must be (N, M >= 2, C), got M = {probs.shape[1]}."
            )
        if probs.shape[-1] != self.num_classes:
            raise ValueError(f"{name} has {probs.shape[-1]} classes, expected {self.num_classes}.")
        if self.members is None:
            self.members = probs.shape[1]
        elif probs.shape[1] != self.members:
            raise ValueError(
                f"{name} has M = {probs.shape[1]} members, earlier updates had M = "
                f"{self.members}: the ID and OOD predictions of one model must have the same "
                "layout, (N, C) or (N, M, C)."
            )
        return probs, probs.mean(1)

    @torch.no_grad()
    def update(self, probs: Tensor, targets: Tensor) -> None:
        """One batch of the ID test set: probs (B, C) or (B, M, C), targets (B,)."""
        probs, mean = self._mean(probs, "probs")
        targets = check_targets(targets, mean.shape[0], self.num_classes).to(mean.device)
        for metric in (
            self.acc,
            self.brier,
            self.nll,
            self.ece,
            self.mce,
            self.aece,
            self.selective,
        ):
            metric.update(mean, targets)
        self.entropy.update(mean)
        if self.ensemble:
            self.diversity.update(probs)
        if self.ood:
            self.detection.update(mean.max(-1).values, False)

    @torch.no_grad()
    def update_ood(self, probs: Tensor) -> None:
        """One batch of the OOD set: probs (B, C) or (B, M, C) (its labels are not used)."""
        if not self.ood:
            raise ValueError("This collection was built with ood=False.")
        probs, mean = self._mean(probs, "ood_probs")
        self.detection.update(mean.max(-1).values, True)
        self.ood_entropy.update(mean)
        if self.ensemble:
            self.ood_diversity.update(probs)

    def compute(self) -> dict[str, float]:
        """The flat dictionary of every metric that applies."""
        out = {
            "cls/Acc": self.acc.compute(),
            "cls/Brier": self.brier.compute(),
            "cls/NLL": self.nll.compute(),
            "cls/Entropy": self.entropy.compute(),
            "cal/ECE": self.ece.compute(),
            "cal/MCE": self.mce.compute(),
            "cal/aECE": self.aece.compute(),
        }
        out |= {f"sc/{k}": v for k, v in self.selective.compute().items()}
        if self.ood:
            out |= {f"ood/{k}": v for k, v in self.detection.compute().items()}
            out["ood/Entropy"] = self.ood_entropy.compute()
        if self.ensemble:
            out |= {f"ens/{k}": v for k, v in self.diversity.compute().items()}
            if self.ood:
                out |= {f"ood/ens_{k}": v for k, v in self.ood_diversity.compute().items()}
        out = {k: float(v) for k, v in out.items()}
        if math.isinf(out["cls/NLL"]):
            warnings.warn(
                "NLL is infinite: some true class got probability 0 (an over-confident model, "
                "or probabilities rounded in low precision).",
                RuntimeWarning,
                stacklevel=2,
            )
        return out

    def reset(self) -> None:
        self.members = None
        for module in self.children():
            module.reset()


def evaluate_predictions(
    probs: Tensor, targets: Tensor, ood_probs: Tensor | None = None
) -> dict[str, float]:
    """Every metric that applies to these predictions.

    Args:
        probs: (N, C) or (N, M, C) probabilities on the ID test set.
        targets: (N,) labels.
        ood_probs: (N', C) or (N', M, C) probabilities on the OOD set, or None.

    Returns:
        A flat ``{key: value}`` dict (see the module docstring); ``ens/`` keys only when M >= 2,
        ``ood/`` keys only with ``ood_probs``.
    """
    probs = check_probs(probs)
    metrics = UncertaintyMetrics(
        probs.shape[-1], ensemble=probs.shape[1] >= 2, ood=ood_probs is not None
    )
    metrics.update(probs, targets)
    if ood_probs is not None:
        metrics.update_ood(ood_probs)
    return metrics.compute()

"""Selective classification: the risk-coverage curve and its summaries.

Order the samples by confidence, most confident first; the risk at coverage k/N is the error rate
among the k most confident, ``r_k``. A model that knows when it is wrong has low risk at low
coverage.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from tutorial_lib.metrics.ranking import tie_group_ends


def risk_coverage_curve(conf: Tensor, errors: Tensor) -> tuple[Tensor, Tensor]:
    """Coverages k/N and risks r_k for k = 1..N.

    Args:
        conf: (N,) confidences (higher = more trusted).
        errors: (N,) 1.0 where the prediction is wrong.

    Returns:
        ``coverage`` (N,) and ``risk`` (N,), float64.
    """
    n = conf.shape[0]
    order = torch.sort(conf, descending=True, stable=True).indices
    k = torch.arange(1, n + 1, dtype=torch.float64, device=conf.device)
    return k / n, errors[order].double().cumsum(0) / k


def _trapezoid_mean(x: Tensor, y: Tensor) -> float:
    return float(torch.trapezoid(y, x) / (1 - 1 / x.shape[0]))


def aurc(coverage: Tensor, risk: Tensor) -> float:
    """Trapezoidal area under r_k over coverage k/N, k = 1..N, divided by (1 - 1/N)."""
    return _trapezoid_mean(coverage, risk)


def excess_aurc(coverage: Tensor, risk: Tensor) -> float:
    """E-AURC: the AURC minus that of an oracle ranking with the same errors (every error ranked
    last). It separates how well confidence ranks errors from how many errors there are."""
    n, errors = risk.shape[0], risk * coverage * risk.shape[0]  # k * r_k: errors among the top k
    wrong = round(float(errors[-1]))
    oracle = torch.zeros(n, dtype=torch.float64, device=risk.device)
    oracle[n - wrong :] = 1.0
    k = torch.arange(1, n + 1, dtype=torch.float64, device=risk.device)
    return aurc(coverage, risk) - aurc(coverage, oracle.cumsum(0) / k)


def augrc(coverage: Tensor, risk: Tensor) -> float:
    """The same area for the generalised risk (k/N) r_k (the fraction of silent failures)."""
    return _trapezoid_mean(coverage, coverage * risk)


def coverage_at_risk(coverage: Tensor, risk: Tensor, level: float = 0.05) -> float:
    """The largest coverage k/N with r_k <= level (NaN if none)."""
    ok = torch.nonzero(risk <= level).flatten()
    return float(coverage[ok[-1]]) if ok.numel() else math.nan


def risk_at_coverage(coverage: Tensor, risk: Tensor, level: float = 0.8) -> float:
    """r_k at k = ceil(level * N)."""
    return float(risk[math.ceil(level * coverage.shape[0]) - 1])


def threshold_for_risk(conf: Tensor, errors: Tensor, target_risk: float) -> float:
    """The lowest confidence threshold whose accepted set keeps its risk <= ``target_risk``.

    Meant for held-out data: accept an input when its confidence is >= the threshold. Thresholds
    sit between distinct confidences (a threshold cannot split ties).

    Args:
        conf: (N,) confidences; errors: (N,) 1.0 where the prediction is wrong.

    Returns:
        The threshold, or ``inf`` (reject everything) when no threshold reaches the risk.

    Raises:
        ValueError: empty or mismatched inputs, or a target risk outside [0, 1].
    """
    if conf.numel() == 0 or conf.shape != errors.shape:
        raise ValueError(f"threshold_for_risk needs conf and errors of the same non-empty shape, "
                         f"got {tuple(conf.shape)} and {tuple(errors.shape)}.")  # fmt: skip
    if not 0 <= target_risk <= 1:
        raise ValueError(f"target_risk must be in [0, 1], got {target_risk}.")
    order = torch.sort(conf, descending=True, stable=True).indices
    sorted_conf = conf[order]
    risk = errors[order].double().cumsum(0) / torch.arange(1, conf.numel() + 1, device=conf.device)
    ends = tie_group_ends(sorted_conf)
    ok = ends[risk[ends] <= target_risk]
    return float(sorted_conf[ok[-1]]) if ok.numel() else math.inf


class RiskCoverage(Metric):
    """Streaming AURC, AUGRC, Cov@xRisk and Risk@xCov (stores confidences and errors).

    Args:
        risk_levels: the risks of ``Cov@{risk}Risk`` (0.05 gives ``Cov@5Risk``). On MNIST, whose
            error rate is near 1 %, every model keeps 100 % coverage at 5 % risk: the tighter
            ``Cov@1Risk`` is the informative one there.
        coverage_level: the coverage of ``Risk@{cov}Cov`` (0.8 gives ``Risk@80Cov``).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self, risk_levels: tuple[float, ...] = (0.05, 0.01), coverage_level: float = 0.8, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        for value in (*risk_levels, coverage_level):
            if not 0 < value <= 1:
                raise ValueError(f"risk and coverage levels must be in (0, 1], got {value}.")
        self.risk_levels, self.coverage_level = tuple(risk_levels), coverage_level
        self.add_state("conf", [], dist_reduce_fx="cat")
        self.add_state("errors", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        """probs: (N, C) mean probabilities; targets: (N,)."""
        conf, pred = probs.max(-1)
        self.conf.append(conf)
        self.errors.append((pred != targets).to(conf.dtype))

    def compute(self) -> dict[str, float]:
        conf, errors = dim_zero_cat(self.conf), dim_zero_cat(self.errors)
        if conf.shape[0] < 2:
            raise ValueError(f"Risk-coverage metrics need N >= 2 samples, got {conf.shape[0]}.")
        coverage, risk = risk_coverage_curve(conf, errors)
        out = {"AURC": aurc(coverage, risk), "E-AURC": excess_aurc(coverage, risk),
               "AUGRC": augrc(coverage, risk)}  # fmt: skip
        for level in self.risk_levels:
            out[f"Cov@{round(level * 100):d}Risk"] = coverage_at_risk(coverage, risk, level)
        out[f"Risk@{round(self.coverage_level * 100):d}Cov"] = risk_at_coverage(
            coverage, risk, self.coverage_level
        )
        return out

"""Calibration: adaptive (equal-mass) ECE. Equal-width ECE and MCE come from torchmetrics.

``torchmetrics.classification.MulticlassCalibrationError(n_bins=15, norm="l1" | "max")`` computes
the top-label ECE / MCE of the course's definition: 15 equal-width bins, a confidence of exactly
1.0 in a bin of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


def adaptive_calibration_error(conf: Tensor, correct: Tensor, n_bins: int = 15) -> Tensor:
    """aECE from top-label confidences (N,) and correctness (N,) in {0, 1}.

    Samples sorted by confidence ascending are cut into ``n_bins`` chunks of equal count (the
    first ``N mod n_bins`` chunks get one more sample); aECE = sum_b (n_b/N) |acc_b - conf_b|.
    """
    order = torch.sort(conf, stable=True).indices
    conf, correct = conf[order].double(), correct[order].double()
    total = conf.new_zeros(())
    for c, a in zip(conf.tensor_split(n_bins), correct.tensor_split(n_bins), strict=True):
        if c.numel():
            total += c.numel() * (a.mean() - c.mean()).abs()
    return total / conf.numel()


class AdaptiveCalibrationError(Metric):
    """Streaming aECE: stores confidences and correctness, bins them at ``compute``."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, n_bins: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
        self.n_bins = n_bins
        self.add_state("conf", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        """probs: (N, C) mean probabilities; targets: (N,)."""
        conf, pred = probs.max(-1)
        self.conf.append(conf)
        self.correct.append((pred == targets).to(conf.dtype))

    def compute(self) -> Tensor:
        return adaptive_calibration_error(
            dim_zero_cat(self.conf), dim_zero_cat(self.correct), self.n_bins
        )

"""Calibration: top-label ECE and MCE over equal-width bins, and adaptive (equal-mass) ECE.

:func:`calibration_bins` is the binning of the course's definition (the one of
``torchmetrics.classification.MulticlassCalibrationError``): 15 equal-width bins, a confidence
of exactly 1.0 in a bin of its own. :class:`CalibrationError` computes ECE and MCE from it in
float64, and the reliability diagram draws the same bins, so the ECE in a diagram's title is the
ECE of the tables.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


def calibration_bins(
    conf: Tensor, correct: Tensor, n_bins: int = 15
) -> tuple[Tensor, Tensor, Tensor]:
    """Equal-width confidence bins, as torchmetrics' calibration error bins them.

    Bin ``b`` holds the confidences in ``[b/n, (b+1)/n)``; a confidence of exactly 1.0 gets bin
    ``n`` of its own.

    Args:
        conf: (N,) top-label confidences in [0, 1].
        correct: (N,) 1 where the prediction is right, else 0.

    Returns:
        ``counts``, ``accuracy`` and ``confidence`` per bin, each (n_bins + 1,) in ``conf``'s
        floating dtype (accuracy and confidence 0 in empty bins). ECE =
        ``sum(counts * |accuracy - confidence|) / N``.
    """
    if conf.numel() == 0 or conf.shape != correct.shape:
        raise ValueError(f"calibration_bins needs conf and correct of the same non-empty shape, "
                         f"got {tuple(conf.shape)} and {tuple(correct.shape)}.")  # fmt: skip
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    index = torch.bucketize(conf, edges, right=True) - 1
    counts = torch.zeros(n_bins + 1, dtype=conf.dtype, device=conf.device)
    counts.scatter_add_(0, index, torch.ones_like(conf))
    sums = torch.zeros_like(counts).scatter_add_(0, index, conf)
    hits = torch.zeros_like(counts).scatter_add_(0, index, correct.to(conf.dtype))
    safe = counts.clamp(min=1)
    return counts, hits / safe, sums / safe


def adaptive_calibration_error(conf: Tensor, correct: Tensor, n_bins: int = 15) -> Tensor:
    """aECE from top-label confidences (N,) and correctness (N,) in {0, 1}.

    Samples sorted by confidence ascending are cut into ``n_bins`` chunks of equal count (the
    first ``N mod n_bins`` chunks get one more sample); aECE = sum_b (n_b/N) |acc_b - conf_b|.

    Raises:
        ValueError: no samples, or shapes that differ.
    """
    if conf.numel() == 0 or conf.shape != correct.shape:
        raise ValueError(f"aECE needs conf and correct of the same non-empty shape, got "
                         f"{tuple(conf.shape)} and {tuple(correct.shape)}.")  # fmt: skip
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


class CalibrationError(Metric):
    """Streaming top-label ECE (``norm="l1"``: bin gaps weighted by bin counts) or MCE
    (``norm="max"``: the largest gap), over :func:`calibration_bins`."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, n_bins: int = 15, norm: str = "l1", **kwargs) -> None:
        super().__init__(**kwargs)
        if n_bins < 1 or norm not in ("l1", "max"):
            raise ValueError(f"n_bins must be >= 1 and norm 'l1' or 'max', got {n_bins}, {norm!r}.")
        self.n_bins, self.norm = n_bins, norm
        self.add_state("conf", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        """probs: (N, C) mean probabilities; targets: (N,)."""
        conf, pred = probs.max(-1)
        self.conf.append(conf.double())
        self.correct.append((pred == targets).double())

    def compute(self) -> Tensor:
        counts, acc, conf = calibration_bins(
            dim_zero_cat(self.conf), dim_zero_cat(self.correct), self.n_bins
        )
        gaps = (acc - conf).abs()
        return (counts * gaps).sum() / counts.sum() if self.norm == "l1" else gaps.max()

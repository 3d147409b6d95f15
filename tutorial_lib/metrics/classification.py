"""Classification metrics on the ensemble's mean probabilities: Brier score, NLL, entropy.

Accuracy comes from torchmetrics (:class:`torchmetrics.classification.MulticlassAccuracy`).
Every metric here streams: ``update`` per batch adds to summed states, ``compute`` divides.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy (natural log) over the last dimension: (..., C) -> (...)."""
    return torch.special.entr(probs).sum(-1)


class _MeanOverSamples(Metric):
    """Mean over samples of a per-sample value; subclasses define ``per_sample``."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: Tensor, targets: Tensor | None = None) -> None:
        """probs: (N, C) mean probabilities; targets: (N,) labels where the metric needs them."""
        values = self.per_sample(probs.double(), targets)
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        return self.total / self.count


class BrierScore(_MeanOverSamples):
    """(1/N) sum_i sum_c (p_ic - 1[c = y_i])^2, summed over classes (not divided by C)."""

    higher_is_better = False

    def per_sample(self, probs: Tensor, targets: Tensor) -> Tensor:
        one_hot = torch.nn.functional.one_hot(targets, probs.shape[-1]).double()
        return (probs - one_hot).square().sum(-1)


class NegativeLogLikelihood(_MeanOverSamples):
    """(1/N) sum_i -log p_{i, y_i}."""

    higher_is_better = False

    def per_sample(self, probs: Tensor, targets: Tensor) -> Tensor:
        return -probs.gather(1, targets[:, None]).squeeze(1).log()


class MeanEntropy(_MeanOverSamples):
    """Mean over samples of the entropy of the (mean) prediction, H(p̄)."""

    higher_is_better = None

    def per_sample(self, probs: Tensor, targets: Tensor | None = None) -> Tensor:
        return entropy(probs)

"""Ensemble diversity (M >= 2): disagreement, expected entropy (aleatoric), mutual information.

Total uncertainty splits as H(p̄) = (1/M) sum_m H(p_m) + MI: the members' average entropy is the
aleatoric part; what remains, the mutual information, is the epistemic part (the members disagree).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from tutorial_lib.metrics.classification import entropy


def disagreement(probs: Tensor) -> Tensor:
    """Per-sample fraction of member pairs whose argmax differ: (N, M, C) -> (N,).

    1 - sum_c C(n_c, 2) / C(M, 2), with n_c the number of members predicting class c.

    Raises:
        ValueError: not (N, M, C) with M >= 2 (one member has no pair to disagree with).
    """
    if probs.ndim != 3 or probs.shape[1] < 2:
        raise ValueError(f"disagreement needs (N, M >= 2, C) probabilities, got "
                         f"{tuple(probs.shape)}.")  # fmt: skip
    m, c = probs.shape[1], probs.shape[2]
    counts = torch.nn.functional.one_hot(probs.argmax(-1), c).sum(1).double()  # (N, C)
    return 1 - (counts * (counts - 1) / 2).sum(-1) / (m * (m - 1) / 2)


class EnsembleDiversity(Metric):
    """Streaming means of disagreement, expected entropy and mutual information.

    ``update(probs)`` takes per-member probabilities (N, M, C); ``compute`` returns
    ``{"Disagreement", "Entropy", "MI"}``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("disagreement", "expected_entropy", "mutual_information"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: Tensor) -> None:
        if probs.ndim != 3 or probs.shape[1] < 2:
            raise ValueError(
                f"Diversity needs (N, M >= 2, C) probabilities, got {tuple(probs.shape)}."
            )
        probs = probs.double()
        expected = entropy(probs).mean(1)
        self.disagreement += disagreement(probs).sum()
        self.expected_entropy += expected.sum()
        self.mutual_information += (entropy(probs.mean(1)) - expected).sum()
        self.count += probs.shape[0]

    def compute(self) -> dict[str, Tensor]:
        return {
            "Disagreement": self.disagreement / self.count,
            "Entropy": self.expected_entropy / self.count,
            "MI": self.mutual_information / self.count,
        }

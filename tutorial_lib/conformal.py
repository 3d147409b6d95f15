"""Split conformal prediction: sets of classes that contain the truth with a guaranteed frequency.

Given a calibration set the model never trained on (the validation split), a score that says how
badly each calibration label fits, and a level ``alpha``, split conformal prediction returns for
each test input the set of classes whose score is at most the calibration scores'
``ceil((n + 1)(1 - alpha)) / n`` empirical quantile. If calibration and test data are
exchangeable (drawn alike), the set contains the true class with probability at least
``1 - alpha``, whatever the model (Vovk et al., 2005; Angelopoulos & Bates, 2021). Under
distribution shift they are not exchangeable, and the guarantee no longer holds.

Three scores, for probabilities ``p`` (N, C):

- ``"thr"`` (threshold, LAC; Sadinle et al., 2019): ``1 - p_y``. Smallest sets on average; it may
  return an empty set for an input on which every class is unlikely.
- ``"aps"`` (adaptive prediction sets; Romano et al., 2020): the probability mass of the classes
  ranked above ``y``, plus ``u * p_y`` with ``u ~ U(0, 1)`` (randomised, so that coverage is exact
  on average). Larger sets on hard inputs, smaller on easy ones.
- ``"raps"`` (regularised APS; Angelopoulos et al., 2021): APS plus ``lam * max(0, rank(y) -
  k_reg)``, a penalty on classes deep in the ranking that keeps sets small.

The randomised scores draw ``u`` from ``generator`` (one ``u`` per input), so a seeded generator
gives reproducible sets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tutorial_lib.metrics.validation import check_probs, check_targets

METHODS = ("thr", "aps", "raps")


def conformal_quantile(scores: Tensor, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` calibration scores.

    Raises:
        ValueError: ``alpha`` outside (0, 1), or too few scores for it (``n < 1/alpha - 1``: the
            finite-sample quantile would be beyond the largest score).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    n = scores.numel()
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        raise ValueError(
            f"{n} calibration samples are too few for alpha = {alpha}: the guarantee needs at "
            f"least {math.ceil(1 / alpha - 1)}. Use more calibration data or a larger alpha."
        )
    return float(scores.sort().values[rank - 1])


def _ranked(probs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Probabilities sorted in descending order, their order, and each class's 1-based rank."""
    sorted_probs, order = probs.sort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, probs.shape[1] + 1).expand_as(order).contiguous())
    return sorted_probs, order, ranks


def class_scores(
    probs: Tensor,
    method: str = "thr",
    generator: torch.Generator | None = None,
    lam: float = 0.01,
    k_reg: int = 2,
) -> Tensor:
    """The non-conformity score of every class for every input: (N, C) -> (N, C) float64.

    Raises:
        ValueError: an unknown method, or (RAPS) a NaN or negative ``lam`` or a negative
            ``k_reg``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "raps" and not lam >= 0:  # NaN fails this too
        raise ValueError(f"lam (RAPS's penalty) must be a number >= 0, got {lam}.")
    if method == "raps" and not (isinstance(k_reg, int) and k_reg >= 0):
        raise ValueError(f"k_reg (the rank RAPS's penalty starts from) must be an integer >= 0, "
                         f"got {k_reg!r}.")  # fmt: skip
    if method == "thr":
        return 1 - probs
    sorted_probs, order, ranks = _ranked(probs)
    mass_before = (sorted_probs.cumsum(1) - sorted_probs).gather(1, ranks - 1)  # (N, C)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype)
    scores = mass_before + u * probs
    if method == "raps":
        scores = scores + lam * (ranks - k_reg).clamp(min=0).to(probs.dtype)
    return scores


def conformal_sets(
    cal_probs: Tensor,
    cal_targets: Tensor,
    test_probs: Tensor,
    alpha: float = 0.1,
    method: str = "thr",
    generator: torch.Generator | None = None,
    lam: float = 0.01,
    k_reg: int = 2,
) -> Tensor:
    """Split conformal prediction sets.

    Args:
        cal_probs: (n, C) or (n, M, C) probabilities on the calibration set (members averaged).
        cal_targets: (n,) calibration labels.
        test_probs: (N, C) or (N, M, C) probabilities on the inputs to predict.
        alpha: the allowed miscoverage: sets contain the truth with probability >= 1 - alpha.
        method: ``"thr"``, ``"aps"`` or ``"raps"`` (see the module docstring).
        generator: random source of the randomised scores (APS, RAPS).
        lam, k_reg: RAPS's penalty and the rank from which it applies.

    Returns:
        (N, C) bool: ``sets[i, c]`` is True when class ``c`` is in input ``i``'s set.

    Raises:
        ValueError: ``alpha`` outside (0, 1), a calibration set too small for ``alpha``,
            probabilities that are not distributions, mismatched shapes, an unknown method, or
            (RAPS) a NaN or negative ``lam`` or a negative ``k_reg``.
    """
    cal = check_probs(cal_probs, "cal_probs").mean(1)
    test = check_probs(test_probs, "test_probs").mean(1)
    if cal.shape[1] != test.shape[1]:
        raise ValueError(f"cal_probs has {cal.shape[1]} classes, test_probs {test.shape[1]}.")
    targets = check_targets(cal_targets, cal.shape[0], cal.shape[1])
    cal_scores = class_scores(cal, method, generator, lam, k_reg).gather(1, targets[:, None])
    threshold = conformal_quantile(cal_scores.squeeze(1), alpha)
    return class_scores(test, method, generator, lam, k_reg) <= threshold


def coverage(sets: Tensor, targets: Tensor) -> float:
    """The fraction of inputs whose set contains the true class: sets (N, C), targets (N,)."""
    return float(sets.gather(1, targets.long()[:, None]).float().mean())


def class_coverage(sets: Tensor, targets: Tensor) -> Tensor:
    """Coverage within each true class: (C,) float64 (NaN for a class absent from ``targets``)."""
    hits = sets.gather(1, targets.long()[:, None]).squeeze(1).double()
    counts = torch.bincount(targets, minlength=sets.shape[1]).double()
    covered = torch.bincount(targets, weights=hits, minlength=sets.shape[1])
    return covered / counts

"""Grouping loss (Perez-Lebel et al., "Beyond calibration: estimating the grouping loss of modern
neural networks", ICLR 2023), estimated with their GLest library.

Calibration asks whether, among all inputs given confidence 0.9, 90 % are right. The grouping
loss asks whether that holds within *groups* of those inputs too: a model can be calibrated on
average yet over-confident on one kind of input and under-confident on another. GLest splits each
confidence bin into regions of feature space (a decision tree fitted on half the data) and
measures, on the other half, how far the regions' accuracies spread around their bin's confidence
(Brier-score decomposition), minus an estimate of the bias of that estimate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tutorial_lib.metrics.validation import check_probs, check_targets

N_BINS = 15
MIN_SAMPLES = 20


def _stratified_halves(bins: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices in two halves, within each confidence bin (a single sample goes to
    the training half), so both halves cover every bin."""
    train, test = [], []
    for b in np.unique(bins):
        idx = rng.permutation(np.flatnonzero(bins == b))
        cut = (idx.size + 1) // 2
        train.append(idx[:cut])
        test.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def grouping_loss(
    probs: Tensor, targets: Tensor, features: Tensor, random_state: int = 0
) -> dict[str, float]:
    """Top-label grouping loss and its parts, deterministic for a given ``random_state``.

    Args:
        probs: (N, C) for one model or (N, M, C) per-member probabilities.
        targets: (N,) labels.
        features: (N, F) for one model, or (N, M, F) per-member features for an ensemble. An
            ensemble's confidence comes from all its members, so the partition is built on the
            concatenation of every member's features (N, M*F): using one member's features (as
            the reference wrapper does) would judge the ensemble with a representation that only
            a fraction of it computed, and would depend on which member comes first.
        random_state: seed of the split into partition / evaluation halves and of the trees.

    Returns:
        ``{"GL", "GL_uncorrected", "GL_bias", "GL_induced"}``: GL = GL_uncorrected - GL_bias -
        GL_induced, on GLest's two-class Brier scale (2 (p - y)^2): a model whose true
        posterior is 1 on half of a confidence-0.75 level set and 0.5 on the other half has
        GL = 2 E[(Q - 0.75)^2] = 0.125.

    Raises:
        ValueError: bad inputs, fewer than ``MIN_SAMPLES`` samples, or predictions that are all
            right (or all wrong), for which the grouping loss is not defined.
    """
    from glest import GLEstimator

    probs = check_probs(probs)
    n = probs.shape[0]
    if n < MIN_SAMPLES:
        raise ValueError(f"The grouping loss needs at least {MIN_SAMPLES} samples (half of them "
                         f"grow the partition, half evaluate it), got {n}.")  # fmt: skip
    targets = check_targets(targets, n, probs.shape[-1])
    features = torch.as_tensor(features).detach()
    if features.shape[0] != n or features.ndim not in (2, 3):
        raise ValueError(
            f"features must be (N, F) or (N, M, F) with N = {n}, got {tuple(features.shape)}."
        )
    x = features.reshape(n, -1).double().cpu().numpy()
    conf, pred = probs.mean(1).max(-1)
    correct = (pred == targets).long().cpu().numpy()
    if correct.min() == correct.max():
        raise ValueError(
            "The grouping loss needs both right and wrong predictions; all "
            f"{n} are {'right' if correct[0] else 'wrong'}. Use more (or harder) samples."
        )
    scores = conf.cpu().numpy()
    bins = np.minimum((scores * N_BINS).astype(int), N_BINS - 1)
    train, test = _stratified_halves(bins, np.random.default_rng(random_state))
    if np.unique(correct[train]).size < 2:
        raise ValueError("The partitioning half holds only right (or only wrong) predictions.")
    estimator = GLEstimator(scores[train], partitioner="decision_tree", random_state=random_state)
    estimator.fit(x[train], correct[train], test_data=(x[test], correct[test], scores[test]))
    parts = estimator.metrics("brier")
    return {key: float(parts[key]) for key in ("GL", "GL_uncorrected", "GL_bias", "GL_induced")}


def brier_decomposition(conf: Tensor, correct: Tensor, q: Tensor) -> dict[str, float]:
    """The three parts of the Brier score of "is the prediction right" when the true probability
    of being right is known (synthetic data), on the two-class Brier scale ``2 (a - b)^2``:
    ``E[d(S, C)] + E[d(C, Q)] + E[d(Q, Y)]`` (Perez-Lebel et al., 2023), with ``C = E[Y | S]``
    the accuracy among the inputs that share a confidence.

    Args:
        conf: (N,) confidence S of each prediction (a few distinct levels).
        correct: (N,) Y, 1.0 where the prediction is right.
        q: (N,) Q, the true probability that it is right.

    Returns:
        ``{"calibration", "grouping", "irreducible"}``: the calibration, grouping and
        irreducible losses; they add up to the Brier score ``2 E[(S - Y)^2]`` up to the
        sampling noise of Y.
    """
    conf, correct, q = conf.double(), correct.double(), q.double()
    levels, group = torch.unique(conf, return_inverse=True)
    counts = torch.bincount(group, minlength=len(levels)).double()
    accuracy = torch.bincount(group, weights=correct, minlength=len(levels)) / counts  # E[Y | S]
    c = accuracy[group]  # (N,): C of each input
    return {
        "calibration": float((2 * (conf - c) ** 2).mean()),
        "grouping": float((2 * (c - q) ** 2).mean()),
        "irreducible": float((2 * (q - correct) ** 2).mean()),
    }

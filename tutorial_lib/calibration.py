"""Post-hoc calibration: temperature scaling (Guo et al., 2017), fitted on held-out data.

A trained classifier's logits ``z`` are divided by one number ``T > 0`` before the softmax:
``T > 1`` softens over-confident predictions, ``T < 1`` sharpens under-confident ones. The
arg-max, hence the accuracy, never changes. ``T`` is the value that minimises the NLL on a
**validation** split (never the test set), found by :func:`fit_temperature`.

For an ensemble the course scales the ensemble's prediction as a whole: its "logits" are the log
of its averaged probabilities (:func:`ensemble_logits`), so ``softmax(log p̄ / T)``. An average of
confident members is often under-confident (the members disagree on hard inputs, which flattens
the mean): there ``T < 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tutorial_lib.metrics.validation import check_probs, check_targets

LOG_T_RANGE = (math.log(0.01), math.log(100.0))
_GOLDEN = (math.sqrt(5) - 1) / 2


def ensemble_logits(probs: Tensor) -> Tensor:
    """Log of the mean probability: (N, C) or (N, M, C) probabilities -> (N, C) float64.

    For one model this equals its logits up to a per-row constant, which the softmax ignores.
    """
    mean = check_probs(probs).mean(1)
    return mean.clamp_min(torch.finfo(torch.float64).tiny).log()


def looks_like_probabilities(values: Tensor) -> bool:
    """True when every row of (N, C) ``values`` lies in [0, 1] and sums to 1 (to 1e-4): what
    softmax outputs look like, and logits almost never do."""
    values = values.detach().double()
    in_range = bool(((values >= 0) & (values <= 1)).all())
    return in_range and bool(torch.allclose(values.sum(-1), torch.ones(()).double(), atol=1e-4))


def _nll(logits: Tensor, targets: Tensor, log_t: float) -> float:
    scaled = logits / math.exp(log_t)
    return float((scaled.logsumexp(-1) - scaled.gather(1, targets[:, None]).squeeze(1)).mean())


def fit_temperature(logits: Tensor, targets: Tensor, tolerance: float = 1e-6) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on these samples.

    The NLL is convex in ``1/T``, so it has a single minimum in ``log T``; a golden-section search
    over ``log T`` in [log 0.01, log 100], in float64, brackets it to ``tolerance`` (the result is
    exact to 1e-3 and far better). A minimum at an end of the range returns that end (e.g. every
    sample right: sharper is always better).

    Args:
        logits: (N, C) logits (or :func:`ensemble_logits` of an ensemble).
        targets: (N,) labels in ``[0, C)``.

    Returns:
        ``T`` as a float.

    Raises:
        ValueError: NaN/inf logits, wrong shapes, labels out of range, no samples, or
            probabilities where logits belong (every row in [0, 1] and summing to 1).
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N > 0, C >= 2), got {tuple(logits.shape)}.")
    if not logits.is_floating_point() or not torch.isfinite(logits).all():
        raise ValueError("logits must be finite floats (no NaN or inf).")
    if looks_like_probabilities(logits):
        raise ValueError(
            "fit_temperature got probabilities (every row in [0, 1], summing to 1), not logits: "
            "pass the logits, or ensemble_logits(probs) for probabilities."
        )
    logits = logits.detach().double()
    targets = check_targets(targets, logits.shape[0], logits.shape[1]).to(logits.device)
    low, high = LOG_T_RANGE
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    fa, fb = _nll(logits, targets, a), _nll(logits, targets, b)
    while high - low > tolerance:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - _GOLDEN * (high - low)
            fa = _nll(logits, targets, a)
        else:
            low, a, fa = a, b, fb
            b = low + _GOLDEN * (high - low)
            fb = _nll(logits, targets, b)
    return math.exp((low + high) / 2)


def apply_temperature(probs: Tensor, temperature: float) -> Tensor:
    """Temperature-scaled probabilities: (N, C) or (N, M, C) -> (N, C) float64,
    ``softmax(ensemble_logits(probs) / T)``.

    Raises:
        ValueError: ``temperature <= 0`` or invalid probabilities.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    return (ensemble_logits(probs) / temperature).softmax(-1)

"""Input checks shared by every metric: one clear ``ValueError`` per kind of bad input."""

from __future__ import annotations

import torch
from torch import Tensor

SUM_TOLERANCE = 1e-3


def sum_tolerance(dtype: torch.dtype) -> float:
    """How far a row of probabilities of this dtype may sum from 1: 1e-3, or 4 x the dtype's
    machine epsilon if larger (float16: 3.9e-3, bfloat16: 3.1e-2), since each stored value is
    rounded."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(SUM_TOLERANCE, 4 * eps)


def check_probs(probs: Tensor, name: str = "probs") -> Tensor:
    """Validate probabilities and return them as ``(N, M, C)`` float64.

    Low-precision inputs (float16, bfloat16) are accepted with a tolerance suited to their dtype
    (:func:`sum_tolerance`) and renormalised in float64, so that every metric computes in float64.

    Args:
        probs: ``(N, C)`` for one model or ``(N, M, C)`` for ``M`` members, non-negative, each
            row summing to 1.

    Raises:
        ValueError: wrong number of dimensions, empty, NaN or inf, negative values, rows that do
            not sum to 1 (e.g. logits passed instead of probabilities).
    """
    if not isinstance(probs, Tensor):
        probs = torch.as_tensor(probs)
    if probs.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be (N, C) or (N, M, C) probabilities, got shape {tuple(probs.shape)}."
        )
    if probs.numel() == 0 or probs.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(probs.shape)}): nothing to evaluate.")
    tolerance = sum_tolerance(probs.dtype)
    low_precision = probs.dtype in (torch.float16, torch.bfloat16)
    probs = probs.detach().to(torch.float64)
    if probs.ndim == 2:
        probs = probs.unsqueeze(1)
    if not torch.isfinite(probs).all():
        raise ValueError(
            f"{name} contains NaN or inf ({int((~torch.isfinite(probs)).sum())} values)."
        )
    if (probs < 0).any():
        raise ValueError(f"{name} has negative values: pass probabilities (softmax), not logits.")
    worst = (probs.sum(-1) - 1).abs().max().item()
    if worst > tolerance:
        raise ValueError(
            f"{name} rows must sum to 1 (tolerance {tolerance:.3g}), worst is off by {worst:.3g}: "
            "apply a softmax over the classes first."
        )
    return probs / probs.sum(-1, keepdim=True) if low_precision else probs


def check_targets(targets: Tensor, num_samples: int, num_classes: int) -> Tensor:
    """Validate integer labels ``(N,)`` in ``[0, num_classes)`` and return them as int64.

    Raises:
        ValueError: shape mismatch or labels out of range.
    """
    targets = torch.as_tensor(targets).detach()
    if targets.ndim != 1 or targets.shape[0] != num_samples:
        raise ValueError(
            f"targets must be ({num_samples},) to match the probabilities, "
            f"got {tuple(targets.shape)}."
        )
    if targets.is_floating_point():
        raise ValueError("targets must be integer class labels, not floats.")
    targets = targets.long()
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"targets must lie in [0, {num_classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]."
        )
    return targets

"""Ranking helpers shared by threshold-based metrics (OOD detection, selective classification)."""

from __future__ import annotations

import torch
from torch import Tensor


def tie_group_ends(sorted_values: Tensor) -> Tensor:
    """Indices of the last element of each run of equal values in a sorted (N,) tensor.

    A threshold can sit only after such an index: it cannot split a group of tied scores.

    Returns:
        (G,) int64, ascending, always ending with ``N - 1``.
    """
    if sorted_values.numel() == 0:
        raise ValueError("tie_group_ends needs at least one value.")
    changes = torch.nonzero(sorted_values[1:] != sorted_values[:-1]).flatten()
    last = torch.tensor([sorted_values.numel() - 1], device=sorted_values.device)
    return torch.cat([changes, last])

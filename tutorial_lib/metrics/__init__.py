"""Uncertainty metrics, one small module per family; :func:`evaluate_predictions` runs them all."""

from tutorial_lib.metrics.complexity import complexity, throughput
from tutorial_lib.metrics.evaluate import UncertaintyMetrics, evaluate_predictions
from tutorial_lib.metrics.grouping import brier_decomposition, grouping_loss
from tutorial_lib.metrics.ood import detection, ood_scores

__all__ = [
    "UncertaintyMetrics",
    "brier_decomposition",
    "complexity",
    "detection",
    "evaluate_predictions",
    "grouping_loss",
    "ood_scores",
    "throughput",
]

"""Uncertainty metrics, one small module per family."""

from tutorial_lib.metrics.complexity import complexity

__all__ = ["complexity"]

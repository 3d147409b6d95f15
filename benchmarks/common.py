"""Helpers shared by the benchmark scripts: the machine's description and a timer."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from tutorial_lib.trainer import describe_machine


def machine() -> str:
    """The machine, in one line (see :func:`tutorial_lib.trainer.describe_machine`)."""
    return describe_machine()


def timed(fn: Callable[[], object], sync: bool = False) -> float:
    """Seconds that ``fn()`` takes (synchronising CUDA around it when ``sync``)."""
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start

"""Helpers shared by the benchmark scripts: the machine's description and a timer."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """One line naming the CPU (and GPU when present), the core count and the torch version."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def timed(fn: Callable[[], object], sync: bool = False) -> float:
    """Seconds that ``fn()`` takes (synchronising CUDA around it when ``sync``)."""
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start

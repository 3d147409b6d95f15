"""Helpers shared by the benchmark scripts: the machine's description, a timer, a study's
per-model record."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tutorial_lib.speed import share_cpu_fairly
from tutorial_lib.trainer import describe_machine

ROOT = Path(__file__).resolve().parent.parent


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


def study_point(summary: dict, speed: list[float], keys: tuple[str, ...]) -> dict:
    """One model of a study (``pareto.py``, ``packing.py``) as its JSON file stores it.

    Args:
        summary: :meth:`tutorial_lib.compare.Comparison.summary` of a temperature-scaled model.
        speed: inference images/s measured on each seed's trained model.
        keys: the metrics kept: mean, ``_std`` and ``_seeds`` (per-seed values), raw and after
            temperature scaling (``ts/...``).
    """
    calibrated = summary["calibrated"]
    point = {
        "spec": summary["spec"],
        "params": summary["metrics"]["cplx/params"],
        "flops_per_image": summary["metrics"]["cplx/flops_per_image"],
        "fit_s": statistics.median(summary["fit_s"]),  # robust to one disturbed run
        "fit_s_seeds": summary["fit_s"],
        "images_per_s": statistics.median(speed),
        "images_per_s_min": min(speed),  # one measurement per seed: its spread
        "images_per_s_max": max(speed),
        "images_per_s_seeds": speed,
        "temperature": summary["temperature"],
    }
    for prefix, source in (("", summary), ("ts/", calibrated)):
        for k in keys:
            if k in source["metrics"]:
                point[prefix + k] = source["metrics"][k]
                point[f"{prefix}{k}_std"] = source["std"][k]
                point[f"{prefix}{k}_seeds"] = [run[k] for run in source["seeds"]]
    return point


def study_options(parser: argparse.ArgumentParser, name: str) -> None:
    """The options every study has: ``--cache`` (the run cache, so that a stopped study resumes),
    ``--out`` (``outputs/<name>``) and ``--results`` (``data/results/<name>.json``)."""
    parser.add_argument("--cache", default="auto")
    parser.add_argument("--out", default=f"outputs/{name}")
    parser.add_argument("--results", default=str(ROOT / "data" / "results" / f"{name}.json"))


def begin_study() -> Callable[[str], None]:
    """Share the CPU fairly, draw figures off screen, print the machine; returns ``say``, which
    prints a progress line at once."""
    share_cpu_fairly()
    import matplotlib

    matplotlib.use("Agg")

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"machine: {machine()}")
    return say

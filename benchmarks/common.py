"""Helpers shared by the benchmark scripts: the machine's description, a timer, a study's
per-model record."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tutorial_lib import runcache
from tutorial_lib.config import ExperimentConfig
from tutorial_lib.speed import share_cpu_fairly
from tutorial_lib.trainer import describe_machine, resolved_accelerator

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """The machine, in one line (see :func:`tutorial_lib.trainer.describe_machine`)."""
    return describe_machine()


def commit() -> str:
    """The project's git commit (``+`` when the checkout has changes), or ``"unknown"``
    outside a git checkout: what to check out to run a study's command again."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


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


def cached_seeds(config: ExperimentConfig) -> list[int]:
    """The seeds of ``config``'s (first) model whose run is in ``config``'s run cache: a forecast
    counts them as free, since the experiment loads them instead of training them."""
    if not config.cache:
        return []
    spec, cache = config.specs[0], runcache.cache_dir(config.cache)
    accelerator = resolved_accelerator(config.accelerator)
    return [
        seed
        for seed in config.seed_list
        if runcache.is_stored(
            runcache.entry_path(cache, spec, runcache.run_key(spec, config, seed, accelerator))
        )
    ]


class StudyMismatch(SystemExit):
    """A partial results file that belongs to another study (other settings or other code)."""


def resume_study(path: Path, signature: dict, say: Callable[[str], None]) -> dict | None:
    """The unfinished study in ``path`` to carry on, or None to start afresh.

    A study that outlasts a working session writes what it finished after every experiment
    (``"complete": false``); committing that file and running the same command again, from the
    same code, picks up where it stopped, even on a machine whose run cache is empty. Only a
    file whose ``signature`` (every setting that shapes the results, and the digest of the
    library's source) equals this one's is carried on; a complete file is kept as
    ``<name>.previous.json`` (a new study must not overwrite finished results before it has
    finished itself) and a new study starts (its runs still come from the run cache).

    Raises:
        StudyMismatch: ``path`` holds an unfinished study with another signature; its message
            names the differences, and the file is left as it is.
    """
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise StudyMismatch(f"{path} cannot be read ({err}): move it away to start afresh."
                            ) from err  # fmt: skip
    if old.get("complete", True):
        kept = path.with_name(f"{path.stem}.previous.json")
        path.replace(kept)
        say(f"{path} holds a complete study: it is kept as {kept}, and a new one starts")
        return None
    theirs = old.get("signature", {})
    differ = sorted(k for k in signature.keys() | theirs.keys()
                    if signature.get(k) != theirs.get(k))  # fmt: skip
    if differ:
        values = "; ".join(f"{k}: {theirs.get(k)!r} there, {signature.get(k)!r} here"
                           for k in differ)  # fmt: skip
        raise StudyMismatch(
            f"{path} holds an unfinished study with other settings ({values}). Run the "
            f"command it records ({old.get('command')}) from its commit ({old.get('commit')}) "
            "to finish it, or pass another --results to start a new one; the file is left as "
            "it is."
        )
    done = sum(len(entry["points"]) for entry in old["datasets"].values())
    say(f"resuming the unfinished study in {path}: {done} model(s) done in "
        f"{len(old.get('passes', []))} earlier pass(es)")  # fmt: skip
    return old

"""The evidence behind the chapters' sentences: results files, and the checks that claims run.

A chapter states a result ("the deep ensemble's NLL is lower than LeNet's", "not
distinguishable on MNIST") only next to a code cell that computes it and ``assert``s it. The
results it checks are
those just computed in the full profile (the reference's settings), and in the quick profile
(CI, smoke tests: too little training to support any claim) the committed full-profile results
``data/results/<name>.json``, written by ``tutorial-lib compare`` with the command recorded in
the file. A stale sentence therefore fails CI.

:func:`verdict` applies the course's test (:func:`tutorial_lib.stats.verdict`: Welch's t-test
over seeds, 5 % false verdicts when two models are the same) to two models of a results file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tutorial_lib import stats
from tutorial_lib.files import find_root
from tutorial_lib.report import HEADLINE_KEYS, MetricTable, direction, ranked, seed_values, show

# what must match between a chapter's full-profile run and the committed results it replaces
SAME = ("dataset", "seed", "seeds", "epochs", "batch_size", "recipe", "lr", "val_size",
        "train_subset", "eval_subset")  # fmt: skip


RESULTS_ENV = "TUTORIAL_RESULTS_DIR"


def results_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """``<course root>/data/results/<name>.json`` (the root found from the current folder), or
    ``$TUTORIAL_RESULTS_DIR/<name>.json`` when that is set: the tests feed the chapters
    counterfactual results that way, to check that each claim can fail."""
    folder = os.environ.get(RESULTS_ENV)
    if folder:
        return Path(folder) / f"{name}.json"
    return find_root(root) / "data" / "results" / f"{name}.json"


def load_results(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """A committed results file (what ``results.json`` of ``tutorial-lib compare`` holds).

    Raises:
        FileNotFoundError: no such results; the message says how to make them.
        ValueError: not valid JSON, or an interrupted run's; the message names the file.
    """
    path = results_path(name, root)
    if not path.exists():
        raise FileNotFoundError(f"No committed results {path}: run the command in "
                                "data/results/README.md that makes it.")  # fmt: skip
    try:
        results = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): restore it (git checkout) or make it "
                         "again with its command in data/results/README.md.") from None  # fmt: skip
    if not results.get("complete"):
        raise ValueError(f"{path} is from an interrupted run (complete: false): make it again.")
    return results


def evidence(comparison, name: str) -> dict[str, Any]:
    """The results a chapter's claims are checked on: ``comparison``'s own in the full profile,
    the committed ``data/results/<name>.json`` otherwise (then shown beside this run's numbers,
    :func:`beside`, so that a table on screen never passes for the evidence).

    A chapter may run some of the committed models only; everything else that shapes the
    numbers (data, seeds, epochs, batch size, recipe, validation split) must be the same.

    Raises:
        ValueError: a full-profile comparison that does not run the committed experiment, so
            that the two can never silently differ.
    """
    committed = load_results(name)
    if comparison.config.profile != "full":
        show(beside(comparison, committed, name))
        return committed
    ours = comparison.to_json(complete=True)
    mine, theirs = ours["config"], committed["config"]
    for key in SAME:
        if mine[key] != theirs[key]:
            raise ValueError(f"This run's {key} ({mine[key]}) differs from {name}.json's "
                             f"({theirs[key]}).")  # fmt: skip
    if not set(mine["models"]) <= set(theirs["models"]):
        raise ValueError(f"This run's models {mine['models']} are not among {name}.json's.")
    return ours


def beside(
    comparison, committed: dict[str, Any], name: str, keys: tuple[str, ...] = HEADLINE_KEYS
) -> MetricTable:
    """This run's headline metrics next to the committed ones, model by model, each column
    labelled with where it comes from (profile and seeds)."""
    mine, spread = comparison.columns(keys)
    profile, seeds = comparison.config.profile, comparison.config.seeds
    theirs = committed["config"]["seeds"]
    columns, spreads = {}, {}
    for model in mine:
        if model not in committed["models"]:
            continue
        ours = f"{model}: this run ({profile} profile, {seeds} seed{'s' * (seeds > 1)})"
        kept = f"{model}: committed (full profile, {theirs} seeds)"
        entry = committed["models"][model]
        columns[ours], spreads[ours] = mine[model], spread[model]
        columns[kept] = {k: entry["metrics"][k] for k in keys if k in entry["metrics"]}
        spreads[kept] = {k: entry["std"].get(k) for k in keys}
    return MetricTable(columns, f"This run beside data/results/{name}.json: the claims below are "
                       "checked on the committed numbers", spreads)  # fmt: skip


def value(results: dict[str, Any], model: str, key: str) -> tuple[float, float | None]:
    """``(mean, std)`` of a metric over seeds; keys ``ts/...`` are after temperature scaling."""
    entry = results["models"][model]
    if key.startswith("ts/"):
        entry = entry["calibrated"]
        key = key[3:]
    return entry["metrics"][key], entry["std"][key]


def values(results: dict[str, Any], model: str, key: str) -> list[float]:
    """A metric's per-seed values; keys ``ts/...`` are after temperature scaling."""
    found = seed_values(results["models"][model], key)
    if not found:
        raise KeyError(f"{model} has no per-seed {key} in these results.")
    return found


def verdict(
    results: dict[str, Any], model: str, baseline: str, key: str, alpha: float = 0.05
) -> str:
    """``"better"``, ``"worse"`` or ``"not distinguishable"``: ``model`` against ``baseline`` on
    ``key``, by Welch's t-test over seeds at level ``alpha`` (:func:`tutorial_lib.stats.verdict`).

    Raises:
        ValueError: a metric with no better direction, or fewer than 2 seeds.
    """
    better = direction(key)
    if better is None:
        raise ValueError(f"{key} has no better direction: no verdict.")
    a = [ranked(key, v) for v in values(results, model, key)]
    b = [ranked(key, v) for v in values(results, baseline, key)]
    return stats.verdict(a, b, higher_is_better=better, alpha=alpha)

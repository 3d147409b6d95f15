"""The experiment, read top to bottom: configuration -> data -> models -> fit_and_test -> report.

    config = ExperimentConfig.create(models=("lenet", "deep-ensemble-2"), seeds=3)
    comparison = run_comparison(config)     # what `tutorial-lib compare` runs
    comparison.table()                      # mean ± std over seeds, every metric

:func:`run_comparison` is that loop:

1. **data**: the training images minus a held-out validation split, the ID test set and the OOD
   test set (:class:`~tutorial_lib.data.MNISTDataModule`), prepared once;
2. **models**: every requested model is built once before any training, so that a bad
   combination fails in seconds, not after the first fit;
3. **fit_and_test**, for every model and seed: train, test on the ID and OOD sets, predict the
   validation split, fit a temperature there (``calibrate="temperature"``); a
   :class:`ModelResult` per run, saved to ``results.json`` after each one. On a CPU with several
   runs, the runs go side by side in worker processes (:mod:`tutorial_lib.workers`);
4. **report**: tables (mean ± std over seeds), verdicts (better, worse, not distinguishable), plots,
   TensorBoard runs named ``<model>/seed<k>``, and, with ``shift``, every model on corrupted test
   sets (:func:`evaluate_shift`).

The test sets only ever feed the final report: validation, temperatures and thresholds use the
validation split.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tutorial_lib import files, runcache
from tutorial_lib.calibration import apply_temperature, ensemble_logits, fit_temperature
from tutorial_lib.config import ExperimentConfig, ModelSpec
from tutorial_lib.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from tutorial_lib.data import MNISTDataModule, TensorBatchLoader
from tutorial_lib.ensembles import RepeatTarget, fuse
from tutorial_lib.errors import RunInterrupted
from tutorial_lib.metrics import detection, evaluate_predictions, grouping_loss, ood_scores
from tutorial_lib.routine import ClassificationRoutine, predict
from tutorial_lib.trainer import (
    ReliabilityFigure,
    choose_accelerator,
    describe_machine,
    make_trainer,
    resolved_accelerator,
    seed_everything,
)
from tutorial_lib.workers import plan_workers, run_side_by_side

NUM_CLASSES = 10
SUMMARY_KEYS = ("cls/Acc", "cls/NLL", "cal/ECE", "cal/aECE", "ood/AUROC", "ood/FPR95", "sc/AURC")
MEMBER_KEYS = ("cls/Acc", "cls/NLL", "cls/Brier", "cal/ECE", "ood/AUROC")
# metrics shown after temperature scaling (every metric is in results.json)
CALIBRATED_KEYS = ("cls/Acc", "cls/NLL", "cls/Brier", "cal/ECE", "cal/aECE", "ood/AUROC",
                   "ood/FPR95", "sc/AURC")  # fmt: skip


# --- models ------------------------------------------------------------------------------------


def build_model(spec: ModelSpec, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The network of a spec (its entry in :data:`~tutorial_lib.config.MODEL_KINDS`), freshly
    initialised from the current random state. A deep ensemble is built from its members and
    fused into one network that computes the same outputs (:func:`~tutorial_lib.ensembles.fuse`).
    """
    return spec.build(1, num_classes)


def make_data(config: ExperimentConfig) -> MNISTDataModule:
    """The experiment's data module (train / validation / ID test / OOD test); its splits move
    to the device of the trainer that fits or tests on it (:meth:`MNISTDataModule.setup`)."""
    return MNISTDataModule(
        config.data_dir, config.mirror, batch_size=config.batch_size, seed=config.seed,
        train_subset=config.train_subset, eval_subset=config.eval_subset,
        val_size=config.val_size, dataset=config.dataset, classes=config.classes,
    )  # fmt: skip


# --- one run -----------------------------------------------------------------------------------


@dataclass
class ModelResult:
    """One model trained and tested with one seed.

    ``members`` holds each member's own test metrics (:data:`MEMBER_KEYS`) for an ensemble.
    ``predictions`` holds, on the CPU: ``probs`` (N, M, C), ``targets`` (N,), ``ood_probs``
    (N', M, C) on the test sets, ``val_probs`` / ``val_targets`` on the validation split, and
    ``features`` (N, M, F) with the grouping loss.
    """

    spec: ModelSpec
    seed: int | None
    metrics: dict[str, float]
    fit_s: float = 0.0
    test_s: float = 0.0
    train_images_per_s: float = math.nan
    steps: int = 0
    temperature: float | None = None
    calibrated: dict[str, float] | None = None
    members: list[dict[str, float]] = field(default_factory=list)
    predictions: dict[str, Tensor] = field(default_factory=dict, repr=False)
    model: nn.Module | None = field(default=None, repr=False)
    name: str = ""
    figures: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.spec.name


def member_metrics(predictions: dict[str, Tensor]) -> list[dict[str, float]]:
    """Each member's own metrics (:data:`MEMBER_KEYS`), from per-member test probabilities."""
    p = predictions
    members = p["probs"].shape[1]
    if members < 2:
        return []
    return [
        {k: v for k, v in evaluate_predictions(p["probs"][:, m], p["targets"],
                                               p["ood_probs"][:, m]).items() if k in MEMBER_KEYS}
        for m in range(members)
    ]  # fmt: skip


def ood_metrics(
    predictions: dict[str, Tensor], score: str, temperature: float = 1.0
) -> dict[str, float]:
    """The ``ood/`` detection metrics (and ``near/`` ones with a near-OOD set) with the OOD score
    ``score`` of :func:`~tutorial_lib.metrics.ood_scores`, from the stored logits (N, M, C)
    divided by ``temperature``; nothing with the MSP and no near-OOD set (the routine's own
    metrics stand)."""
    if score == "msp" and "near_logits" not in predictions:
        return {}
    scores = {key: ood_scores(predictions[key] / temperature)[score]
              for key in ("logits", "ood_logits", "near_logits") if key in predictions}  # fmt: skip
    metrics = {f"ood/{k}": v for k, v in detection(scores["logits"], scores["ood_logits"]).items()}
    if "near_logits" in scores:
        near = detection(scores["logits"], scores["near_logits"])
        metrics |= {"near/AUROC": near["AUROC"], "near/FPR95": near["FPR95"]}
    return metrics


def calibrate(result: ModelResult, score: str = "msp") -> None:
    """Fit a temperature on the validation predictions and add the scaled test metrics (OOD
    detection ranked by ``score``)."""
    p = result.predictions
    result.temperature = fit_temperature(ensemble_logits(p["val_probs"]), p["val_targets"])
    result.calibrated = evaluate_predictions(
        apply_temperature(p["probs"], result.temperature), p["targets"],
        apply_temperature(p["ood_probs"], result.temperature),
    )  # fmt: skip
    result.calibrated |= ood_metrics(p, score, result.temperature)


def fit_and_test(
    spec: ModelSpec,
    data: MNISTDataModule,
    config: ExperimentConfig,
    seed: int,
    log_dir: str | Path | None = None,
    worker: bool = False,
    accelerator: str | None = None,
) -> ModelResult:
    """Train one model with one seed, test it on the ID and OOD test sets, predict validation.

    The routine holds the science (loss, recipe, metrics), the trainer the engineering; the run
    logs to ``<log_dir>/<spec.slug>/seed<seed>`` (no logs when ``log_dir`` is None).

    ``fit_s`` and ``test_s`` are CPU seconds on the CPU (:func:`run_clock`), the same measure
    whether the run was alone or one of several side by side, and wall seconds on a GPU.

    Args:
        worker: the run is one of several side by side (:mod:`tutorial_lib.workers`): no
            progress bar.
        accelerator: what the trainer uses (default: ``config.accelerator``); a command that
            trains several runs resolves it once (:func:`~tutorial_lib.trainer.choose_accelerator`).
    """
    accelerator = accelerator or config.accelerator
    clock = run_clock(resolved_accelerator(accelerator))
    seed_everything(seed)
    model = build_model(spec, data.num_classes)
    members = spec.train_members
    routine = ClassificationRoutine(
        model, data.num_classes, optim_recipe=config.recipe, lr=config.lr,
        lr_mult=float(members) if config.recipe == "reference" else 1.0,  # SGD needs it, Adam not
        is_ensemble=spec.members > 1, eval_ood=True, eval_grouping_loss=config.grouping_loss,
        format_batch_fn=RepeatTarget(members) if members > 1 else None,
    )  # fmt: skip
    hparams = spec.hparams | {"seed": seed, "dataset": config.dataset, "epochs": config.epochs,
                              "batch_size": config.batch_size}  # fmt: skip
    trainer = make_trainer(
        config.epochs, spec.slug, log_dir or ".", version=f"seed{seed}", title=spec.name,
        hparams=hparams, accelerator=accelerator, recipe=config.recipe,
        **({} if log_dir else {"logger": False}),
        **({"enable_progress_bar": False} if worker else {}),  # no bars drawn over each other
    )  # fmt: skip
    start = clock()
    trainer.fit(routine, data)
    fitted = clock()
    trainer.test(routine, data, verbose=False)
    tested = clock()
    predictions = dict(routine.test_predictions)
    steps = trainer.global_step
    if "val" in data.splits:
        val = routine.val_predictions  # the last epoch's validation: the final weights
        if val.get("step") != steps or len(val["targets"]) != data.sizes()["val"]:
            val = predict(routine.model, data.eval_loader("val"))
        predictions |= {"val_probs": val["probs"], "val_targets": val["targets"]}
    if "near" in data.splits:
        predictions["near_logits"] = predict(routine.model, data.eval_loader("near"))["logits"]
    result = ModelResult(
        spec, seed, dict(routine.test_results), fitted - start, tested - fitted,
        data.sizes()["train"] * config.epochs / (fitted - start), steps,
        predictions=predictions, model=routine.model.cpu().eval(),
    )  # fmt: skip
    result.metrics |= ood_metrics(predictions, config.ood_score)
    result.members = member_metrics(predictions)
    drawn = [c.png for c in trainer.callbacks if isinstance(c, ReliabilityFigure) and c.png]
    if drawn:  # the test's reliability diagram (TensorBoard's): the report writes the same PNG
        result.figures["reliability"] = drawn[0]
    if config.calibrate == "temperature":
        calibrate(result, config.ood_score)
    return result


def run_clock(accelerator: str) -> Callable[[], float]:
    """The clock of a run's times: this process's CPU seconds on the CPU (all its threads: on
    one thread, what the run costs alone on one core; the same measure one at a time and side by
    side), wall-clock seconds on a GPU (whose work the CPU clock does not see)."""
    return time.process_time if accelerator == "cpu" else time.perf_counter


def evaluate_pretrained(
    source: str, data: MNISTDataModule, config: ExperimentConfig, accelerator: str | None = None
) -> ModelResult:
    """Test the pretrained 8-member deep ensemble like the trained models (no fit)."""
    from tutorial_lib.hub import load_pretrained_ensemble

    ensemble = load_pretrained_ensemble(source)
    spec = ModelSpec("pretrained", "deep-ensemble", ensemble.num_estimators)
    routine = ClassificationRoutine(fuse(ensemble), NUM_CLASSES, is_ensemble=True, eval_ood=True,
                                    eval_grouping_loss=config.grouping_loss)  # fmt: skip
    accelerator = accelerator or config.accelerator
    clock = run_clock(resolved_accelerator(accelerator))
    trainer = make_trainer(1, logger=False, accelerator=accelerator)
    start = clock()
    trainer.test(routine, data, verbose=False)
    result = ModelResult(spec, None, dict(routine.test_results), 0.0, clock() - start,
                         predictions=dict(routine.test_predictions),
                         model=routine.model.cpu().eval(),
                         name=f"Pretrained ensemble (M={ensemble.num_estimators})")  # fmt: skip
    result.members = member_metrics(result.predictions)
    return result


# --- shift -------------------------------------------------------------------------------------


def evaluate_shift(
    models: dict[str, nn.Module],
    images: Tensor,
    labels: Tensor,
    stats: tuple[float, float],
    seed: int = 0,
    grouping: bool | Collection[str] = False,
    severities: tuple[int, ...] = SEVERITIES,
    batch_size: int = 1024,
    temperatures: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy, NLL, ECE (and the grouping loss) of each model on each corrupted test set.

    Args:
        models: ``{name: model}``; each maps (B, 1, 28, 28) to (B, C) or estimator-major
            (M*B, C) logits (and has ``feats_forward`` when ``grouping``).
        images, labels: the clean test set, (N, 28, 28) uint8 and (N,).
        stats: the normalisation (mean, std) of the training set.
        grouping: estimate the grouping loss too: for every model (True) or for those named
            (each estimate fits decision trees, about a second).
        batch_size: images per forward pass (small enough to keep a notebook within Binder's
            memory).
        temperatures: ``{name: T}`` fitted on the clean validation split: those models' rows
            add ``"ts/cls/NLL"`` and ``"ts/cal/ECE"``, the same predictions scaled by T.

    Returns:
        One row per (model, corruption, severity): ``{"model", "corruption", "severity",
        "cls/Acc", "cls/NLL", "cal/ECE"[, "ens/MI"][, "ts/cls/NLL", "ts/cal/ECE"][, "cal/GL"]}``
        (``ens/MI``, the members' mutual information, for ensembles); the clean test set once
        per model (corruption ``"none"``, severity 0).
    """
    rows = []
    sets = [("none", 0)] + [(c, s) for c in CORRUPTIONS for s in severities if s > 0]
    for corruption, severity in sets:
        shifted = images if severity == 0 else corrupt(images, corruption, severity, seed)
        loader = TensorBatchLoader(shifted, labels, batch_size, shuffle=False, mean=stats[0],
                                   std=stats[1])  # fmt: skip
        for name, model in models.items():
            with_gl = grouping is True or (grouping and name in grouping)
            kept = predict(model, loader, features=with_gl)
            metrics = evaluate_predictions(kept["probs"], labels)
            row = {"model": name, "corruption": corruption, "severity": severity}
            row |= {k: metrics[k] for k in ("cls/Acc", "cls/NLL", "cal/ECE", "ens/MI")
                    if k in metrics}  # fmt: skip
            if temperatures and temperatures.get(name) is not None:
                scaled = evaluate_predictions(
                    apply_temperature(kept["probs"], temperatures[name]), labels
                )
                row |= {f"ts/{k}": scaled[k] for k in ("cls/NLL", "cal/ECE")}
            if with_gl:
                try:
                    row["cal/GL"] = grouping_loss(kept["probs"], labels, kept["features"])["GL"]
                except ValueError:  # all right (or all wrong): not defined
                    row["cal/GL"] = math.nan
            rows.append(row)
    return rows


def summarize_shift(
    rows: list[dict], key: str = "cls/Acc"
) -> dict[str, dict[int, tuple[float, float | None]]]:
    """``{model: {severity: (mean, std)}}`` of ``key``: for each seed the mean over corruptions,
    then the mean and standard deviation over seeds (std None with one seed). Severity 0 is the
    clean test set; rows without ``key`` (e.g. no grouping loss estimated) are left out."""
    per_seed: dict[str, dict[int, dict[Any, list[float]]]] = {}
    for row in (r for r in rows if key in r):
        by_severity = per_seed.setdefault(row["model"], {}).setdefault(row["severity"], {})
        by_severity.setdefault(row.get("seed"), []).append(row[key])
    out: dict[str, dict[int, tuple[float, float | None]]] = {}
    for model, by_severity in per_seed.items():
        out[model] = {}
        for severity, seeds in sorted(by_severity.items()):
            means = [statistics.fmean(values) for values in seeds.values()]
            out[model][severity] = (statistics.fmean(means), std_over_seeds(means))
    return out


# --- the comparison ----------------------------------------------------------------------------


def std_over_seeds(values: list[float]) -> float | None:
    """Sample standard deviation (ddof 1); None for one value, NaN if a value is NaN."""
    if len(values) < 2:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return statistics.stdev(values)


def _mean_std(values: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float | None]]:
    keys = [k for k in values[0] if all(k in v for v in values)]
    mean = {k: statistics.fmean(v[k] for v in values) for k in keys}
    return mean, {k: std_over_seeds([v[k] for v in values]) for k in keys}


@dataclass
class Comparison:
    """Every run of an experiment, grouped by model; what ``results.json`` is made of."""

    config: ExperimentConfig
    data: dict[str, Any]
    runs: dict[str, list[ModelResult]] = field(default_factory=dict)
    shift: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, result: ModelResult) -> None:
        self.runs.setdefault(result.name, []).append(result)

    def summary(self, name: str) -> dict[str, Any]:
        """``{"spec", "metrics" (mean), "std", "seeds" (per-seed metrics), timings,
        "temperature", "calibrated"}`` of one model."""
        runs = self.runs[name]
        mean, std = _mean_std([r.metrics for r in runs])
        out = {
            "spec": runs[0].spec.spec, "metrics": mean, "std": std,
            "seeds": [r.metrics for r in runs], "seed_values": [r.seed for r in runs],
            "fit_s": [r.fit_s for r in runs], "test_s": [r.test_s for r in runs],
            "train_images_per_s": [r.train_images_per_s for r in runs],
            "steps": [r.steps for r in runs],
        }  # fmt: skip
        if any(r.members for r in runs):
            out["members"] = [r.members for r in runs]  # per seed, per member
        if all(r.calibrated is not None for r in runs):
            c_mean, c_std = _mean_std([r.calibrated for r in runs])
            out["temperature"] = [r.temperature for r in runs]
            out["calibrated"] = {"metrics": c_mean, "std": c_std,
                                 "seeds": [r.calibrated for r in runs]}  # fmt: skip
        return out

    def columns(self, keys: tuple[str, ...] | None = None) -> tuple[dict, dict]:
        """Table columns ``{name: {key: mean}}`` and spreads ``{name: {key: std}}``: every metric
        (or ``keys``), the metrics after temperature scaling as ``ts/...`` and the training time
        as ``cplx/fit_s``."""
        means, spreads = {}, {}
        for name in self.runs:
            s = self.summary(name)
            mean, std = dict(s["metrics"]), dict(s["std"])
            if "calibrated" in s:
                temps = s["temperature"]
                mean["ts/T"], std["ts/T"] = statistics.fmean(temps), std_over_seeds(temps)
                shown = CALIBRATED_KEYS
                mean |= {f"ts/{k}": v for k, v in s["calibrated"]["metrics"].items() if k in shown}
                std |= {f"ts/{k}": v for k, v in s["calibrated"]["std"].items() if k in shown}
            if any(s["fit_s"]):
                mean["cplx/fit_s"] = statistics.fmean(s["fit_s"])
                std["cplx/fit_s"] = std_over_seeds(s["fit_s"])
            if keys is not None:
                wanted = set(keys) | {f"ts/{k}" for k in keys} | {"ts/T"}
                mean = {k: v for k, v in mean.items() if k in wanted}
            means[name], spreads[name] = mean, {k: std.get(k) for k in mean}
        return means, spreads

    def table(self, keys: tuple[str, ...] | None = None, title: str | None = None):
        """A :class:`~tutorial_lib.report.MetricTable` of every model (mean ± std over seeds)."""
        from tutorial_lib.report import MetricTable

        means, spreads = self.columns(keys)
        times = self.info.get("times")
        score = self.config.ood_score
        title = title or f"Test: {self.data['id']} (ID) vs {self.data['ood']} (OOD)" + (
            f"; OOD score {score}" if score != "msp" else "") + (
            f"; training time in {times}" if times else "")  # fmt: skip
        return MetricTable(means, title, spreads if self.config.seeds > 1 else None,
                           seeds=self.config.seeds)  # fmt: skip

    def baseline(self) -> str:
        """The name of the model the verdicts judge the others against: ``--baseline``, else
        the first model."""
        models = self.config.models
        chosen = models.index(self.config.baseline) if self.config.baseline else 0
        return self.config.specs[chosen].name

    def verdicts(self, baseline: str | None = None) -> list[str]:
        """Computed sentences: each model vs ``baseline`` (default :meth:`baseline`) on the
        headline metrics: better / worse / not distinguishable (see
        :func:`tutorial_lib.report.verdicts`)."""
        from tutorial_lib.report import verdicts

        baseline = baseline or self.baseline()
        if baseline not in self.runs:
            return []
        return verdicts({name: self.summary(name) for name in self.runs}, baseline)

    def predictions(self, name: str, seed_index: int = 0) -> dict[str, Tensor]:
        """The predictions of one model's run (see :class:`ModelResult`)."""
        return self.runs[name][seed_index].predictions

    def to_json(self, complete: bool) -> dict[str, Any]:
        """What ``results.json`` holds (strict JSON once written: NaN as null)."""
        return {
            "complete": complete,
            "config": self.config.as_dict(),
            "run": self.info | {"seeds": self.config.seed_list},
            "data": self.data,
            "models": {name: self.summary(name) for name in self.runs},
            **({"shift": self.shift} if self.shift else {}),
        }

    def save(self, out: str | Path, complete: bool) -> Path:
        """Write ``<out>/results.json`` atomically; returns its path."""
        path = Path(out) / "results.json"
        files.write_json(path, self.to_json(complete))
        return path


def prepare_output(out: str | Path) -> Path:
    """Make ``out`` a writable folder (with ``plots/``) before anything trains.

    Raises:
        OSError: ``out`` is a file, or cannot be created or written; the message names it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder: choose another --out.")
    try:
        (out / "plots").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OSError(f"--out {out} is not a writable folder ({err.strerror or err}): choose "
                      "another --out.") from err  # fmt: skip
    return out


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn Ctrl+C into :class:`RunInterrupted` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise RunInterrupted()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare(config: ExperimentConfig) -> tuple[MNISTDataModule, Path]:
    """Everything that can fail before training, checked in seconds: every model builds, ``out``
    is a writable folder, the data is there and verified, the pretrained checkpoints load.

    Returns:
        The data module, set up, and the output folder.

    Folders it created are removed again if a check fails: a failed start leaves no empty
    ``outputs/`` or ``data/`` behind.
    """
    for spec in config.specs:  # a width that does not split raises here
        build_model(spec)
    data = make_data(config)
    created = [_first_missing(Path(p)) for p in (config.out, data.root)]
    try:
        out = prepare_output(config.out)
        with files.folder_lock(out / LOCK, "checking"):  # in use elsewhere: refused at once
            pass
        data.prepare_data()
        data.setup()
        if config.pretrained:
            from tutorial_lib.hub import load_pretrained_ensemble

            load_pretrained_ensemble(config.pretrained)  # reachable and intact
    except BaseException:
        for folder in created:
            if folder is not None:
                _remove_empty(folder)
        raise
    return data, out


LOCK = ".lock"  # the lock file of a comparison's --out


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating it would add)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` (one this run created) if it holds no file but a lock, only empty
    folders."""
    if folder.is_dir() and not any(p.is_file() and p.name != LOCK for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def shift_rows(comparison: Comparison, data: MNISTDataModule) -> list[dict[str, Any]]:
    """Every trained model (every seed) on the corrupted test sets; the grouping loss, when asked,
    for each model's first seed only (36 estimates per model, about a second each)."""
    images, labels = data.splits["test"]
    runs = [r for rs in comparison.runs.values() for r in rs]
    models = {f"{r.name}|{r.seed}": r.model for r in runs}
    temperatures = {f"{r.name}|{r.seed}": r.temperature for r in runs}
    first = {f"{rs[0].name}|{rs[0].seed}" for rs in comparison.runs.values()}
    config = comparison.config
    rows = evaluate_shift(models, images.cpu(), labels.cpu(), (data.mean, data.std),
                          seed=config.seed, grouping=config.grouping_loss and first,
                          temperatures=temperatures)  # fmt: skip
    for row in rows:
        row["model"], seed = row["model"].rsplit("|", 1)
        row["seed"] = None if seed == "None" else int(seed)
    return rows


def run_comparison(
    config: ExperimentConfig, progress: Callable[[str], None] | None = None
) -> Comparison:
    """Train, test and compare the models of ``config``; write results, plots and logs.

    Fails fast (:func:`prepare`). One experiment at a time writes into ``out``: a lock refuses a
    second one at once (:class:`~tutorial_lib.files.FolderBusy`, naming the other process). The
    previous experiment's outputs (results, ``comparison.md``, plots, TensorBoard runs) move
    together to ``<out>/previous`` (``<out>/interrupted`` if it never finished) before anything
    is written. ``<out>/results.json`` is rewritten with ``"complete": false`` at the start and
    after every run, and ``"complete": true`` at the end; on Ctrl+C what finished is saved and
    :class:`RunInterrupted` is raised, its ``finished`` the number of runs saved. A run whose
    validation accuracy stays near chance is reported (``progress`` and ``info["warnings"]``).

    Args:
        config: the experiment (see :class:`~tutorial_lib.config.ExperimentConfig`).
        progress: called with one line of text after each step (the CLI prints it).

    Returns:
        The :class:`Comparison` (also ``<out>/results.json``, ``comparison.md``, ``plots/``,
        ``lightning_logs/<model>/seed<k>``).
    """
    say = progress or (lambda line: None)
    start = time.perf_counter()
    data, out = prepare(config)
    with files.folder_lock(out / LOCK, config.as_command()):
        return _run_locked(config, data, out, say, start)


# what one experiment writes into --out (moved aside together when the next one starts)
OUTPUTS = ("results.json", "comparison.md", "plots", "lightning_logs")


def _set_aside_previous(out: Path) -> Path | None:
    """The previous experiment's outputs go together to ``previous/`` (a complete one) or
    ``interrupted/``, never left beside the new results, never destroyed before a newer one
    completes."""
    results = out / "results.json"
    try:
        complete = bool(json.loads(results.read_text()).get("complete"))
    except (OSError, ValueError, AttributeError):
        complete = False  # no results, or unreadable: nothing complete to keep
    return files.set_aside(out, OUTPUTS, complete)


def _run_locked(
    config: ExperimentConfig, data: MNISTDataModule, out: Path, say: Callable[[str], None],
    start: float,
) -> Comparison:  # fmt: skip
    moved = _set_aside_previous(out)
    (out / "plots").mkdir(exist_ok=True)
    comparison = Comparison(
        config, {"dataset": config.dataset, "id": data.id_name, "ood": data.ood_name,
                 **data.sizes()},
        info={"machine": describe_machine(), "torch": torch.__version__,
              "command": config.as_command()},
    )  # fmt: skip
    runs = [(spec, seed) for spec in config.specs for seed in config.seed_list]
    accelerator = choose_accelerator(config.accelerator)  # a GPU's absence said once
    cache = runcache.cache_dir(config.cache) if config.cache else None
    keys = (
        [runcache.run_key(spec, config, seed, accelerator) for spec, seed in runs] if cache else []
    )
    entries = [runcache.entry_path(cache, runs[i][0], key) for i, key in enumerate(keys)]
    cached: dict[int, ModelResult] = {}
    for i, entry in enumerate(entries):  # what was trained before is loaded, not trained again
        result = _from_cache(entry, *runs[i], data.num_classes, config, out, say)
        if result is not None:
            cached[i] = result
    to_train = [i for i in range(len(runs)) if i not in cached]
    plan = plan_workers(len(to_train), config.workers, accelerator)
    times = "CPU seconds" if accelerator == "cpu" else "wall seconds"
    comparison.info |= {"workers": plan.workers, "threads_per_run": plan.threads,
                        "accelerator": accelerator, "times": times}  # fmt: skip
    if cache:
        comparison.info |= {"cache": str(cache), "cached_runs": len(cached)}
    comparison.save(out, complete=False)
    if moved:
        say(f"The previous experiment in {out} is now in {moved}")
    if cache:
        say(f"{len(cached)} of {len(runs)} run(s) loaded from the cache {cache}")
    say(f"{len(to_train)} run(s), {plan.describe()} (times: each run's {times})")

    def one_run(index: int) -> ModelResult:
        spec, seed = runs[to_train[index]]
        shutil.rmtree(out / "lightning_logs" / spec.slug / f"seed{seed}", ignore_errors=True)
        return fit_and_test(spec, data, config, seed, out / "lightning_logs",
                            worker=plan.side_by_side, accelerator=accelerator)  # fmt: skip

    def trained() -> Iterator[tuple[int, ModelResult]]:
        yield from cached.items()
        # closing(): the workers stop as soon as the loop does (an error, Ctrl+C)
        with closing(run_side_by_side(one_run, len(to_train), plan)) as results:
            for index, result in results:
                spec, seed = runs[to_train[index]]
                if cache:
                    logs = out / "lightning_logs" / spec.slug / f"seed{seed}"
                    i = to_train[index]
                    _to_cache(entries[i], keys[i], result, logs, say)
                yield to_train[index], result

    finished: dict[int, ModelResult] = {}
    try:
        with interruptible(), closing(trained()) as stream:
            for done, (index, result) in enumerate(stream, start=1):
                finished[index] = result
                comparison.runs.clear()  # in the order of the runs, not the order they finished
                for i in sorted(finished):
                    comparison.add(finished[i])
                spec, seed = runs[index]
                warning = near_chance(result)
                if warning:
                    comparison.info.setdefault("warnings", []).append(
                        f"{spec.name}, seed {seed}: {warning}")  # fmt: skip
                    say(f"Warning: {spec.name}, seed {seed}: {warning}")
                comparison.save(out, complete=False)
                origin = "from the cache, trained in" if index in cached else "fit"
                say(f"[{done}/{len(runs)}] {spec.name}, seed {seed}: {origin} "
                    f"{result.fit_s:.1f} s, test {result.test_s:.1f} s, accuracy "
                    f"{100 * result.metrics['cls/Acc']:.2f} %")  # fmt: skip
            if config.pretrained:
                comparison.add(evaluate_pretrained(config.pretrained, data, config, accelerator))
            if config.shift:
                comparison.shift = shift_rows(comparison, data)
                say(f"Shift: {len(comparison.shift)} evaluations")
    except RunInterrupted as stop:
        stop.finished = len(finished)
        raise
    finally:
        comparison.info["total_s"] = time.perf_counter() - start
        comparison.save(out, complete=False)  # what finished, whatever stopped the loop
    write_report(comparison, out)
    comparison.save(out, complete=True)
    return comparison


def _from_cache(
    entry: Path, spec: ModelSpec, seed: int, num_classes: int, config: ExperimentConfig,
    out: Path, say: Callable[[str], None],
) -> ModelResult | None:  # fmt: skip
    """The run stored in ``entry`` (its TensorBoard folder copied into ``out``), calibrated as
    ``config`` asks; None when it is not stored or cannot be read (then it trains again)."""
    try:
        payload = runcache.load(entry)
    except ValueError as err:
        say(f"Warning: {err}: training it again")
        return None
    if payload is None:
        return None
    model = build_model(spec, num_classes)
    model.load_state_dict(payload["state_dict"])
    result = ModelResult(
        spec, seed, payload["metrics"], payload["fit_s"], payload["test_s"],
        payload["train_images_per_s"], payload["steps"], members=payload["members"],
        predictions=payload["predictions"], model=model.eval(),
        figures={k: v.numpy().tobytes() for k, v in payload["figures"].items()},
    )  # fmt: skip
    logs = out / "lightning_logs" / spec.slug / f"seed{seed}"
    shutil.rmtree(logs, ignore_errors=True)
    if (entry / "logs").is_dir():
        shutil.copytree(entry / "logs", logs)
    if config.calibrate == "temperature":
        calibrate(result, config.ood_score)
    return result


def _to_cache(
    entry: Path, key: dict, result: ModelResult, logs: Path, say: Callable[[str], None]
) -> None:
    """Store a trained run; a cache that cannot be written is reported, and the run goes on."""
    payload = {
        "metrics": result.metrics, "fit_s": result.fit_s, "test_s": result.test_s,
        "train_images_per_s": result.train_images_per_s, "steps": result.steps,
        "members": result.members, "predictions": result.predictions,
        "state_dict": result.model.state_dict(),
        "figures": {k: torch.frombuffer(bytearray(v), dtype=torch.uint8)
                    for k, v in result.figures.items()},
    }  # fmt: skip
    try:
        runcache.store(entry, key, payload, logs)
    except OSError as err:
        say(f"Warning: the run was not cached ({err})")


def near_chance(result: ModelResult, margin: float = 0.1) -> str | None:
    """A warning when a run's validation accuracy stays within ``margin`` of chance (1/C): it
    learned nothing (too high a learning rate, a broken input). None otherwise, or without a
    validation split."""
    probs, targets = result.predictions.get("val_probs"), result.predictions.get("val_targets")
    if probs is None or targets is None or len(targets) == 0:
        return None
    accuracy = float((probs.mean(1).argmax(-1) == targets).double().mean())
    chance = 1 / probs.shape[-1]
    if accuracy > chance + margin:
        return None
    return (f"validation accuracy {100 * accuracy:.1f} %, near chance ({100 * chance:.0f} %): "
            "it learned nothing; try a lower learning rate (--lr).")  # fmt: skip


def write_report(comparison: Comparison, out: Path) -> None:
    """``comparison.md`` (table and verdicts) and the plots under ``<out>/plots``."""
    from functools import partial

    from tutorial_lib import plots

    table = comparison.table()
    lines = [table.to_markdown(), *[f"- {v}" for v in comparison.verdicts()]]
    files.write_text(out / "comparison.md", "\n".join(lines) + "\n")
    drawings: dict[str, Callable[[], Any]] = {}
    for name, runs in comparison.runs.items():
        p = runs[0].predictions
        slug = runs[0].spec.slug if runs[0].spec.spec != "pretrained" else "pretrained"
        drawn = runs[0].figures.get("reliability")  # drawn at test time for TensorBoard
        if drawn:
            files.write_bytes(out / "plots" / f"{slug}_reliability.png", drawn)
        else:  # a run without a logger
            drawings[f"{slug}_reliability"] = partial(
                plots.reliability_diagram, p["probs"], p["targets"], title=name
            )
        drawings[f"{slug}_ood"] = partial(
            plots.ood_histograms, p["probs"], p["ood_probs"], name,
            f"{comparison.data['id']} (ID)", f"{comparison.data['ood']} (OOD)",
        )  # fmt: skip
    drawings["risk_coverage"] = partial(
        plots.risk_coverage_plot,
        {n: (r[0].predictions["probs"], r[0].predictions["targets"])
         for n, r in comparison.runs.items()},
    )  # fmt: skip
    if comparison.shift:
        drawings["shift"] = partial(plots.shift_boxplots, comparison.shift)
    plots.write_figures(drawings, out / "plots")


def describe_outputs(out: str | Path) -> str:
    """One paragraph telling where the comparison's outputs are."""
    out = Path(out)
    return (
        f"Results: {out / 'results.json'} and {out / 'comparison.md'}; plots: {out / 'plots'}; "
        f"TensorBoard: tensorboard --logdir {out / 'lightning_logs'}"
    )

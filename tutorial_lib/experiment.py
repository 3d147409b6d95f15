"""The main job: train and compare a single LeNet, a deep ensemble and a Packed-Ensemble.

This reproduces the reference tutorial's experiment end to end (same models, same augmentation,
3 epochs, test on MNIST + FashionMNIST) with this course's data path, recipe and metrics.
``tutorial-lib compare`` and ``benchmarks/compare.py`` call :func:`run_comparison`.

Each model gets its own seed (``seed``), so a model's results do not depend on which other models
run. The deep ensemble trains fused: its members are packed into one
``PackedLeNet(alpha=M, num_estimators=M)``, which computes exactly what M separate LeNets compute
(see :func:`tutorial_lib.ensembles.pack_lenets`), one kernel per layer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from tutorial_lib.data import MNISTDataModule
from tutorial_lib.ensembles import RepeatTarget, pack_lenets
from tutorial_lib.models import LeNet, PackedLeNet
from tutorial_lib.routine import ClassificationRoutine, predict
from tutorial_lib.trainer import describe_machine, make_trainer, seed_everything

MODELS = ("lenet", "deep-ensemble", "packed")
PROFILES = {
    "full": {"train_subset": None, "eval_subset": None, "epochs": 3},
    "quick": {"train_subset": 4096, "eval_subset": 2000, "epochs": 1, "batch_size": 128},
}


@dataclass
class CompareConfig:
    """Settings of :func:`run_comparison` (the CLI's options)."""

    models: tuple[str, ...] = MODELS
    members: int = 2
    alpha: float = 2
    num_estimators: int = 4
    gamma: int = 1
    epochs: int = 3
    batch_size: int = 512
    seed: int = 0
    recipe: str = "default"
    data_dir: str | None = None
    mirror: str | None = None
    out: str = "outputs/compare"
    profile: str = "full"
    accelerator: str | None = None
    grouping_loss: bool = False
    pretrained: str | None = None
    holdout: int = 0
    shift: bool = False
    train_subset: int | None = None
    eval_subset: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODELS)
        if unknown or not self.models:
            raise ValueError(f"Unknown model(s) {sorted(unknown)}: choose among {list(MODELS)}.")
        if self.profile not in PROFILES:
            raise ValueError(f"Unknown profile {self.profile!r}: choose one of {list(PROFILES)}.")
        for arg in ("members", "num_estimators", "gamma", "epochs", "batch_size"):
            if getattr(self, arg) < 1:
                raise ValueError(
                    f"--{arg.replace('_', '-')} must be >= 1, got {getattr(self, arg)}."
                )
        if self.alpha <= 0:
            raise ValueError(f"--alpha must be > 0, got {self.alpha}.")


def build_model(kind: str, config: CompareConfig) -> tuple[str, nn.Module, int]:
    """``(display name, model, number of members)`` for one of :data:`MODELS`."""
    if kind == "lenet":
        return "LeNet", LeNet(1, 10), 1
    if kind == "deep-ensemble":
        m = config.members
        return f"Deep Ensemble (M={m})", pack_lenets([LeNet(1, 10) for _ in range(m)]), m
    m = config.num_estimators
    model = PackedLeNet(1, 10, alpha=config.alpha, num_estimators=m, gamma=config.gamma)
    return f"Packed-Ensemble (alpha={config.alpha:g}, M={m})", model, m


def _lr_mult(config: CompareConfig, members: int) -> float:
    # the reference's SGD recipe scales its learning rate by the number of members
    return float(members) if config.recipe == "reference" else 1.0


def current_profile(name: str | None = None) -> str:
    """The run profile: ``name``, else ``$TUTORIAL_PROFILE``, else ``"full"``.

    ``full`` is the reference's setting (all data, 3 epochs); ``quick`` (4,096 training images,
    2,000 test images, 1 epoch) is for CI and smoke tests.
    """
    profile = name or os.environ.get("TUTORIAL_PROFILE") or "full"
    if profile not in PROFILES:
        raise ValueError(
            f"Unknown profile {profile!r} (TUTORIAL_PROFILE): use one of {list(PROFILES)}."
        )
    return profile


def _evaluate_pretrained(config, datamodule, out, grouping) -> tuple[str, ClassificationRoutine]:
    from tutorial_lib.hub import load_pretrained_ensemble

    ensemble = load_pretrained_ensemble(config.pretrained)
    name = f"Pretrained ensemble (M={ensemble.num_estimators})"
    routine = ClassificationRoutine(
        pack_lenets(list(ensemble.models)), 10, is_ensemble=True, eval_ood=True,
        eval_grouping_loss=grouping, name=name, verbose=False,
    )  # fmt: skip
    trainer = make_trainer(1, "pretrained", log_dir=out / "lightning_logs",
                           accelerator=config.accelerator, **config.extra)  # fmt: skip
    trainer.test(routine, datamodule, verbose=False)
    return name, routine


def run_comparison(config: CompareConfig) -> dict:
    """Train, test and compare the models of ``config``; write results, plots and logs.

    Returns:
        ``{"config", "models": {name: {"metrics", "fit_s", "test_s", "train_images_per_s"}},
        "total_s"}`` (also written to ``<out>/results.json``), plus ``"table"`` (the
        :class:`~tutorial_lib.report.MetricTable`), ``"predictions"`` (``{name:
        routine.test_predictions}``) and, with ``holdout``, ``"holdout"`` (``{name: {"probs",
        "targets"}}`` on the held-out training images).
    """
    import matplotlib.pyplot as plt

    from tutorial_lib import plots, report

    profile = PROFILES[config.profile]
    train_subset = config.train_subset or profile["train_subset"]
    eval_subset = config.eval_subset or profile["eval_subset"]
    epochs = profile["epochs"] if config.profile == "quick" else config.epochs
    out = Path(config.out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    batch_size = profile.get("batch_size", config.batch_size)  # quick: enough steps to learn
    datamodule = MNISTDataModule(
        config.data_dir, config.mirror, batch_size=batch_size, seed=config.seed,
        train_subset=train_subset, eval_subset=eval_subset, holdout=config.holdout,
    )  # fmt: skip
    results: dict = {"config": asdict(config) | {"epochs": epochs}, "models": {}}
    kept, held, trained = {}, {}, {}
    start = time.perf_counter()
    for kind in config.models:
        seed_everything(config.seed)
        name, model, members = build_model(kind, config)
        routine = ClassificationRoutine(
            model, 10, optim_recipe=config.recipe, is_ensemble=members > 1,
            format_batch_fn=RepeatTarget(members) if members > 1 else None, eval_ood=True,
            eval_grouping_loss=config.grouping_loss, lr_mult=_lr_mult(config, members),
            name=name, verbose=False,
        )  # fmt: skip
        trainer = make_trainer(
            epochs, kind, log_dir=out / "lightning_logs", accelerator=config.accelerator,
            **config.extra,
        )  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(routine, datamodule)
        t1 = time.perf_counter()
        trainer.test(routine, datamodule, verbose=False)
        t2 = time.perf_counter()
        n_train = len(datamodule.splits["train"][1]) * epochs
        results["models"][name] = {
            "metrics": routine.test_results,
            "fit_s": t1 - t0,
            "test_s": t2 - t1,
            "train_images_per_s": n_train / (t1 - t0),
        }
        kept[name] = routine.test_predictions
        trained[name] = routine.model
        if config.holdout:
            held[name] = predict(routine.model, datamodule.holdout_dataloader())
    if config.pretrained:
        t1 = time.perf_counter()
        name, routine = _evaluate_pretrained(config, datamodule, out, config.grouping_loss)
        results["models"][name] = {
            "metrics": routine.test_results, "fit_s": 0.0,
            "test_s": time.perf_counter() - t1, "train_images_per_s": float("nan"),
        }  # fmt: skip
        kept[name] = routine.test_predictions
    results["total_s"] = time.perf_counter() - start
    if config.shift:
        from tutorial_lib.shift import evaluate_shift, plot_shift

        results["shift"] = evaluate_shift(
            trained, root=config.data_dir, mirror=config.mirror, seed=config.seed,
            subset=eval_subset, grouping=config.grouping_loss,
        )  # fmt: skip
        fig = plot_shift(results["shift"])
        fig.savefig(out / "plots" / "shift.png", dpi=100)
        plt.close(fig)

    for name, pred in kept.items():
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()
        for suffix, fig in (
            ("reliability", plots.reliability_diagram(pred["probs"], pred["targets"], title=name)),
            ("ood", plots.ood_histograms(pred["probs"], pred["ood_probs"], name)),
        ):
            fig.savefig(out / "plots" / f"{slug}_{suffix}.png", dpi=100)
            plt.close(fig)
    fig = plots.risk_coverage_plot({n: (p["probs"], p["targets"]) for n, p in kept.items()})
    fig.savefig(out / "plots" / "risk_coverage.png", dpi=100)
    plt.close(fig)
    table = report.compare(
        {n: r["metrics"] for n, r in results["models"].items()}, title="Test: MNIST vs FashionMNIST"
    )
    (out / "comparison.md").write_text(table.to_markdown())
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    return results | {"table": table, "predictions": kept, "holdout": held}


def describe_outputs(out: str | os.PathLike) -> str:
    """One paragraph telling where the comparison's outputs are."""
    out = Path(out)
    return (
        f"Results: {out / 'results.json'} and {out / 'comparison.md'}; plots: {out / 'plots'}; "
        f"TensorBoard: tensorboard --logdir {out / 'lightning_logs'}"
    )


# Long runs take a gentler peak learning rate than the 3-epoch default (0.01 instead of 0.03):
# at 10 epochs both reach 98.9 % with one LeNet, and the lower peak is the safer one over 75.
PRETRAIN_LR_MULT = 1 / 3


def pretrain_ensemble(
    members: int = 8,
    epochs: int = 75,
    out: str | os.PathLike = "data/pretrained",
    seed: int = 0,
    data_dir: str | None = None,
    mirror: str | None = None,
    accelerator: str | None = None,
    train_subset: int | None = None,
    eval_subset: int | None = None,
) -> dict:
    """Train ``members`` LeNets from seeds ``seed, seed+1, ...`` and write them with a manifest.

    The members train fused (one ``PackedLeNet(alpha=M, num_estimators=M)``, the default recipe
    over all ``epochs``): each member sees the same batches as the others and differs by its
    initialisation, the usual deep-ensemble recipe. Then each member is evaluated alone and the
    ensemble as a whole, and ``<out>`` receives ``lenet_<i>.ckpt`` (the reference's checkpoint
    format), ``manifest.json`` and the run's TensorBoard logs (``<out>/lightning_logs``).

    Returns:
        The manifest.
    """
    from tutorial_lib import hub
    from tutorial_lib.ensembles import unpack_lenets
    from tutorial_lib.metrics import evaluate_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [seed + i for i in range(members)]
    lenets = []
    for s in seeds:
        seed_everything(s)
        lenets.append(LeNet(1, 10))
    seed_everything(seed)
    datamodule = MNISTDataModule(data_dir, mirror, seed=seed, train_subset=train_subset,
                                 eval_subset=eval_subset)  # fmt: skip
    routine = ClassificationRoutine(
        pack_lenets(lenets), 10, is_ensemble=True, format_batch_fn=RepeatTarget(members),
        eval_ood=True, name=f"Pretrained deep ensemble (M={members})", verbose=False,
        lr_mult=PRETRAIN_LR_MULT,
    )  # fmt: skip
    trainer = make_trainer(
        epochs, "pretrain", log_dir=out / "lightning_logs", accelerator=accelerator
    )
    start = time.perf_counter()
    trainer.fit(routine, datamodule)
    fit_s = time.perf_counter() - start
    trainer.test(routine, datamodule, verbose=False)
    kept = routine.test_predictions
    files, per_member = [], []
    trained = unpack_lenets(routine.model.cpu().to(memory_format=torch.contiguous_format))
    for i, (model, s) in enumerate(zip(trained, seeds, strict=True)):
        name = f"lenet_{i}.ckpt"
        files.append({"file": name, "sha256": hub.save_member(model, out / name), "seed": s})
        member = evaluate_predictions(kept["probs"][:, i], kept["targets"], kept["ood_probs"][:, i])
        per_member.append({k: member[k] for k in ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC")})
    manifest = {
        "description": f"{members} LeNets trained by `tutorial-lib pretrain` (fused deep ensemble)",
        "files": files,
        "epochs": epochs,
        "batch_size": datamodule.batch_size,
        "recipe": f"default recipe at lr_mult {PRETRAIN_LR_MULT:.4g} (AdamW, peak lr "
        f"{0.03 * PRETRAIN_LR_MULT:.3g}, one-cycle over all steps), RandomCrop(28, padding=4)",
        "train_images": len(datamodule.splits["train"][1]),
        "test_images": {"MNIST": len(kept["targets"]), "FashionMNIST": len(kept["ood_probs"])},
        "members": per_member,
        "ensemble": routine.test_results,
        "fit_seconds": round(fit_s, 1),
        "machine": describe_machine(),
        "device": str(trainer.strategy.root_device),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

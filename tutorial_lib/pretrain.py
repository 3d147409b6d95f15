"""``tutorial-lib pretrain``: train the course's pretrained deep ensemble and ship it safely.

The members train fused (one ``PackedLeNet(alpha=M, num_estimators=M)``, see
:func:`tutorial_lib.ensembles.fuse`): each sees the same batches and differs by its initialisation,
the usual deep-ensemble recipe. They train on the training images minus the validation split, so
that chapter 7 can calibrate them on data they never saw.

Nothing is lost if the run stops half-way: everything is written into a staging folder beside
``--out`` (``.<name>.staging-<pid>``), and the finished set (checkpoints, manifest, logs) is swapped
in at the end with two renames. A populated ``--out`` is replaced only with ``force=True``. A lock
beside ``--out`` refuses a second pretrain into it, and only the staging folders of processes that
no longer run are cleaned up.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tutorial_lib import files
from tutorial_lib.compare import NUM_CLASSES, interruptible, make_data
from tutorial_lib.config import ExperimentConfig
from tutorial_lib.ensembles import RepeatTarget, deep_ensembles, fuse, unfuse
from tutorial_lib.hub import save_member
from tutorial_lib.metrics import evaluate_predictions
from tutorial_lib.models import LeNet
from tutorial_lib.recipes import DEFAULT_LR
from tutorial_lib.routine import ClassificationRoutine
from tutorial_lib.trainer import describe_machine, make_trainer, seed_everything

MEMBER_KEYS = ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC")


def _holds_checkpoints(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "manifest.json").exists() or any(folder.glob("*.ckpt")))


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``: rename the old folder aside, rename the new one in."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def pretrain_ensemble(config: ExperimentConfig, members: int = 8, force: bool = False) -> dict:
    """Train ``members`` LeNets from seeds ``config.seed, +1, ...``; write them with a manifest.

    ``config.out`` receives ``lenet_<i>.ckpt`` (the reference's checkpoint format),
    ``manifest.json`` (files, sha256, seeds, recipe, data, each member's and the ensemble's test
    metrics, machine) and the run's TensorBoard logs (``lightning_logs/pretrain/seed<k>``).

    Raises:
        FileExistsError: ``config.out`` already holds checkpoints and ``force`` is False.
        FolderBusy: another pretrain writes to ``config.out``.
        RunInterrupted: Ctrl+C (the staging folder is removed; ``config.out`` is untouched).
        ValueError: fewer than 2 members.
    """
    if members < 2:
        raise ValueError(f"--members must be >= 2, got {members}.")
    out = Path(config.out)
    if _holds_checkpoints(out) and not force:
        raise FileExistsError(
            f"{out} already holds checkpoints: pass --force to replace them "
            "(they are swapped out only once the new set is complete)."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.folder_lock(out.parent / f".{out.name}.lock", f"tutorial-lib pretrain --out {out}"):
        for stale in out.parent.glob(f".{out.name}.staging-*"):
            if not _owner_alive(stale):  # a killed run's leftovers, never a live run's folder
                shutil.rmtree(stale, ignore_errors=True)
        staging = out.parent / f".{out.name}.staging-{os.getpid()}"
        staging.mkdir()
        try:
            with interruptible():
                manifest = _train_into(staging, config, members)
            _swap_in(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _owner_alive(staging: Path) -> bool:
    """Whether the process whose id ends the staging folder's name still runs."""
    try:
        pid = int(staging.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process's own leftover (a reused id): not a live run's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _train_into(folder: Path, config: ExperimentConfig, members: int) -> dict:
    seeds = [config.seed + i for i in range(members)]
    lenets = []
    for s in seeds:
        seed_everything(s)
        lenets.append(LeNet(1, NUM_CLASSES))
    seed_everything(config.seed)
    data = make_data(config)
    routine = ClassificationRoutine(
        fuse(deep_ensembles(lenets)), NUM_CLASSES, is_ensemble=True, eval_ood=True,
        format_batch_fn=RepeatTarget(members), lr=config.lr,
    )  # fmt: skip
    name = f"Pretrained deep ensemble (M={members})"
    trainer = make_trainer(config.epochs, "pretrain", folder / "lightning_logs",
                           version=f"seed{config.seed}", title=name,
                           hparams={"name": name, "seeds": str(seeds)},
                           accelerator=config.accelerator, recipe=config.recipe)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(routine, data)
    fit_s = time.perf_counter() - start
    trainer.test(routine, data, verbose=False)
    kept = routine.test_predictions
    trained = unfuse(routine.model.cpu())
    entries, per_member = [], []
    for i, (model, s) in enumerate(zip(trained.models, seeds, strict=True)):
        filename = f"lenet_{i}.ckpt"
        entries.append({"file": filename, "sha256": save_member(model, folder / filename),
                        "seed": s})  # fmt: skip
        member = evaluate_predictions(kept["probs"][:, i], kept["targets"], kept["ood_probs"][:, i])
        per_member.append({k: member[k] for k in MEMBER_KEYS})
    lr = config.lr if config.lr is not None else DEFAULT_LR
    manifest = {
        "description": f"{members} LeNets trained by `tutorial-lib pretrain` (fused deep ensemble)",
        "files": entries,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "recipe": f"default recipe (AdamW, peak lr {lr:g}, one-cycle over all steps), "
        "RandomCrop(28, padding=4)",
        "data": data.sizes()
        | {
            "val_size": config.val_size,
            "val_split": "fixed seed (tutorial_lib.data.VAL_SPLIT_SEED)",
        },  # fmt: skip
        "test_images": {data.id_name: len(kept["targets"]), data.ood_name: len(kept["ood_probs"])},
        "members": per_member,
        "ensemble": routine.test_results,
        "fit_seconds": round(fit_s, 1),
        "machine": describe_machine(),
        "device": str(trainer.strategy.root_device),
    }
    files.write_json(folder / "manifest.json", manifest)
    return json.loads((folder / "manifest.json").read_text())

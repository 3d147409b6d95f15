"""Routine, recipes and trainer: end-to-end on a few hundred images, TensorBoard, DDP."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tutorial_lib import recipes, trainer
from tutorial_lib.data import MNISTDataModule
from tutorial_lib.ensembles import RepeatTarget
from tutorial_lib.models import LeNet, PackedLeNet
from tutorial_lib.routine import ClassificationRoutine
from tutorial_lib.trainer import ReliabilityFigure, make_trainer, seed_everything


@pytest.fixture
def small_data(real_root):
    return MNISTDataModule(real_root, os.devnull, batch_size=256, eval_batch_size=256,
                           train_subset=2048, eval_subset=300, val_size=500)  # fmt: skip


def test_fit_and_test_end_to_end_with_tensorboard(small_data, tmp_path):
    seed_everything(0)
    routine = ClassificationRoutine(PackedLeNet(1, 10, 2, 4), 10, is_ensemble=True,
                                    format_batch_fn=RepeatTarget(4), eval_ood=True,
                                    eval_grouping_loss=True)  # fmt: skip
    tr = make_trainer(2, "packed", log_dir=tmp_path, title="packed", enable_progress_bar=False)
    tr.fit(routine, small_data)
    tr.test(routine, small_data, verbose=False)
    results = routine.test_results
    assert 0.5 < results["cls/Acc"] <= 1  # 2 short epochs (16 steps): far above chance (0.1)
    for key in ("cal/ECE", "sc/AURC", "ood/AUROC", "ens/MI", "ood/ens_MI", "cal/GL"):
        assert key in results
    assert results["cplx/params"] == 45_672
    kept = routine.test_predictions
    assert kept["probs"].shape == (300, 4, 10) and kept["ood_probs"].shape == (300, 4, 10)
    assert kept["features"].shape == (300, 4, 42) and kept["targets"].shape == (300,)

    version = tmp_path / "packed" / "version_0"
    events = EventAccumulator(str(version), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "lr-AdamW", "val/Acc", "val/NLL", "val/ECE"} <= scalars
    assert {"test/cls/Acc", "test/ood/AUROC", "test/cal/ECE"} <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [9]  # every 10 steps; 16 steps
    assert len(events.Scalars("val/Acc")) == 2  # every epoch, on the validation split
    (image,) = events.Images("test/reliability_diagram")
    assert (image.width, image.height) == (450, 540)  # 5 x 6 inches at the report's 90 dpi
    (figure,) = [c for c in tr.callbacks if isinstance(c, ReliabilityFigure)]
    shown, kept = (Image.open(io.BytesIO(png)).convert("RGB")
                   for png in (image.encoded_image_string, figure.png))  # fmt: skip
    assert np.array_equal(np.asarray(shown), np.asarray(kept))  # the PNG a report writes
    hparams = (version / "hparams.yaml").read_text()
    assert "recipe: default" in hparams and "model: PackedLeNet" in hparams
    assert events.Scalars("hparams/Acc")[-1].value == pytest.approx(results["cls/Acc"])


def test_single_model_refuses_ensemble_output_and_extra_loader(small_data):
    small_data.prepare_data()
    small_data.setup()
    routine = ClassificationRoutine(PackedLeNet(1, 10, 2, 2), 10, eval_ood=False)
    tr = make_trainer(1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="is_ensemble=True"):
        tr.test(routine, small_data.eval_loader("test"), verbose=False)
    routine = ClassificationRoutine(LeNet(), 10, eval_ood=False)
    with pytest.raises(ValueError, match="eval_ood=True"):
        tr.test(routine, small_data.test_dataloader(), verbose=False)
    with pytest.raises(ValueError, match="feats_forward"):
        ClassificationRoutine(torch.nn.Linear(784, 10), 10, eval_grouping_loss=True)


def test_reference_scheduler_key_is_applied_with_one_warning(small_data, monkeypatch):
    monkeypatch.setattr(recipes, "_warned_scheduler_key", False)
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    routine = ClassificationRoutine(model, 10, optim_recipe={"optimizer": optimizer,
                                                            "scheduler": scheduler})  # fmt: skip
    with pytest.warns(UserWarning, match="Lightning only reads 'lr_scheduler'"):
        make_trainer(2, logger=False, enable_progress_bar=False,
                     limit_val_batches=0).fit(routine, small_data)  # fmt: skip
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1**2)  # it decayed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        recipes.normalize_recipe({"optimizer": optimizer, "scheduler": scheduler})


def test_recipe_resolution_and_errors():
    model = LeNet()
    default = recipes.resolve_recipe(None, model, 100)
    assert isinstance(default["optimizer"], torch.optim.AdamW)
    assert default["lr_scheduler"]["interval"] == "step"
    group = default["optimizer"].param_groups[0]
    assert group["max_lr"] == recipes.DEFAULT_LR  # the peak, lr_mult 1 by default
    assert group["betas"][1] == 0.98 and group["weight_decay"] == 0.0  # (one-cycle moves beta 1)
    assert default["lr_scheduler"]["scheduler"].total_steps == 100
    assert recipes.resolve_recipe(None, model, 3)["lr_scheduler"]["scheduler"].total_steps == 8
    doubled = recipes.resolve_recipe("default", model, 100, lr_mult=2, lr=0.01)
    assert doubled["optimizer"].param_groups[0]["max_lr"] == pytest.approx(0.02)
    reference = recipes.resolve_recipe("reference", model, 100, lr_mult=2)
    assert reference["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1)
    assert reference["lr_scheduler"].T_max == 10  # the reference's cosine over 10 epochs
    assert recipes.resolve_recipe("reference", model, 100)["optimizer"].param_groups[0]["lr"] == (
        recipes.REFERENCE_LR
    )
    steps = []
    custom = recipes.resolve_recipe(
        lambda m, n: steps.append(n) or {"optimizer": torch.optim.SGD(m.parameters(), 0.1)},
        model, 7,
    )  # fmt: skip
    assert steps == [7]  # a custom recipe gets the step count
    assert isinstance(custom["optimizer"], torch.optim.SGD)
    with pytest.raises(ValueError, match="Unknown recipe"):
        recipes.resolve_recipe("fast", model, 1)
    with pytest.raises(ValueError, match="'optimizer'"):
        recipes.normalize_recipe({"lr_scheduler": None})
    opt = torch.optim.SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="keep one"):
        recipes.normalize_recipe({"optimizer": opt, "scheduler": 1, "lr_scheduler": 2})


def test_gpu_request_falls_back_to_cpu_with_one_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no GPU") as record:
        tr = make_trainer(1, accelerator="gpu", logger=False, enable_progress_bar=False)
    assert len([w for w in record if "no GPU" in str(w.message)]) == 1
    assert tr.strategy.root_device.type == "cpu"
    assert trainer.available_accelerator() == "cpu"
    with pytest.raises(ValueError, match="max_epochs"):
        make_trainer(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what the trainer will use, asked without a warning
        assert [trainer.resolved_accelerator(a) for a in ("gpu", "auto", None, "cpu")] == [
            "cpu", "cpu", "cpu", "cpu"]  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [trainer.resolved_accelerator(a) for a in ("gpu", "auto", "cpu")] == [
        "cuda", "cuda", "cpu"]  # fmt: skip


def test_the_loss_is_logged_only_on_the_steps_the_trainer_writes():
    routine = ClassificationRoutine(LeNet(), 10)
    assert routine._writes_step_logs()  # no trainer attached: log
    for step, every, writes in ((9, 10, True), (8, 10, False), (19, 10, True), (3, 1, True),
                                (4, 5, True), (9, 0, False)):  # fmt: skip
        routine._trainer = types.SimpleNamespace(global_step=step, log_every_n_steps=every)
        assert routine._writes_step_logs() is writes, (step, every)


def test_seeding_makes_runs_identical(small_data):
    def run():
        seed_everything(3)
        routine = ClassificationRoutine(LeNet(), 10)
        make_trainer(1, logger=False, enable_progress_bar=False, limit_val_batches=0).fit(
            routine, small_data
        )
        return torch.cat([p.detach().flatten() for p in routine.model.parameters()])

    assert torch.equal(run(), run())


DDP_SCRIPT = """
import json, os, sys
import torch
from tutorial_lib.data import MNISTDataModule
from tutorial_lib.ensembles import RepeatTarget
from tutorial_lib.models import PackedLeNet
from tutorial_lib.routine import ClassificationRoutine
from tutorial_lib.trainer import make_trainer, seed_everything

root, out = sys.argv[1], sys.argv[2]
seed_everything(0)
model = PackedLeNet(1, 10, 2, 2)
dm = MNISTDataModule(root, os.devnull, eval_batch_size=128, train_subset=256, eval_subset=1001)
routine = ClassificationRoutine(model, 10, is_ensemble=True, format_batch_fn=RepeatTarget(2),
                                eval_ood=True)
tr = make_trainer(1, logger=False, enable_progress_bar=False, accelerator="cpu", devices=2,
                  strategy="ddp", limit_val_batches=0)
tr.fit(routine, dm)
tr.test(routine, dm, verbose=False)
if tr.is_global_zero:
    torch.save(routine.model.state_dict(), out + ".pt")
    with open(out, "w") as f:
        n = len(routine.test_predictions["targets"])
        json.dump({"results": routine.test_results, "n": n}, f)
"""


@pytest.mark.subprocess
def test_ddp_metrics_equal_single_process(real_root, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    out = tmp_path / "ddp.json"
    env = dict(os.environ, PL_DISABLE_FORK="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(real_root), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert ddp["n"] == 1001  # every test image once: no padding, no double counting

    model = PackedLeNet(1, 10, 2, 2)
    model.load_state_dict(torch.load(str(out) + ".pt", weights_only=True))
    dm = MNISTDataModule(real_root, os.devnull, eval_batch_size=128, eval_subset=1001)
    routine = ClassificationRoutine(model, 10, is_ensemble=True, eval_ood=True)
    make_trainer(1, logger=False, enable_progress_bar=False).test(routine, dm, verbose=False)
    for key, value in routine.test_results.items():
        assert ddp["results"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_describe_machine_names_the_threads():
    assert "threads" in trainer.describe_machine()


def test_the_trainer_applies_the_cpu_tuning_and_can_leave_it_off(small_data):
    def fitted(**kwargs):
        seed_everything(0)
        routine = ClassificationRoutine(LeNet(), 10)
        make_trainer(1, logger=False, limit_train_batches=1, limit_val_batches=0,
                     accelerator="cpu", **kwargs).fit(routine, small_data)  # fmt: skip
        return routine.model.conv2.weight

    weight = fitted()
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()  # really converted (a 16x6x5x5 weight cannot be both)
    assert fitted(cpu_tuning=False).is_contiguous()


def test_divergence_stops_training_with_a_clear_message(small_data):
    routine = ClassificationRoutine(LeNet(), 10, lr=1e6)
    tr = make_trainer(2, logger=False, limit_val_batches=0)
    with pytest.raises(trainer.TrainingDiverged, match=r"training diverged at epoch 0, step \d+ "
                       r"\(loss = .*\): lower the learning rate"):  # fmt: skip
        tr.fit(routine, small_data)
    guard = trainer.DivergenceGuard(factor=20, floor=100, every=1)
    guard.on_train_batch_end(tr, routine, {"loss": torch.tensor(2.3)}, None, 0)
    guard.on_train_batch_end(tr, routine, torch.tensor(99.0), None, 1)  # below the floor: fine
    with pytest.raises(trainer.TrainingDiverged, match="loss = 101.*or use the default recipe"):
        guard.on_train_batch_end(tr, routine, torch.tensor(101.0), None, 2)
    guard = trainer.DivergenceGuard(every=1, recipe="default")
    with pytest.raises(trainer.TrainingDiverged, match=r"lower the learning rate \(--lr\)\.$"):
        guard.on_train_batch_end(tr, routine, torch.tensor(math.nan), None, 0)
    with pytest.raises(trainer.TrainingDiverged, match="loss = nan"):
        guard.on_train_batch_end(tr, routine, torch.tensor(float("nan")), None, 3)
    sparse = trainer.DivergenceGuard(every=10)  # reads the loss at batches 0, 10, ... and the last
    nan = torch.tensor(float("nan"))
    for batch_idx in (1, 9, 11):
        sparse.on_train_batch_end(tr, routine, nan, None, batch_idx)
    with pytest.raises(trainer.TrainingDiverged, match="loss = nan"):
        sparse.on_train_batch_end(tr, routine, nan, None, 20)
    with pytest.raises(trainer.TrainingDiverged, match="loss = nan"):
        sparse.on_train_batch_end(tr, routine, nan, None, tr.num_training_batches - 1)


def test_no_banners_and_no_progress_bar_off_a_terminal(small_data, capsys, caplog):
    routine = ClassificationRoutine(LeNet(), 10)
    tr = make_trainer(1, logger=False, limit_train_batches=2, limit_val_batches=0)
    assert tr.progress_bar_callback is None  # pytest's output is not a terminal
    tr.fit(routine, small_data)
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert "GPU available" not in text and "Tip" not in text and "\r" not in text


def test_the_recipes_peak_and_its_place_and_the_messages_in_full(monkeypatch):
    model = LeNet()
    default = recipes.default_recipe(model, 100)  # called directly: lr_mult 1
    optimizer, scheduler = default["optimizer"], default["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(recipes.DEFAULT_LR)
    assert rates.index(max(rates)) == 24  # the warm-up: the first 25 % of the steps
    assert recipes.reference_recipe(model, 100)["optimizer"].param_groups[0]["lr"] == 0.05
    chosen = recipes.reference_recipe(model, 100, lr=0.3)
    assert chosen["optimizer"].param_groups[0]["lr"] == pytest.approx(0.3)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError) as both:
        recipes.normalize_recipe({"optimizer": opt, "scheduler": 1, "lr_scheduler": 2})
    assert str(both.value) == "The recipe has both 'scheduler' and 'lr_scheduler': keep one."
    monkeypatch.setattr(recipes, "_warned_scheduler_key", False)
    with pytest.warns(UserWarning) as caught:
        recipes.normalize_recipe({"optimizer": opt, "scheduler": 1})
    assert str(caught[0].message).endswith(
        "(the reference tutorial's learning rate never decays). It is applied here as "
        "'lr_scheduler'.")  # fmt: skip

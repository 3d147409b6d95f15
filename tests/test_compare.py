"""The experiment loop: fit_and_test, several seeds, temperature scaling, results.json, TensorBoard,
evaluation under shift, fail-fast checks."""

from __future__ import annotations

import json
import os
import statistics
import time
import types
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tutorial_lib import compare, workers
from tutorial_lib import plots as compare_plots
from tutorial_lib.config import ExperimentConfig, parse_model
from tutorial_lib.corruptions import CORRUPTIONS, corrupt
from tutorial_lib.data import TensorBatchLoader
from tutorial_lib.metrics import detection, evaluate_predictions, grouping_loss, ood_scores
from tutorial_lib.models import LeNet
from tutorial_lib.routine import predict

TINY = {"train_subset": 512, "eval_subset": 300, "val_size": 300, "epochs": 1, "batch_size": 128}


def tiny(tmp_path, real_root, **values):
    where = {"data_dir": str(real_root), "mirror": os.devnull, "out": str(tmp_path / "out")}
    return ExperimentConfig.create("full", **(TINY | where | values))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, real_root):
    """LeNet and a deep ensemble of 2, two seeds each, temperature-scaled (one run, shared)."""
    out = tmp_path_factory.mktemp("cmp")
    config = tiny(out, real_root, models=("lenet", "deep-ensemble-2"), seeds=2,
                  calibrate="temperature")  # fmt: skip
    lines: list[str] = []
    stale = out / "out" / "lightning_logs" / "lenet" / "seed0" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("a run of another day")

    def progress(line: str) -> None:  # what results.json says while the loop runs
        saved = json.loads((out / "out" / "results.json").read_text())
        lines.append(f"{line} | complete={saved['complete']}")

    comparison = compare.run_comparison(config, progress=progress)
    return config, comparison, lines, json.loads((out / "out" / "results.json").read_text())


def test_results_json_tells_the_truth(two_seeds):
    config, comparison, lines, results = two_seeds
    assert results["complete"] is True
    assert results["config"]["epochs"] == 1 and results["config"]["batch_size"] == 128
    assert results["config"]["models"] == ["lenet", "deep-ensemble-2"]
    assert results["run"]["seeds"] == [0, 1] and "torch" in results["run"]
    sizes = {"train": 512, "val": 300, "test_id": 300, "test_ood": 300}
    assert results["data"] == {"dataset": "mnist", "id": "MNIST", "ood": "FashionMNIST"} | sizes
    plan = workers.plan_workers(4)  # side by side on this CPU when it has 2 to 5 CPUs
    assert results["run"]["workers"] == plan.workers
    assert results["run"]["threads_per_run"] == plan.threads
    assert results["run"]["times"] == "CPU seconds"  # one meaning, one at a time or not
    assert results["run"]["accelerator"] == "cpu"
    # 4 steps of training: a run may stay near chance, and then says so, here and in the file
    warned = [line for line in lines if line.startswith("Warning: ")]
    lines = [line for line in lines if line not in warned]
    assert len(warned) == len(results["run"].get("warnings", []))
    # the stale logs moved aside, the plan, then each run as it finishes, in any order
    assert lines.pop(0) == (f"The previous experiment in {config.out} is now in "
                            f"{config.out}/interrupted | complete=False")  # fmt: skip
    assert lines.pop(0) == (f"4 run(s), {plan.describe()} (times: each run's CPU seconds) "
                            "| complete=False")  # fmt: skip
    assert [line[:5] for line in lines] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    expected = {
        f"{name}, seed {run.seed}: fit {run.fit_s:.1f} s, test {run.test_s:.1f} s, accuracy "
        f"{100 * run.metrics['cls/Acc']:.2f} % | complete=False"
        for name, runs in comparison.runs.items() for run in runs
    }  # fmt: skip
    assert {line[6:] for line in lines} == expected  # saved after each, marked unfinished
    assert [r.seed for r in comparison.runs["LeNet"]] == [0, 1]  # in run order, however done
    assert list(comparison.runs) == ["LeNet", "Deep Ensemble (M=2)"]
    assert "training time in CPU seconds" in comparison.table().title
    logs = os.path.join(config.out, "lightning_logs")
    assert sorted(os.listdir(os.path.join(logs, "lenet"))) == ["seed0", "seed1"]
    assert "stale.txt" not in os.listdir(os.path.join(logs, "lenet", "seed0"))  # replaced
    aside = Path(config.out, "interrupted", "lightning_logs", "lenet", "seed0", "stale.txt")
    assert aside.read_text() == "a run of another day"  # set aside with its experiment
    for slug in ("lenet", "deep-ensemble-2"):  # the routine's and the run's hyper-parameters
        hparams = Path(logs, slug, "seed1", "hparams.yaml").read_text()
        assert "lr_mult: 1.0" in hparams and "dataset: mnist" in hparams and "epochs: 1" in hparams
    assert sorted(os.listdir(os.path.join(config.out, "plots"))) == [
        "deep-ensemble-2_ood.png", "deep-ensemble-2_reliability.png", "lenet_ood.png",
        "lenet_reliability.png", "risk_coverage.png"]  # fmt: skip
    assert results["models"]["Deep Ensemble (M=2)"]["metrics"]["cplx/params"] == 2 * 44_426
    means, spreads = comparison.columns(compare.SUMMARY_KEYS)
    temperatures = results["models"]["LeNet"]["temperature"]
    assert means["LeNet"]["ts/T"] == pytest.approx(statistics.fmean(temperatures))
    assert spreads["LeNet"]["ts/T"] == pytest.approx(statistics.stdev(temperatures))
    assert "ts/cal/ECE" in means["LeNet"] and "ts/cal/ECE" in spreads["LeNet"]
    lenet = results["models"]["LeNet"]
    assert lenet["steps"] == [4, 4]  # 512 images / batch 128, one epoch: what really ran
    for fit_s, speed in zip(lenet["fit_s"], lenet["train_images_per_s"], strict=True):
        assert speed == pytest.approx(512 / fit_s, rel=1e-3)  # training images / fit seconds
    for key in ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC"):
        per_seed = [run[key] for run in lenet["seeds"]]
        assert lenet["metrics"][key] == pytest.approx(statistics.fmean(per_seed))
        assert lenet["std"][key] == pytest.approx(statistics.stdev(per_seed))
    assert lenet["seeds"][0] != lenet["seeds"][1]  # two seeds, two different models
    assert len(lenet["temperature"]) == 2 and all(t > 0 for t in lenet["temperature"])
    calibrated = lenet["calibrated"]
    assert calibrated["metrics"]["cls/Acc"] == pytest.approx(lenet["metrics"]["cls/Acc"])
    assert set(calibrated["std"]) == set(calibrated["metrics"])
    assert "NaN" not in json.dumps(results)
    members = results["models"]["Deep Ensemble (M=2)"]["members"]  # per seed, per member
    assert len(members) == 2 and len(members[0]) == 2 and "cls/NLL" in members[0][1]
    assert "ood/AUROC" in members[0][1] and "ood/AUROC" in calibrated["metrics"]
    de = comparison.runs["Deep Ensemble (M=2)"][0].predictions
    member = evaluate_predictions(de["probs"][:, 1], de["targets"], de["ood_probs"][:, 1])
    assert members[0][1]["cls/NLL"] == pytest.approx(member["cls/NLL"])
    assert "members" not in lenet


def test_the_data_goes_where_the_models_train(real_root, tmp_path):
    config = ExperimentConfig.create("quick", data_dir=str(real_root), mirror=os.devnull,
                                     out=str(tmp_path / "out"))  # fmt: skip
    data, _ = compare.prepare(config)  # set up before any trainer: on the CPU
    assert data.splits["train"][0].device.type == "cpu"
    data.trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(
        root_device=torch.device("meta")))  # a trainer on another device sets it up  # fmt: skip
    data.setup("fit")
    assert {x.device.type for pair in data.splits.values() for x in pair} == {"meta"}


def test_a_seed_reproduces_and_temperature_is_fitted_on_validation(two_seeds, monkeypatch):
    config, comparison, _, _ = two_seeds
    first = comparison.runs["LeNet"][0]
    data = compare.make_data(config)
    data.prepare_data()
    data.setup()
    passes = []
    monkeypatch.setattr(compare, "predict", lambda *a, **k: passes.append(a) or predict(*a, **k))
    again = compare.fit_and_test(parse_model("lenet"), data, config, seed=0)
    assert passes == []  # the last epoch's validation predictions are kept, not made again
    fresh = predict(again.model, data.eval_loader("val"))
    torch.testing.assert_close(again.predictions["val_probs"], fresh["probs"])
    assert torch.equal(again.predictions["val_targets"], fresh["targets"])
    # the same seed again, here with every thread (side by side it had one): the last bits of the
    # sums differ between thread counts, so one or two of the 300 test images may flip
    assert again.metrics["cls/Acc"] == pytest.approx(first.metrics["cls/Acc"], abs=2 / 300)
    assert again.metrics["cls/NLL"] == pytest.approx(first.metrics["cls/NLL"], rel=0.02)
    p = first.predictions
    assert p["val_probs"].shape == (300, 1, 10) and p["probs"].shape == (300, 1, 10)
    assert torch.equal(p["val_targets"], data.splits["val"][1])  # validation, not test
    from tutorial_lib.calibration import ensemble_logits, fit_temperature

    assert first.temperature == pytest.approx(
        fit_temperature(ensemble_logits(p["val_probs"]), p["val_targets"])
    )


def test_tables_and_verdicts_carry_the_noise(two_seeds):
    _, comparison, _, results = two_seeds
    table = comparison.table()
    assert "mean ± std over 2 seeds" in table.title
    md = table.to_markdown()
    acc = results["models"]["LeNet"]["metrics"]["cls/Acc"]
    std = results["models"]["LeNet"]["std"]["cls/Acc"]
    assert f"{100 * acc:.2f} ± {100 * std:.2f}%" in md
    assert "temperature T" in md and "training time" in md
    (verdict,) = comparison.verdicts()
    assert verdict.startswith("Deep Ensemble (M=2) vs LeNet (2 seeds; Welch's t-test, Holm over 4")
    assert " on Acc" in verdict and "Cost: 2.00x the parameters" in verdict
    assert comparison.baseline() == "LeNet"
    other = comparison.verdicts("Deep Ensemble (M=2)")[0]  # any model can be the baseline
    assert other.startswith("LeNet vs Deep Ensemble (M=2) (2 seeds;")
    with open(os.path.join(comparison.config.out, "comparison.md")) as written:
        assert verdict in written.read()


def test_tensorboard_has_one_named_run_per_model_and_seed_with_hparams(two_seeds):
    config, comparison, _, results = two_seeds
    logs = os.path.join(config.out, "lightning_logs")
    runs = sorted(os.path.relpath(root, logs) for root, _, names in os.walk(logs)
                  if any(n.startswith("events.out") for n in names))  # fmt: skip
    assert runs == ["deep-ensemble-2/seed0", "deep-ensemble-2/seed1", "lenet/seed0", "lenet/seed1"]
    events = EventAccumulator(os.path.join(logs, "deep-ensemble-2", "seed1"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["name"].string_value == "Deep Ensemble (M=2)"  # its true name
    assert info.hparams["model"].string_value == "deep-ensemble-2"
    assert info.hparams["kind"].string_value == "deep-ensemble"
    assert info.hparams["M"].number_value == 2 and info.hparams["gamma"].number_value == 1
    assert info.hparams["seed"].number_value == 1
    assert info.hparams["dataset"].string_value == "mnist"
    assert info.hparams["epochs"].number_value == 1
    acc = events.Scalars("hparams/Acc")[-1].value
    assert acc == pytest.approx(results["models"]["Deep Ensemble (M=2)"]["seeds"][1]["cls/Acc"])
    assert {"hparams/NLL", "hparams/ECE", "hparams/AUROC", "hparams/AURC"} <= set(
        events.Tags()["scalars"]
    )


def test_plots_are_written(two_seeds):
    config, _, _, _ = two_seeds
    plots = sorted(os.listdir(os.path.join(config.out, "plots")))
    assert plots == ["deep-ensemble-2_ood.png", "deep-ensemble-2_reliability.png",
                     "lenet_ood.png", "lenet_reliability.png", "risk_coverage.png"]  # fmt: skip


def test_mc_dropout_and_batch_ensemble_run_through_the_same_loop(tmp_path, real_root):
    config = tiny(tmp_path, real_root, models=("mc-dropout", "batch-ensemble-2"), mc_samples=3)
    data = compare.make_data(config)
    data.prepare_data()
    data.setup()
    mc = compare.fit_and_test(parse_model("mc-dropout", config), data, config, seed=0)
    assert mc.predictions["probs"].shape == (300, 3, 10) and "ens/MI" in mc.metrics
    assert mc.steps == 4  # trained as one network: one row per image
    be = compare.fit_and_test(parse_model("batch-ensemble-2"), data, config, seed=0)
    assert be.predictions["probs"].shape == (300, 2, 10)
    assert be.metrics["cplx/params"] == 44_190 + 2 * 939


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_off_linux_a_comparison_runs_one_at_a_time(tmp_path, real_root, monkeypatch, platform):
    monkeypatch.setattr("sys.platform", platform)
    config = tiny(tmp_path, real_root, models=("lenet", "deep-ensemble-2"))
    comparison = compare.run_comparison(config)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["complete"] is True and results["run"]["workers"] == 1
    assert list(comparison.runs) == ["LeNet", "Deep Ensemble (M=2)"]


def test_the_gpu_fallback_is_said_once_per_command(tmp_path, real_root, monkeypatch):
    import warnings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = tiny(tmp_path, real_root, models=("lenet", "deep-ensemble-2"), seeds=2,
                  accelerator="gpu", workers=1)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare.run_comparison(config)
    notices = [w for w in caught if "no GPU" in str(w.message)]
    assert len(notices) == 1  # not once per run (4 runs here)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["run"]["accelerator"] == "cpu" and results["run"]["times"] == "CPU seconds"


def test_shift_scores_the_corrupted_sets(real_root):
    from tutorial_lib.data import STATS, load_split

    images, labels = load_split("MNIST", False, real_root)
    images, labels = images[:200], labels[:200]
    torch.manual_seed(0)
    model = LeNet().eval()
    rows = compare.evaluate_shift({"m": model}, images, labels, STATS["MNIST"], seed=3,
                                  severities=(2,))  # fmt: skip
    assert len(rows) == 1 + len(CORRUPTIONS)
    clean = rows[0]
    assert (clean["corruption"], clean["severity"]) == ("none", 0)
    for row in rows[1:]:
        shifted = corrupt(images, row["corruption"], 2, seed=3)
        kept = predict(model, TensorBatchLoader(shifted, labels, 512, shuffle=False))
        expected = evaluate_predictions(kept["probs"], labels)
        assert row["cls/NLL"] == pytest.approx(expected["cls/NLL"]), row["corruption"]
    assert len({round(r["cls/NLL"], 6) for r in rows}) > 4  # not the clean set each time
    with_gl = compare.evaluate_shift({"m": model, "other": model}, images, labels, STATS["MNIST"],
                                     seed=3, grouping=["m"], severities=(2,))  # fmt: skip
    clean_m, clean_other = with_gl[0], with_gl[1]
    kept = predict(model, TensorBatchLoader(images, labels, 512, shuffle=False), features=True)
    expected_gl = grouping_loss(kept["probs"], labels, kept["features"])["GL"]
    assert clean_m["cal/GL"] == pytest.approx(expected_gl)  # computed, not a NaN placeholder
    assert "cal/GL" not in clean_other  # only for the models asked


def test_shift_rows_add_scaled_metrics_and_ensemble_mi(real_root):
    from tutorial_lib.calibration import apply_temperature
    from tutorial_lib.data import STATS, load_split
    from tutorial_lib.models import PackedLeNet

    images, labels = load_split("MNIST", False, real_root)
    images, labels = images[:200], labels[:200]
    torch.manual_seed(0)
    lenet, packed = LeNet().eval(), PackedLeNet(num_estimators=2, alpha=2).eval()
    rows = compare.evaluate_shift({"lenet": lenet, "pe": packed}, images, labels,
                                  STATS["MNIST"], severities=(2,),
                                  temperatures={"lenet": 2.0, "pe": None})  # fmt: skip
    clean_lenet, clean_pe = rows[0], rows[1]
    kept = predict(lenet, TensorBatchLoader(images, labels, 512, shuffle=False))
    scaled = evaluate_predictions(apply_temperature(kept["probs"], 2.0), labels)
    assert clean_lenet["ts/cls/NLL"] == pytest.approx(scaled["cls/NLL"])
    assert clean_lenet["ts/cls/NLL"] != pytest.approx(clean_lenet["cls/NLL"])
    assert "ts/cls/NLL" not in clean_pe  # no temperature fitted
    assert clean_pe["ens/MI"] > 0 and "ens/MI" not in clean_lenet  # members disagree


def test_summarize_shift_averages_corruptions_then_seeds():
    rows = [
        {"model": "a", "severity": 1, "seed": seed, "corruption": c, "cls/Acc": value}
        for seed, values in ((0, (0.9, 0.5)), (1, (0.8, 0.6)))
        for c, value in zip(("x", "y"), values, strict=True)
    ]
    (mean, std), = compare.summarize_shift(rows, "cls/Acc")["a"].values()  # fmt: skip
    assert mean == pytest.approx(0.7)  # seed means 0.7 and 0.7
    assert std == pytest.approx(0.0)
    rows[0]["cls/Acc"] = 1.0  # seed 0 mean 0.75, seed 1 mean 0.7
    (mean, std), = compare.summarize_shift(rows, "cls/Acc")["a"].values()  # fmt: skip
    assert mean == pytest.approx(0.725) and std == pytest.approx(statistics.stdev([0.75, 0.7]))


def test_a_bad_combination_fails_before_any_training(tmp_path, real_root):
    config = tiny(tmp_path, real_root, models=("lenet", "packed"), alpha=3.0, num_estimators=4)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="Try alpha="):
        compare.run_comparison(config)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "out").exists()  # nothing written, nothing trained
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        compare.run_comparison(tiny(tmp_path, real_root, out=str(tmp_path / "file")))


@pytest.mark.parametrize("side_by_side", [False, True])
def test_interrupted_runs_keep_what_finished(tmp_path, real_root, monkeypatch, side_by_side):
    config = tiny(tmp_path, real_root, models=("lenet", "deep-ensemble-2"),
                  workers=2 if side_by_side else 1)  # fmt: skip
    real = compare.fit_and_test
    results_json = tmp_path / "out" / "results.json"

    def second_run_interrupted(spec, *args, **kwargs):
        if spec.kind != "deep-ensemble":
            return real(spec, *args, **kwargs)
        deadline = time.monotonic() + 120  # side by side: stopped once LeNet is saved
        while side_by_side and time.monotonic() < deadline:
            if "LeNet" in json.loads(results_json.read_text())["models"]:
                break
            time.sleep(0.05)
        raise compare.RunInterrupted()  # in a worker: carried to the parent, raised there

    monkeypatch.setattr(compare, "fit_and_test", second_run_interrupted)
    with pytest.raises(compare.RunInterrupted):
        compare.run_comparison(config)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["complete"] is False and list(results["models"]) == ["LeNet"]


def test_the_report_names_every_figure_after_its_model_and_data(two_seeds, tmp_path, monkeypatch):
    config, comparison, _, results = two_seeds
    assert set(results["run"]) >= {"machine", "torch", "command", "seeds"}
    assert results["run"]["command"] == config.as_command()
    drawn = []
    real = {n: getattr(compare_plots, n) for n in ("reliability_diagram", "ood_histograms",
                                                    "risk_coverage_plot")}  # fmt: skip
    for name, fn in real.items():
        monkeypatch.setattr(
            compare_plots,
            name,
            lambda *a, _n=name, _f=fn, **k: drawn.append((_n, a, k)) or _f(*a, **k),
        )
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()  # figures other tests left open
    lenet_run, ensemble_run = comparison.runs["LeNet"][0], comparison.runs["Deep Ensemble (M=2)"][0]
    drawn_at_test = lenet_run.figures["reliability"]  # TensorBoard's image, drawn by the trainer
    monkeypatch.setattr(ensemble_run, "figures", {})  # as a run without a logger: none drawn yet
    compare.write_report(comparison, compare.prepare_output(tmp_path))
    calls = {(n, k.get("title") or (a[2] if len(a) > 2 else None)): (a, k) for n, a, k in drawn}
    assert ("reliability_diagram", "LeNet") not in calls  # not drawn twice: the test's PNG
    assert (tmp_path / "plots" / "lenet_reliability.png").read_bytes() == drawn_at_test
    assert ("reliability_diagram", "Deep Ensemble (M=2)") in calls
    args, _ = calls[("ood_histograms", "Deep Ensemble (M=2)")]
    assert args[3:] == ("MNIST (ID)", "FashionMNIST (OOD)")
    lenet = comparison.runs["LeNet"][0].predictions
    assert args[0] is comparison.runs["Deep Ensemble (M=2)"][0].predictions["probs"]
    (curves,) = [a[0] for n, a, _ in drawn if n == "risk_coverage_plot"]
    assert list(curves) == ["LeNet", "Deep Ensemble (M=2)"] and curves["LeNet"][0] is lenet["probs"]
    for png in (tmp_path / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "deep-ensemble-2_ood.png", "deep-ensemble-2_reliability.png", "lenet_ood.png",
        "lenet_reliability.png", "risk_coverage.png"]  # fmt: skip
    from PIL import Image

    with Image.open(tmp_path / "plots" / "risk_coverage.png") as image:
        assert image.size == (585, 405)  # 6.5 x 4.5 inches at 90 dpi
    assert plt.get_fignums() == open_before  # every figure closed: none piles up in a notebook
    markdown = (tmp_path / "comparison.md").read_text()
    assert markdown.startswith(comparison.table().to_markdown())
    assert all(f"- {v}" in markdown for v in comparison.verdicts())
    assert compare.describe_outputs(tmp_path) == (
        f"Results: {tmp_path / 'results.json'} and {tmp_path / 'comparison.md'}; plots: "
        f"{tmp_path / 'plots'}; TensorBoard: tensorboard --logdir {tmp_path / 'lightning_logs'}"
    )


def test_the_pretrained_ensemble_is_tested_like_the_trained_models(tmp_path, real_root,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    config = tiny(tmp_path, real_root, models=("lenet",), pretrained="local")
    comparison = compare.run_comparison(config)
    (pretrained,) = comparison.runs["Pretrained ensemble (M=8)"]
    assert pretrained.spec.spec == "pretrained" and pretrained.spec.kind == "deep-ensemble"
    assert pretrained.fit_s == 0.0 and pretrained.test_s > 0 and pretrained.seed is None
    p = pretrained.predictions
    assert p["probs"].shape == (300, 8, 10) and p["ood_probs"].shape == (300, 8, 10)
    assert "ood/AUROC" in pretrained.metrics and len(pretrained.members) == 8
    expected = evaluate_predictions(p["probs"], p["targets"], p["ood_probs"])
    assert pretrained.metrics["cls/NLL"] == pytest.approx(expected["cls/NLL"])
    assert pretrained.metrics["cls/Acc"] > 0.95  # the shipped ensemble: 99.5 % on all of MNIST
    plots_written = sorted(os.listdir(tmp_path / "out" / "plots"))
    assert "pretrained_reliability.png" in plots_written and "pretrained_ood.png" in plots_written
    assert sorted(os.listdir(tmp_path)) == ["out"]  # its test writes no logs anywhere


def test_a_failed_start_removes_its_empty_folders_and_keeps_every_file(tmp_path, real_root,
                                                                        monkeypatch):  # fmt: skip
    def broken(self, stage=None):
        raise RuntimeError("setup failed (test)")

    monkeypatch.setattr(compare.MNISTDataModule, "setup", broken)
    new_root = tmp_path / "new" / "data"
    config = tiny(tmp_path, real_root, data_dir=str(new_root), mirror=str(real_root))
    with pytest.raises(RuntimeError, match="setup failed"):
        compare.prepare(config)
    assert not (tmp_path / "out").exists()  # created for this run, empty but for its lock: gone
    fetched = list((tmp_path / "new").rglob("*.gz"))
    assert len(fetched) == 8  # the data copied before the failure stays, for the next try


def test_times_are_cpu_seconds_on_the_cpu_and_wall_seconds_on_a_gpu():
    assert compare.run_clock("cpu") is time.process_time  # the same meaning side by side
    assert compare.run_clock("cuda") is time.perf_counter  # the CPU clock misses a GPU's work
    assert compare.run_clock("mps") is time.perf_counter


def test_an_output_folder_that_cannot_be_written_says_so(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder: choose another --out"):
        compare.prepare_output(target)
    with pytest.raises(OSError, match=r"is not a writable folder \(.*\): choose another --out"):
        compare.prepare_output(target / "inside")  # a folder that would be inside a file
    with pytest.raises(OSError, match=r"\(Not a directory\)"):
        compare.prepare_output(target / "inside")
    out = compare.prepare_output(tmp_path / "new")
    assert sorted(os.listdir(out)) == ["plots"]  # the probe file is gone
    assert compare.prepare_output(out) == out  # an existing output folder is fine


def test_a_run_near_chance_is_reported():
    spec = parse_model("lenet")
    targets = torch.arange(100) % 10
    chance = torch.full((100, 1, 10), 0.1)
    chance[:, 0, 3] = 0.2  # always class 3: 10 % right
    learned = torch.nn.functional.one_hot(targets, 10).float()[:, None] * 0.9 + 0.01
    result = compare.ModelResult(spec, 0, {}, predictions={"val_probs": chance,
                                                            "val_targets": targets})  # fmt: skip
    assert compare.near_chance(result).startswith("validation accuracy 10.0 %, near chance (10 %)")
    result.predictions["val_probs"] = learned
    assert compare.near_chance(result) is None
    assert compare.near_chance(compare.ModelResult(spec, 0, {})) is None  # no validation split


def test_classes_and_the_ood_score_reach_the_metrics(tmp_path, real_root):
    config = tiny(tmp_path, real_root, models=("deep-ensemble-2",), classes=(0, 1, 2, 3, 4),
                  ood_score="energy", calibrate="temperature")  # fmt: skip
    data = compare.make_data(config)
    data.prepare_data()
    data.setup()
    result = compare.fit_and_test(parse_model("deep-ensemble-2"), data, config, seed=0)
    p = result.predictions
    assert p["probs"].shape == (len(data.splits["test"][1]), 2, 5)  # five classes
    assert torch.allclose(p["logits"].softmax(-1), p["probs"])
    assert p["near_logits"].shape == (300, 2, 5) and (data.splits["near"][1] >= 5).all()
    energy = {k: ood_scores(p[k])["energy"] for k in ("logits", "ood_logits", "near_logits")}
    far = detection(energy["logits"], energy["ood_logits"])
    near = detection(energy["logits"], energy["near_logits"])
    assert result.metrics["ood/AUROC"] == far["AUROC"] and result.metrics["ood/AUPR"] == far["AUPR"]
    assert result.metrics["near/AUROC"] == near["AUROC"]
    assert result.metrics["near/FPR95"] == near["FPR95"]
    t = result.temperature
    scaled = detection(
        ood_scores(p["logits"] / t)["energy"], ood_scores(p["ood_logits"] / t)["energy"]
    )
    assert result.calibrated["ood/AUROC"] == scaled["AUROC"]
    # with the default score the routine's own OOD metric stands, and near/ is ranked by the MSP
    config = config.with_values(ood_score="msp")
    msp = compare.fit_and_test(parse_model("deep-ensemble-2"), data, config, seed=0)
    scores = {k: ood_scores(msp.predictions[k])["msp"] for k in ("logits", "near_logits")}
    assert msp.metrics["near/AUROC"] == detection(scores["logits"], scores["near_logits"])["AUROC"]
    assert msp.metrics["ood/AUROC"] != result.metrics["ood/AUROC"]

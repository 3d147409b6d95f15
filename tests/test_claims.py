"""The evidence behind the chapters: committed results, and the verdict test applied to them."""

from __future__ import annotations

import json

import pytest

from tutorial_lib import claims


def _model(nll: list[float], ece: list[float], ts_ece: list[float]) -> dict:
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {
        "metrics": {"cls/NLL": mean(nll), "cal/ECE": mean(ece)},
        "std": {"cls/NLL": 0.0, "cal/ECE": 0.0},
        "seeds": [{"cls/NLL": n, "cal/ECE": e} for n, e in zip(nll, ece, strict=True)],
        "calibrated": {"metrics": {"cal/ECE": mean(ts_ece)}, "std": {"cal/ECE": 0.001},
                       "seeds": [{"cal/ECE": e} for e in ts_ece]},
    }  # fmt: skip


RESULTS = {
    "complete": True,
    "config": {"models": ["lenet", "deep-ensemble-2"], "seeds": 3, "dataset": "mnist",
               "epochs": 3, "val_size": 5000, "calibrate": "temperature", "seed": 0,
               "batch_size": 512, "recipe": "default", "lr": None, "train_subset": None,
               "eval_subset": None},
    "models": {
        "LeNet": _model([0.050, 0.052, 0.048], [0.004, 0.005, 0.003], [0.003, 0.0032, 0.0028]),
        "Deep Ensemble (M=2)": _model([0.040, 0.041, 0.039], [0.0045, 0.0035, 0.0055],
                                      [0.0012, 0.0013, 0.0011]),
    },
}  # fmt: skip


@pytest.fixture
def course(tmp_path, monkeypatch):
    (tmp_path / "book.toml").write_text("[book]\n")
    (tmp_path / "data" / "results").mkdir(parents=True)
    (tmp_path / "data" / "results" / "mnist.json").write_text(json.dumps(RESULTS))
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where a notebook's kernel runs
    return tmp_path


def test_verdicts_on_results(course):
    results = claims.load_results("mnist")
    de, lenet = "Deep Ensemble (M=2)", "LeNet"
    assert claims.verdict(results, de, lenet, "cls/NLL") == "better"
    assert claims.verdict(results, lenet, de, "cls/NLL") == "worse"
    assert claims.verdict(results, de, lenet, "cal/ECE") == "not distinguishable"
    assert claims.verdict(results, de, lenet, "ts/cal/ECE") == "better"  # after scaling
    assert claims.value(results, lenet, "ts/cal/ECE") == (pytest.approx(0.003), 0.001)
    assert claims.values(results, lenet, "ts/cal/ECE") == [0.003, 0.0032, 0.0028]
    with pytest.raises(KeyError, match="no per-seed ood/AUROC"):
        claims.values(results, lenet, "ood/AUROC")
    with pytest.raises(ValueError, match="no better direction"):
        claims.verdict(results, de, lenet, "cls/Entropy")


def test_evidence_is_the_committed_file_in_the_quick_profile_shown_beside_the_run(course, capsys):
    class Quick:
        class config:  # noqa: N801 - a stand-in for an ExperimentConfig
            profile, seeds = "quick", 1

        @staticmethod
        def columns(keys):
            assert "cls/NLL" in keys
            return {"LeNet": {"cls/NLL": 0.3}, "MC-Dropout (T=8)": {"cls/NLL": 0.4}}, {
                "LeNet": {"cls/NLL": None},
                "MC-Dropout (T=8)": {"cls/NLL": None},
            }

    assert claims.evidence(Quick, "mnist") == RESULTS
    shown = capsys.readouterr().out  # a pipe: the table as Markdown
    assert "checked on the committed numbers" in shown
    assert "LeNet: this run (quick profile, 1 seed)" in shown
    assert "LeNet: committed (full profile, 3 seeds)" in shown
    assert "0.30000" in shown and "0.05000" in shown  # this run's NLL and the committed one
    assert "MC-Dropout" not in shown  # not in the committed file: nothing to set beside it


def test_a_full_run_must_be_the_committed_experiment(course):
    def full_run(**changes):
        class Full:
            class config:  # noqa: N801
                profile = "full"

            @staticmethod
            def to_json(complete):
                return {"config": RESULTS["config"] | changes, "models": "ours"}

        return Full

    with pytest.raises(ValueError, match="seeds"):
        claims.evidence(full_run(seeds=1), "mnist")
    with pytest.raises(ValueError, match="not among"):
        claims.evidence(full_run(models=["lenet", "packed"]), "mnist")
    assert claims.evidence(full_run(models=["lenet"]), "mnist")["models"] == "ours"  # a subset


def test_missing_or_incomplete_results_say_what_to_do(course):
    with pytest.raises(FileNotFoundError, match="data/results/README.md"):
        claims.load_results("cifar")
    (course / "data" / "results" / "half.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(ValueError, match="interrupted run"):
        claims.load_results("half")


def test_invalid_committed_results_are_one_line_naming_the_file(course):
    (course / "data" / "results" / "mnist.json").write_text('{"complete": true, "models": ')
    with pytest.raises(ValueError, match=r"mnist.json is not valid JSON .*: restore it") as err:
        claims.load_results("mnist")
    assert "\n" not in str(err.value)

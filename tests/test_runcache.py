"""The run cache: a run trained once is loaded by the next experiment, a changed setting trains
again, a stopped study resumes, and a broken entry or cache folder loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_compare import tiny

from tutorial_lib import compare, runcache
from tutorial_lib.config import parse_model


def counting(monkeypatch) -> list[tuple[str, int]]:
    """Record every run that really trains (the experiment runs in this process: workers=1)."""
    trained: list[tuple[str, int]] = []
    real = compare.fit_and_test

    def fit_and_test(spec, data, config, seed, *args, **kwargs):
        trained.append((spec.slug, seed))
        return real(spec, data, config, seed, *args, **kwargs)

    monkeypatch.setattr(compare, "fit_and_test", fit_and_test)
    return trained


def same(a, b) -> bool:
    """Equal, NaN included (a metric undefined on a run is NaN in both)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture
def config(tmp_path, real_root):
    return tiny(tmp_path, real_root, models=("lenet", "deep-ensemble-2"), workers=1,
                calibrate="temperature", cache=str(tmp_path / "cache"))  # fmt: skip


def test_a_second_experiment_loads_every_run_and_gets_the_same_numbers(config, monkeypatch):
    trained = counting(monkeypatch)
    first = compare.run_comparison(config)
    assert trained == [("lenet", 0), ("deep-ensemble-2", 0)]
    lines: list[str] = []
    out = Path(config.out + "2")
    second = compare.run_comparison(config.with_values(out=str(out)), progress=lines.append)
    assert len(trained) == 2  # nothing trained again
    assert f"2 of 2 run(s) loaded from the cache {config.cache}" in lines
    assert any(line.startswith("[1/2] LeNet, seed 0: from the cache, trained in ")
               for line in lines)  # fmt: skip
    for name in first.runs:
        a, b = first.runs[name][0], second.runs[name][0]
        assert same(a.metrics, b.metrics) and same(a.members, b.members) and a.fit_s == b.fit_s
        assert a.temperature == pytest.approx(b.temperature) and same(a.calibrated, b.calibrated)
        assert torch.equal(a.predictions["probs"], b.predictions["probs"])
        for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.equal(pa, pb)  # the weights too: shift evaluations use the model
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["run"]["cached_runs"] == 2
    assert list((out / "lightning_logs" / "lenet" / "seed0").glob("events.*"))  # TensorBoard
    assert (out / "comparison.md").is_file()


def test_calibration_is_not_in_the_key(config, monkeypatch):
    trained = counting(monkeypatch)
    compare.run_comparison(config.with_values(calibrate="none", models=("lenet",)))
    again = compare.run_comparison(config.with_values(models=("lenet",)))
    assert trained == [("lenet", 0)]
    assert again.runs["LeNet"][0].temperature > 0  # fitted on the stored validation predictions


def test_a_stopped_study_resumes_and_a_changed_setting_trains_again(config, monkeypatch):
    trained = counting(monkeypatch)
    compare.run_comparison(config.with_values(models=("lenet",)))
    compare.run_comparison(config.with_values(models=("lenet",), seeds=2))
    assert trained == [("lenet", 0), ("lenet", 1)]  # seed 0 was stored: only seed 1 trains
    compare.run_comparison(config.with_values(models=("lenet",), epochs=2))
    assert trained[-1] == ("lenet", 0)


@pytest.mark.parametrize("change", [{"epochs": 2}, {"lr": 0.5}, {"dataset": "fashion"},
                                    {"seed": 1}, {"width": 2}, {"train_subset": 256},
                                    {"classes": (0, 1, 2)}, {"ood_score": "energy"}])  # fmt: skip
def test_every_setting_that_shapes_a_run_changes_its_key(config, change):
    def key(cfg, seed=0):
        spec = parse_model("packed-2-4", cfg)
        return runcache.entry_path(Path("c"), spec, runcache.run_key(spec, cfg, seed, "cpu"))

    assert key(config.with_values(**change)) != key(config)
    # what only says where to write or how to report does not
    assert key(config.with_values(out="elsewhere", calibrate="none", workers=2)) == key(config)
    assert key(config, seed=1) != key(config)


def test_a_broken_entry_is_reported_and_trained_again(config, monkeypatch):
    config = config.with_values(models=("lenet",))
    trained = counting(monkeypatch)
    compare.run_comparison(config)
    (stored,) = Path(config.cache).glob("lenet/seed0-*/run.pt")
    stored.write_bytes(stored.read_bytes()[:100])  # truncated, as by a full disk elsewhere
    lines: list[str] = []
    again = compare.run_comparison(config, progress=lines.append)
    assert trained == [("lenet", 0), ("lenet", 0)]
    assert any(line.startswith(f"Warning: cache entry {stored.parent} cannot be read")
               and line.endswith("training it again") for line in lines)  # fmt: skip
    assert again.runs["LeNet"][0].metrics["cls/Acc"] > 0


def test_a_cache_that_cannot_be_written_loses_no_run(config, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    lines: list[str] = []
    comparison = compare.run_comparison(config.with_values(models=("lenet",)),
                                        progress=lines.append)  # fmt: skip
    assert any(line.startswith("Warning: the run was not cached (") for line in lines)
    assert json.loads((Path(config.out) / "results.json").read_text())["complete"]
    assert comparison.runs["LeNet"][0].metrics["cls/Acc"] > 0


def test_auto_is_the_course_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(runcache.ENV, raising=False)
    (tmp_path / "book.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where Jupyter runs a chapter
    assert runcache.cache_dir("auto") == tmp_path / "outputs" / "cache"
    monkeypatch.setenv(runcache.ENV, str(tmp_path / "mine"))
    assert runcache.cache_dir("auto") == tmp_path / "mine"
    assert runcache.cache_dir("some/dir") == Path("some/dir")

"""A study that outlasts a working session resumes from its committed, unfinished results file
(``benchmarks/common.py``: :func:`resume_study`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from common import StudyMismatch, cached_seeds, resume_study  # noqa: E402

from tutorial_lib import runcache  # noqa: E402
from tutorial_lib.config import ExperimentConfig  # noqa: E402
from tutorial_lib.trainer import resolved_accelerator  # noqa: E402

SIGNATURE = {"widths": [1, 2, 4], "seeds": 3, "epoch_grid": [24, 48], "source": "abc"}


def unfinished(**changes) -> dict:
    return {"complete": False, "command": "python benchmarks/packing.py --epoch-grid 24 48",
            "commit": "0123abc", "signature": SIGNATURE | changes, "passes": [{"minutes": 90}],
            "datasets": {"fashion": {"points": {"LeNet": {"cls/Acc": 0.9}}}}}  # fmt: skip


def test_an_unfinished_study_with_the_same_signature_is_carried_on(tmp_path, capsys):
    path = tmp_path / "packing.json"
    path.write_text(json.dumps(unfinished()))
    study = resume_study(path, SIGNATURE, print)
    assert study["datasets"]["fashion"]["points"] == {"LeNet": {"cls/Acc": 0.9}}
    assert "1 model(s) done in 1 earlier pass(es)" in capsys.readouterr().out


def test_no_file_or_a_complete_one_starts_afresh_and_the_complete_one_is_kept(tmp_path, capsys):
    path = tmp_path / "packing.json"
    assert resume_study(path, SIGNATURE, print) is None
    path.write_text(json.dumps(unfinished() | {"complete": True}))
    before = path.read_bytes()
    assert resume_study(path, SIGNATURE, print) is None
    kept = tmp_path / "packing.previous.json"
    assert kept.read_bytes() == before and not path.exists()  # nothing lost to the new study
    assert f"it is kept as {kept}" in capsys.readouterr().out


def test_the_forecast_finds_the_seeds_already_in_the_run_cache(tmp_path):
    """A pass counts cached runs as free: a model whose seeds are all cached is not left for the
    next pass for want of time (the forecast once did, and a pass ended with a study unfinished
    whose every run was in the cache)."""
    config = ExperimentConfig.create("quick", models=("lenet",), seeds=3,
                                     cache=str(tmp_path / "cache"))  # fmt: skip
    assert cached_seeds(config) == []
    spec = config.specs[0]
    for seed in (0, 2):
        key = runcache.run_key(spec, config, seed, resolved_accelerator(config.accelerator))
        entry = runcache.entry_path(tmp_path / "cache", spec, key)
        runcache.store(entry, key, {"state": {}}, None)
    assert cached_seeds(config) == [0, 2]
    assert cached_seeds(config.with_values(epochs=config.epochs + 1)) == []  # another run
    assert cached_seeds(config.with_values(cache=None)) == []  # no cache, nothing loaded


def test_another_studys_unfinished_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "packing.json"
    path.write_text(json.dumps(unfinished(source="def")))
    before = path.read_bytes()
    with pytest.raises(StudyMismatch, match=r"source: 'def' there, 'abc' here.*0123abc"):
        resume_study(path, SIGNATURE, print)
    assert path.read_bytes() == before  # nothing lost
    path.write_text("{not json")
    with pytest.raises(StudyMismatch, match="cannot be read"):
        resume_study(path, SIGNATURE, print)


@pytest.mark.subprocess
def test_a_pass_with_no_time_left_starts_nothing_and_keeps_the_study(tmp_path):
    """``--budget``: an experiment whose forecast would end after the pass's minutes is left for
    the next pass (instead of being killed half-way by the end of a working session)."""
    import subprocess

    import torch

    from tutorial_lib.runcache import source_digest

    root = Path(__file__).resolve().parent.parent
    pilot = {"val_acc": 0.8, "val_nll": 0.5, "fit_s": 10.0, "flops_per_image": 5e5}
    signature = {"datasets": ["fashion"], "widths": [1, 2], "seeds": 2, "epoch_grid": [1],
                 "tolerance": 0.3, "source": source_digest(),
                 "torch": torch.__version__}  # fmt: skip
    path = tmp_path / "packing.json"
    pilots = {"w1": {"1": pilot}, "w2": {"1": pilot}}
    path.write_text(json.dumps(unfinished() | {"signature": signature, "pilot": pilots}))
    done = subprocess.run(
        [sys.executable, "benchmarks/packing.py", "--widths", "1", "2", "--seeds", "2",
         "--epoch-grid", "1", "--budget", "0", "--results", str(path),
         "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")],
        cwd=root, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # 7 models (gamma 2 cannot be built at width 1), one of them (LeNet) done before
    assert done.stdout.count("-- left for the next pass") == 6, done.stdout
    assert "6 experiment(s) left for the next pass: run the same command again" in done.stdout
    assert "== fashion" not in done.stdout  # nothing trained
    study = json.loads(path.read_text())
    assert study["complete"] is False and len(study["passes"]) == 2
    assert study["datasets"]["fashion"]["points"] == {"LeNet": {"cls/Acc": 0.9}}
    assert not (tmp_path / "cache").exists()

"""The committed results come from today's code: one of their runs, trained again, gives the same
numbers.

The quick profile checks the chapters' claims against ``data/results/*.json``; this test ties
those files to the code: it trains LeNet, seed 0, with the committed settings (full data, one run
at a time, one thread as in the committed run's workers) and compares its test metrics with the
committed seed-0 values. The tolerance allows another CPU's floating-point numerics (a different
summation order moves a 3-epoch LeNet by about a tenth of a point of accuracy), not a change of
model, data, recipe or metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tutorial_lib.compare import run_comparison
from tutorial_lib.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]
# what the committed run's settings are made of (the rest: this test's own choices)
SETTINGS = ("dataset", "epochs", "batch_size", "recipe", "lr", "val_size", "train_subset",
            "eval_subset", "alpha", "num_estimators", "gamma")  # fmt: skip
TOLERANCE = {"cls/Acc": 0.003, "cls/NLL": 0.01, "cal/ECE": 0.003, "ood/AUROC": 0.01,
             "cplx/params": 0.0}  # fmt: skip


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_lenet_seed_0_reproduces_the_committed_mnist_results(real_root, tmp_path, one_thread):
    committed = json.loads((ROOT / "data" / "results" / "mnist.json").read_text())
    settings = {k: committed["config"][k] for k in SETTINGS}
    config = ExperimentConfig.create(
        "full", **settings, models=("lenet",), seed=0, seeds=1, workers=1,
        data_dir=str(real_root), out=str(tmp_path),
    )  # fmt: skip
    comparison = run_comparison(config)
    (run,) = comparison.runs["LeNet"]
    expected = committed["models"]["LeNet"]["seeds"][committed["models"]["LeNet"]["seed_values"]
                                                     .index(0)]  # fmt: skip
    for key, tolerance in TOLERANCE.items():
        assert run.metrics[key] == pytest.approx(expected[key], abs=tolerance), key

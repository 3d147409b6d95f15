"""The metric registry: one entry per metric, read by the tables, the verdicts and the glossary."""

from __future__ import annotations

import pytest
import torch

from tutorial_lib import metric_registry, report
from tutorial_lib.metric_registry import METRICS, Metric, lookup
from tutorial_lib.metrics import evaluate_predictions
from tutorial_lib.metrics.evaluate import HIGHER_IS_BETTER

# what the comparison adds to evaluate_predictions' keys (routine, compare, chapter 8's table)
COST_AND_MORE = ("cplx/params", "cplx/flops_per_image", "cplx/fit_s", "cplx/images_per_s",
                 "cal/GL", "ts/T")  # fmt: skip
DESCRIPTIVE = [key for key, metric in METRICS.items() if metric.direction == "descriptive"]


def every_key() -> dict[str, float]:
    """One column holding every key a comparison of ensembles with an OOD set shows."""
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(200, 3, 10, generator=g).softmax(-1)
    ood = torch.randn(100, 3, 10, generator=g).softmax(-1)
    metrics = evaluate_predictions(probs, torch.randint(0, 10, (200,), generator=g), ood)
    from tutorial_lib.compare import CALIBRATED_KEYS

    metrics |= {f"ts/{key}": metrics[key] for key in CALIBRATED_KEYS}
    return metrics | dict.fromkeys(COST_AND_MORE, 1.0)


def test_every_key_evaluate_predictions_returns_has_an_entry():
    g = torch.Generator().manual_seed(1)
    for members in (1, 4):
        probs = torch.randn(50, members, 10, generator=g).softmax(-1)
        ood = torch.randn(30, members, 10, generator=g).softmax(-1)
        keys = set(evaluate_predictions(probs, torch.randint(0, 10, (50,), generator=g), ood))
        assert keys <= set(METRICS), keys - set(METRICS)
    assert [key for key in every_key() if lookup(key) is None] == []  # the comparison's keys too


def test_every_row_of_a_full_table_has_a_label_of_its_own():
    table = report.MetricTable({"a": every_key(), "b": every_key()})
    labels = [label for _, label, _, _ in table.rows()]
    assert "Other" not in table.sections  # every key found its section
    assert len(labels) == len(set(labels)), sorted(labels)
    assert len({report.short_label(key) for key in every_key()}) == len(every_key())
    # the two entropies of the ID set are named for what they compute
    assert report.short_label("cls/Entropy") == "predictive entropy"
    assert report.short_label("ens/Entropy") == "expected entropy"


def test_descriptive_metrics_have_no_arrow_no_best_and_no_verdict():
    assert {"cls/Entropy", "ood/Entropy", "ens/Entropy", "ood/ens_Entropy"} <= set(DESCRIPTIVE)
    base, other = every_key(), {key: value + 1.0 for key, value in every_key().items()}
    table = report.compare({"base": base, "other": other})

    def entry(values: dict[str, float]) -> dict:  # two seeds, a spread: a verdict is possible
        return {"seeds": [values, {k: v + 0.01 for k, v in values.items()}], "metrics": values}

    (sentence,) = report.verdicts({"base": entry(base), "other": entry(other)}, "base")
    assert "better on" in sentence or "worse on" in sentence  # the headline metrics are judged
    for key in DESCRIPTIVE:
        assert "↑" not in report.label(key) and "↓" not in report.label(key), key
        assert report.direction(key) is None and key not in HIGHER_IS_BETTER
        assert table.best(key) is None, key
        assert key not in report.HEADLINE_KEYS
        assert report.short_label(key) not in sentence.split(". Cost:")[0], key
    # the same metric after temperature scaling: no verdict either
    assert report.direction("ts/cls/Entropy") is None


def test_a_metric_after_temperature_scaling_reads_as_its_entry():
    ece = lookup("ts/cal/ECE")
    assert ece.label == "T-scaled ECE" and ece.direction == "lower" and ece.format == "percent"
    assert report.format_value("ts/cal/ECE", 0.0123) == "1.23%"
    assert lookup("ts/no/such") is None and lookup("no/such") is None
    assert lookup("ts/cplx/params") is None  # the cost does not change with the temperature


def test_the_training_time_is_seconds_lower_is_better_and_throughput_is_inference():
    assert report.label("cplx/fit_s") == "training time ↓ (s)"
    assert report.format_value("cplx/fit_s", 8.64) == "8.6 s"
    assert report.label("cplx/images_per_s") == "inference images/s ↑"


def test_an_entry_must_state_a_direction_and_a_format():
    with pytest.raises(ValueError, match="direction"):
        Metric("x/y", "y", "better", "decimal", glossary="-")
    with pytest.raises(ValueError, match="format"):
        Metric("x/y", "y", "lower", "fraction", glossary="-")
    assert {m.format for m in METRICS.values()} <= {"percent", "integer", "seconds", "decimal"}
    assert all(m.glossary for m in METRICS.values())
    assert metric_registry.SECTION_OF["ood/Entropy"].title == "OOD Detection"

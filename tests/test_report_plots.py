"""Reports (terminal, HTML, Markdown, DataFrame) and plots (headless smoke tests)."""

from __future__ import annotations

import io
import math
import re

import matplotlib.pyplot as plt
import pytest
import torch
from rich.console import Console

from tutorial_lib import plots, report
from tutorial_lib.metrics import evaluate_predictions


@pytest.fixture(scope="module")
def predictions():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 10, (400,), generator=g)
    logits = torch.randn(400, 3, 10, generator=g) * 2
    logits[torch.arange(400), :, targets] += 2
    ood = torch.randn(300, 3, 10, generator=g).softmax(-1)
    return logits.softmax(-1), targets, ood


def test_report_formats(predictions):
    probs, targets, ood = predictions
    metrics = evaluate_predictions(probs, targets, ood) | {"cplx/params": 44426.0}
    table = report.report(metrics, "LeNet", title="Test")
    md = table.to_markdown()
    assert f"{100 * metrics['cls/Acc']:.2f}%" in md
    assert f"{metrics['cls/NLL']:.5f}" in md and "44,426" in md
    assert "***OOD Detection***" in md and "***Selective Classification***" in md
    html = table._repr_html_()
    assert "<table" in html and "\x1b[" not in html and "Calibration" in html
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=False, width=100).print(table)
    assert "AUROC" in buffer.getvalue()


def test_comparison_marks_best_and_directions(predictions):
    probs, targets, ood = predictions
    a = evaluate_predictions(probs[:, :1], targets, ood[:, :1])
    b = evaluate_predictions(probs, targets, ood)
    table = report.compare({"single": a, "ensemble": b})
    best_acc = "ensemble" if b["cls/Acc"] > a["cls/Acc"] else "single"
    assert table.best("cls/Acc") == best_acc
    assert table.best("cls/NLL") == ("ensemble" if b["cls/NLL"] < a["cls/NLL"] else "single")
    assert table.best("cls/Entropy") is None  # neither direction is better
    assert report.label("cls/Acc") == "Acc ↑ (%)" and report.label("cal/ECE") == "ECE ↓ (%)"
    frame = table.to_dataframe()
    assert list(frame.columns) == ["single", "ensemble"]
    assert frame.loc[("Classification", "Acc ↑ (%)"), "ensemble"] == pytest.approx(b["cls/Acc"])
    assert (
        frame.loc[("Ensemble Diversity", "Disagreement"), "single"]
        != frame.loc[("Ensemble Diversity", "Disagreement"), "single"]
    )  # NaN: the single model has no diversity
    assert "**" in table.to_markdown()
    with pytest.raises(ValueError):
        report.compare({})


def test_show_without_terminal_prints_markdown(predictions, capsys):
    probs, targets, _ = predictions
    report.show(report.report(evaluate_predictions(probs, targets)))
    assert "| Metric |" in capsys.readouterr().out


def test_reliability_bars_are_per_bin_accuracy_and_title_is_the_table_ece(predictions):
    from tutorial_lib.metrics.calibration import calibration_bins

    probs, targets, _ = predictions
    fig = plots.reliability_diagram(probs, targets, title="m")
    top, bottom = fig.axes
    mean = probs.double().mean(1)
    conf, pred = mean.max(-1)
    counts, acc, avg = calibration_bins(conf, pred == targets)
    filled = counts > 0
    accuracy_bars, gap_bars = top.containers[0], top.containers[1]
    heights = torch.tensor([bar.get_height() for bar in accuracy_bars], dtype=torch.float64)
    torch.testing.assert_close(heights, acc[filled])  # accuracy, not confidence
    gap_tops = torch.tensor([b.get_y() + b.get_height() for b in gap_bars], dtype=torch.float64)
    torch.testing.assert_close(gap_tops, avg[filled])  # the red part reaches the confidence
    lefts = torch.tensor([b.get_x() for b in accuracy_bars], dtype=torch.float64)
    torch.testing.assert_close(lefts, torch.nonzero(filled).flatten().double() / 15)
    assert {round(b.get_width(), 9) for b in [*accuracy_bars, *gap_bars]} == {round(1 / 15, 9)}
    legend = {t.get_text() for t in top.get_legend().get_texts()}
    assert legend == {"accuracy", "gap to confidence", "perfect calibration"}
    assert top.get_ylabel() == "accuracy" and top.get_ylim() == (0, 1)
    assert bottom.get_xlabel().startswith("confidence") and bottom.get_yscale() == "log"
    counts_drawn = [b.get_height() for b in bottom.containers[0]]
    assert counts_drawn == counts[:15].tolist()  # the bin of confidence 1.0 is a point, if any
    ece = evaluate_predictions(probs, targets)["cal/ECE"]
    assert f"(ECE {100 * ece:.2f}%)" in top.get_title()
    plt.close(fig)


def test_ood_roc_axes_are_false_then_true_positive_rates(predictions):
    from tutorial_lib.metrics.ood import roc_curve

    probs, _, ood = predictions
    fig = plots.ood_histograms(probs, ood, "m")
    left, right = fig.axes
    id_conf, ood_conf = probs.double().mean(1).max(-1).values, ood.double().mean(1).max(-1).values
    fpr, tpr = roc_curve(torch.cat([1 - id_conf, 1 - ood_conf]).double(),
                         torch.cat([torch.zeros(400), torch.ones(300)]).bool())  # fmt: skip
    line = right.lines[0]
    assert line.get_xdata().tolist() == pytest.approx(fpr.tolist())
    assert line.get_ydata().tolist() == pytest.approx(tpr.tolist())
    assert "false positive" in right.get_xlabel() and "true positive" in right.get_ylabel()
    auroc = evaluate_predictions(probs, torch.zeros(400, dtype=torch.long), ood)["ood/AUROC"]
    assert f"AUROC {100 * auroc:.2f}%" in line.get_label()
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "MNIST (ID)", "FashionMNIST (OOD)"]  # fmt: skip
    plt.close(fig)


def test_risk_coverage_curves_and_disagreement_matrix(predictions):
    from tutorial_lib.metrics.selective import aurc, risk_coverage_curve

    probs, targets, _ = predictions
    fig = plots.risk_coverage_plot({"single": (probs[:, 0], targets), "ensemble": (probs, targets)})
    conf, pred = probs.double().mean(1).max(-1)
    coverage, risk = risk_coverage_curve(conf, (pred != targets).double())
    line = fig.axes[0].lines[1]
    assert line.get_xdata().tolist() == pytest.approx((100 * coverage).tolist())
    assert line.get_ydata().tolist() == pytest.approx((100 * risk).tolist())
    assert f"AURC {100 * aurc(coverage, risk):.3f}%" in line.get_label()
    fig = plots.disagreement_matrix(probs)
    preds = probs.argmax(-1)
    expected = (preds[:, 0] != preds[:, 2]).double().mean()
    assert fig.axes[0].images[0].get_array()[0, 2] == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="M >= 2"):
        plots.disagreement_matrix(probs[:, :1])
    plt.close("all")


def test_error_gallery_shows_the_most_confident_errors_first(predictions):
    probs, targets, _ = predictions
    images = torch.rand(400, 28, 28)
    fig = plots.error_gallery(images, probs, targets, max_images=6)
    assert len(fig.axes) == 8  # 2 rows of 4 panels for 6 errors
    mean = probs.mean(1)
    conf, pred = mean.max(-1)
    wrong = torch.nonzero(pred != targets).flatten()
    ordered = wrong[torch.argsort(conf[wrong], descending=True)][:6]
    titles = [ax.get_title() for ax in fig.axes[:6]]
    for title, i in zip(titles, ordered.tolist(), strict=True):
        assert title == (f"true {int(targets[i])}, pred {int(pred[i])} "
                         f"({100 * float(conf[i]):.0f}%)")  # fmt: skip
    shown = fig.axes[0].images[0].get_array()
    assert torch.equal(torch.as_tensor(shown), images[ordered[0]])
    plt.close(fig)


def test_shift_boxplots_pool_corruptions_per_severity():
    rows = [
        {"model": m, "severity": s, "corruption": c, "cls/Acc": a, "cls/NLL": a / 2}
        for m, base in (("a", 0.9), ("b", 0.8))
        for s in (0, 1)
        for c, a in (("x", base - 0.1 * s), ("y", base - 0.2 * s))
    ]
    fig = plots.shift_boxplots(rows, keys=("cls/Acc", "cls/NLL"))
    acc_axis, nll_axis = fig.axes
    assert "(%)" in acc_axis.get_ylabel() and "(nats)" in nll_axis.get_ylabel()
    boxes = [p.get_path().get_extents() for p in acc_axis.patches]  # model a: s0, s1; b: s0, s1
    quartiles = [(round(b.y0, 6), round(b.y1, 6)) for b in boxes]
    # severity 1 of model a: corruptions at 80 % and 70 %: quartiles 72.5 and 77.5
    assert quartiles == [(90.0, 90.0), (72.5, 77.5), (80.0, 80.0), (62.5, 67.5)]
    nll_boxes = [p.get_path().get_extents() for p in nll_axis.patches]
    assert round(nll_boxes[0].y0, 6) == 0.45  # NLL in nats, not scaled to percent
    plt.close(fig)


def test_learning_curves_and_packed_weight_diagram(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from tutorial_lib.layers import PackedLinear

    with pytest.raises(FileNotFoundError, match="train a model first"):
        plots.learning_curves(tmp_path)
    writer = SummaryWriter(str(tmp_path / "lenet" / "version_0"))
    for step in range(5):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_scalar("val/Acc", 0.9, 4)
    writer.close()
    fig = plots.learning_curves(tmp_path)
    assert len(fig.axes[0].lines) == 1
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "lenet/version_0"
    assert fig.axes[0].lines[0].get_ydata().tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4,
                                                                        1 / 5])  # fmt: skip
    assert fig.axes[1].lines[0].get_ydata().tolist() == pytest.approx([90.0])
    fig = plots.packed_weight_diagram({"M=4": PackedLinear(8, 8, alpha=2, num_estimators=4)})
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (16, 16)
    assert image.count() == 4 * 4 * 4  # 4 blocks of 4 x 4 weights (the rest masked)
    plt.close("all")


def _entry(per_seed: dict[str, list[float]], fit_s: list[float] | None = None) -> dict:
    """A model's entry as results.json holds it: per-seed metric dicts (and means)."""
    n = len(next(iter(per_seed.values())))
    seeds = [{k: v[i] for k, v in per_seed.items()} for i in range(n)]
    return {"seeds": seeds, "metrics": {k: sum(v) / n for k, v in per_seed.items()},
            "fit_s": fit_s or [0.0] * n}  # fmt: skip


def test_verdicts_test_headline_metrics_over_seeds():
    base = _entry({"cls/Acc": [0.90, 0.91, 0.90], "cls/NLL": [0.30, 0.31, 0.29],
                   "cal/ECE": [0.020, 0.025, 0.015], "cls/Brier": [0.1, 0.1, 0.1],
                   "cplx/params": [100.0] * 3})  # fmt: skip
    other = _entry({"cls/Acc": [0.95, 0.96, 0.95], "cls/NLL": [0.40, 0.41, 0.40],
                    "cal/ECE": [0.021, 0.016, 0.026], "cls/Brier": [0.5, 0.5, 0.5],
                    "cplx/params": [400.0] * 3})  # fmt: skip
    (line,) = report.verdicts({"base": base, "other": other}, "base")
    assert line == (
        "other vs base (3 seeds; Welch's t-test, Holm over 3 headline metrics, 5% family-wise): "
        "better on Acc; worse on NLL; not distinguishable on ECE. Cost: 4.00x the parameters."
    )  # Brier is not a headline metric; parameters are cost, never a "worse metric"
    swapped = report.verdicts({"base": other, "other": base}, "base")[0]
    assert "better on NLL; worse on Acc" in swapped
    pairs = [("base", base), ("other", other)]
    one = {n: _entry({k: [v] for k, v in e["seeds"][0].items()}) for n, e in pairs}
    assert report.verdicts(one, "base")[0].startswith(
        "other vs base: one seed: no verdict, run --seeds N.")  # fmt: skip
    with pytest.raises(ValueError, match="not a model"):
        report.verdicts({"base": base}, "missing")


def test_seed_values_read_every_kind_of_key():
    entry = _entry({"cls/Acc": [0.9, 0.8]}, fit_s=[2.0, 4.0])
    entry |= {"temperature": [1.1, 1.2],
              "calibrated": {"seeds": [{"cal/ECE": 0.01}, {"cal/ECE": 0.02}]}}  # fmt: skip
    assert report.seed_values(entry, "cls/Acc") == [0.9, 0.8]
    assert report.seed_values(entry, "ts/cal/ECE") == [0.01, 0.02]
    assert report.seed_values(entry, "ts/T") == [1.1, 1.2]
    assert report.seed_values(entry, "cplx/fit_s") == [2.0, 4.0]
    assert report.seed_values(entry, "ood/AUROC") == []


def test_mean_std_cells_and_the_temperature_scaling_rows():
    table = report.MetricTable(
        {"a": {"cls/Acc": 0.98, "cls/NLL": 0.05, "ts/T": 1.5, "ts/cal/ECE": 0.01,
               "cplx/params": 44426.0}},
        "t", {"a": {"cls/Acc": 0.001, "cls/NLL": 0.002, "ts/T": 0.1, "ts/cal/ECE": 0.003}},
        seeds=3,
    )  # fmt: skip
    md = table.to_markdown()
    assert "98.00 ± 0.10%" in md and "0.05000 ± 0.00200" in md and "44,426" in md
    assert "1.500 ± 0.100" in md and "1.00 ± 0.30%" in md
    assert "***After temperature scaling (T fitted on validation)***" in md
    assert "mean ± std over 3 seeds" in md and "***Cost***" in md
    assert report.label("ts/cal/ECE") == "T-scaled ECE ↓ (%)"
    assert report.direction("ts/cls/Acc") is True
    assert report.format_value("cls/Acc", float("nan")) == "n/a"


def test_a_negative_grouping_loss_is_never_ranked_best():
    table = report.compare({"a": {"cal/GL": -0.0004}, "b": {"cal/GL": 0.0}, "c": {"cal/GL": 0.01}})
    assert table.best("cal/GL") is None  # a tie at about 0: no best
    assert report.ranked("cal/GL", -0.2) == 0.0 and report.ranked("cal/GL", 0.3) == 0.3
    assert report.ranked("cls/NLL", -0.2) == -0.2


def test_oracle_risk_and_zoomed_risk_coverage(predictions):
    errors = torch.tensor([0.0, 1.0, 0.0, 1.0])  # two right, two wrong
    assert plots.oracle_risk(errors).tolist() == [0.0, 0.0, 1 / 3, 0.5]
    probs, targets, _ = predictions
    fig = plots.risk_coverage_plot({"m": (probs, targets)}, coverage_range=(80, 100), oracle=True)
    ax = fig.axes[0]
    assert ax.get_xlim() == (80, 100) and len(ax.lines) == 2
    pred = probs.double().mean(1).argmax(-1)
    assert ax.lines[1].get_ydata().tolist() == pytest.approx(
        (100 * plots.oracle_risk((pred != targets).double())).tolist()
    )
    plt.close(fig)


GOLDEN_COLUMNS = {
    "LeNet": {"cls/Acc": 0.9847, "cls/NLL": 0.04691, "ood/Entropy": 1.2, "cplx/params": 44426,
              "cplx/fit_s": 8.6, "custom/score": 0.5},
    "DE-2": {"cls/Acc": 0.9882, "cls/NLL": 0.04160, "ood/Entropy": 1.5, "cplx/params": 88852,
             "cplx/fit_s": 10.5, "custom/score": 0.25},
}  # fmt: skip
GOLDEN_SPREAD = {"LeNet": {"cls/Acc": 0.0022, "cls/NLL": 0.0045},
                 "DE-2": {"cls/Acc": 0.0008, "cls/NLL": 0.002}}  # fmt: skip
GOLDEN_MARKDOWN = """\
**MNIST (mean ± std over 3 seeds)**

| Metric | LeNet | DE-2 |
|---|---:|---:|
| ***Classification*** | | |
| Acc ↑ (%) | 98.47 ± 0.22% | **98.82 ± 0.08%** |
| NLL ↓ | 0.04691 ± 0.00450 | **0.04160 ± 0.00200** |
| ***OOD Detection*** | | |
| OOD predictive entropy | 1.20000 | 1.50000 |
| ***Cost*** | | |
| params ↓ | **44,426** | 88,852 |
| training time ↓ (s) | **8.6 s** | 10.5 s |
| ***Other*** | | |
| custom/score | 0.50000 | 0.25000 |
"""


def test_a_table_reads_exactly_as_expected_in_markdown_html_and_a_terminal():
    table = report.MetricTable(GOLDEN_COLUMNS, title="MNIST", spread=GOLDEN_SPREAD, seeds=3)
    assert table.to_markdown() == GOLDEN_MARKDOWN == str(table)
    right = '<td style="text-align:right">'
    assert table._repr_html_() == (
        '<table class="metric-table"><caption>MNIST (mean ± std over 3 seeds)</caption><thead>'
        '<tr><th>Metric</th><th style="text-align:right">LeNet</th><th style="text-align:right">'
        'DE-2</th></tr></thead><tbody><tr><th colspan="3" style="text-align:left">Classification'
        f"</th></tr><tr><td>Acc ↑ (%)</td>{right}98.47 ± 0.22%</td>{right}<b>98.82 ± 0.08%</b>"
        f"</td></tr><tr><td>NLL ↓</td>{right}0.04691 ± 0.00450</td>{right}<b>0.04160 ± 0.00200"
        '</b></td></tr><tr><th colspan="3" style="text-align:left">OOD Detection</th></tr><tr>'
        f"<td>OOD predictive entropy</td>{right}1.20000</td>{right}1.50000</td></tr><tr><th "
        f'colspan="3" style="text-align:left">Cost</th></tr><tr><td>params ↓</td>{right}<b>44,426'
        f"</b></td>{right}88,852</td></tr><tr><td>training time ↓ (s)</td>{right}<b>8.6 s</b>"
        f'</td>{right}10.5 s</td></tr><tr><th colspan="3" style="text-align:left">Other</th>'
        f"</tr><tr><td>custom/score</td>{right}0.50000</td>{right}0.25000</td></tr></tbody>"
        "</table>"
    )
    frame = table.to_dataframe()
    assert list(frame.columns) == ["LeNet", "DE-2"]
    assert frame.loc[("Cost", "params ↓"), "DE-2"] == 88852
    assert list(frame.index.names) == ["section", "metric"]
    console = Console(width=80, force_terminal=True, color_system="standard")
    with console.capture() as captured:
        console.print(report.MetricTable({n: {k: c[k] for k in ("cls/Acc", "cls/NLL")}
                                          for n, c in GOLDEN_COLUMNS.items()}))  # fmt: skip
    lines = captured.get().splitlines()
    ansi = r"\x1b\[[\d;]*m"
    shown = [re.sub(ansi, "", line) for line in lines]  # what a reader sees, without styles
    assert shown[1] == "┃ Metric         ┃   LeNet ┃    DE-2 ┃"
    assert shown[3] == "│ Classification │         │         │"
    assert shown[4] == "│   Acc ↑ (%)    │  98.47% │  98.82% │"
    assert shown[5] == "│   NLL ↓        │ 0.04691 │ 0.04160 │"
    assert "Classification" in shown[3]
    highlighted = [re.findall(ansi + r"([^\x1b]+)\x1b\[0m", line) for line in lines[4:6]]
    assert highlighted == [["98.82%"], ["0.04160"]]  # only the best value of each row stands out


@pytest.mark.parametrize(
    ("key", "short", "full"),
    [
        ("ts/T", "temperature T", "temperature T"),
        ("ts/cal/ECE", "T-scaled ECE", "T-scaled ECE ↓ (%)"),
        ("ood/ens_MI", "OOD MI", "OOD MI ↑"),
        ("ood/AUROC", "AUROC", "AUROC ↑ (%)"),
        ("ood/FPR95", "FPR95", "FPR95 ↓ (%)"),
        ("cls/Entropy", "predictive entropy", "predictive entropy"),
        ("ens/Entropy", "expected entropy", "expected entropy"),
        ("ood/Entropy", "OOD predictive entropy", "OOD predictive entropy"),
        ("cplx/fit_s", "training time", "training time ↓ (s)"),
        ("cplx/images_per_s", "inference images/s", "inference images/s ↑"),
        ("sc/Cov@5Risk", "Cov@5Risk", "Cov@5Risk ↑ (%)"),
        ("custom/score", "custom/score", "custom/score"),  # no entry: shown as it is
    ],
)
def test_labels(key, short, full):
    assert report.short_label(key) == short
    assert report.label(key) == full


@pytest.mark.parametrize(
    ("key", "value", "spread", "text"),
    [
        ("cls/Acc", 0.99123, None, "99.12%"),
        ("cls/Acc", 0.99123, 0.0005, "99.12 ± 0.05%"),
        ("cls/Acc", 0.9, 0.0123, "90.00 ± 1.23%"),
        ("cls/Acc", float("nan"), None, "n/a"),
        ("cls/Acc", None, None, "n/a"),
        ("cls/Acc", 0.5, float("nan"), "50.00%"),
        ("cplx/params", 44426.0, 0.0, "44,426"),
        ("cplx/params", 44426.0, 12.4, "44,426 ± 12"),
        ("cplx/fit_s", 8.64, 0.25, "8.6 ± 0.2 s"),
        ("cplx/images_per_s", 12345.6, None, "12,346"),
        ("custom/score", 0.5, None, "0.50000"),
        ("ts/T", 0.6587, 0.0131, "0.659 ± 0.013"),
        ("cls/NLL", 0.012341, 0.001, "0.01234 ± 0.00100"),
        ("sc/Risk@80Cov", 0.0123, None, "1.23%"),
    ],
)
def test_format_value(key, value, spread, text):
    assert report.format_value(key, value, spread) == text


def test_verdict_sentences_in_full():
    base = _entry({"cls/Acc": [0.90, 0.90], "cls/NLL": [math.nan, 0.1],
                   "cplx/params": [100.0] * 2, "cplx/flops_per_image": [10.0] * 2},
                  fit_s=[2.0, 2.0])  # fmt: skip
    other = _entry({"cls/Acc": [0.90, 0.90], "cls/NLL": [0.1, 0.1],
                    "cplx/params": [100.0] * 2, "cplx/flops_per_image": [25.0] * 2},
                   fit_s=[3.0, 3.0])  # fmt: skip
    (line,) = report.verdicts({"base": base, "other": other}, "base")
    assert line == (
        "other vs base (2 seeds; Welch's t-test, Holm over 1 headline metrics, 5% family-wise): "
        "not distinguishable on Acc. Cost: 1.00x the parameters, 2.50x the FLOPs, 1.50x the "
        "training time."
    )  # a NaN is not weighed
    # a mean per seed, whatever the seeds: 2 and 3 seeds, 2 s and 3 s a run
    uneven = {"base": _entry({"cls/Acc": [0.90, 0.91]}, fit_s=[2.0, 2.0]),
              "other": _entry({"cls/Acc": [0.90, 0.91, 0.92]}, fit_s=[3.0, 3.0, 3.0])}  # fmt: skip
    assert report.verdicts(uneven, "base")[0].endswith("Cost: 1.50x the training time.")
    untimed = {"base": _entry({"cls/Acc": [0.90, 0.91]}),  # no training time: no ratio
               "other": _entry({"cls/Acc": [0.90, 0.91]}, fit_s=[3.0, 3.0])}  # fmt: skip
    assert report.verdicts(untimed, "base")[0].endswith("not distinguishable on Acc.")
    # alpha reaches the test: significant at 5 %, not at 1 %
    close = {"base": _entry({"cls/Acc": [0.90, 0.91, 0.90]}),
             "other": _entry({"cls/Acc": [0.915, 0.925, 0.92]})}  # fmt: skip
    assert report.verdicts(close, "base")[0].endswith("better on Acc.")
    strict = report.verdicts(close, "base", alpha=0.01)[0]
    assert "1% family-wise): not distinguishable on Acc." in strict
    no_cost = {n: _entry({"cls/Acc": [0.9, 0.91]}) for n in ("base", "other")}
    (line,) = report.verdicts(no_cost, "base")
    assert line.endswith("not distinguishable on Acc.")


def test_table_titles_columns_and_errors():
    assert report.MetricTable({"a": {"cls/Acc": 0.9}}, "T", seeds=1).title == "T"
    assert report.MetricTable({"a": {"cls/Acc": 0.9}}, "T", seeds=2).title == (
        "T (mean ± std over 2 seeds)")  # fmt: skip
    assert report.MetricTable({"a": {"cls/Acc": 0.9}}, "", seeds=3).title == ""
    single = report.report({"cls/Acc": 0.9})
    assert list(single.columns) == ["value"] and single.title == ""
    assert single.to_markdown().startswith("| Metric | value |")
    assert report.report({"cls/Acc": 0.9}, "m", "Test").title == "Test"
    assert report.compare({"a": {"cls/Acc": 0.9}}, "C").title == "C"
    assert report.compare({"a": {"cls/Acc": 0.9}}).title == ""
    with pytest.raises(ValueError, match="^MetricTable needs at least one column of metrics.$"):
        report.MetricTable({})
    partial = report.MetricTable({"a": {"cls/Acc": 0.9, "cls/NLL": 0.3}, "b": {"cls/Acc": 0.8}},
                                 spread={"a": {"cls/Acc": 0.01}}, seeds=2)  # fmt: skip
    assert partial.std("b", "cls/Acc") is None and partial.std("a", "cls/Acc") == 0.01
    assert "| NLL ↓ | 0.30000 | – |" in partial.to_markdown()  # one value: no best
    frame = partial.to_dataframe()
    assert math.isnan(frame.loc[("Classification", "NLL ↓"), "b"])
    same = report.compare({"a": {"cls/Acc": 0.9}, "b": {"cls/Acc": 0.9}})
    assert same.best("cls/Acc") is None  # a tie has no best


def test_show_picks_html_in_a_notebook_and_a_rich_table_on_a_terminal(monkeypatch, capsys):
    import sys
    import types

    table = report.compare({"a": {"cls/Acc": 0.9}, "b": {"cls/Acc": 0.8}}, "Title")

    class ZMQInteractiveShell:
        pass

    class TerminalInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", fake)
    fake.get_ipython = lambda: None
    assert not report._in_notebook()
    fake.get_ipython = TerminalInteractiveShell
    assert not report._in_notebook()
    fake.get_ipython = ZMQInteractiveShell
    assert report._in_notebook()
    shown = []
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    report.show(table)
    assert shown == [table]
    monkeypatch.delitem(sys.modules, "IPython")
    assert not report._in_notebook()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    report.show(table)
    printed = capsys.readouterr().out
    assert "Title" in printed and "Metric" in printed and "Classification" in printed
    assert "90.00%" in printed and "|---" not in printed  # a rich table, not Markdown

"""Reports (terminal, HTML, Markdown, DataFrame) and plots (headless smoke tests)."""

from __future__ import annotations

import io

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


def test_plots_render(predictions, tmp_path):
    probs, targets, ood = predictions
    images = torch.rand(400, 28, 28)
    figures = [
        plots.reliability_diagram(probs, targets),
        plots.risk_coverage_plot({"single": (probs[:, 0], targets), "ensemble": (probs, targets)}),
        plots.ood_histograms(probs, ood, "ensemble"),
        plots.error_gallery(images, probs, targets, max_images=6),
        plots.disagreement_matrix(probs),
    ]
    for i, fig in enumerate(figures):
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 5_000
        plt.close(fig)
    legend = figures[1].axes[0].get_legend().get_texts()
    assert all("AURC" in t.get_text() for t in legend)
    assert len(figures[3].axes) == 8  # 2 rows of 4 panels for 6 errors
    with pytest.raises(ValueError, match="M >= 2"):
        plots.disagreement_matrix(probs[:, :1])


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
    assert (
        len(fig.axes[0].lines) == 1
        and fig.axes[0].get_legend().get_texts()[0].get_text() == "lenet"
    )
    fig = plots.packed_weight_diagram({"M=4": PackedLinear(8, 8, alpha=2, num_estimators=4)})
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (16, 16) and image.sum() == 4 * 4 * 4  # 4 blocks of 4 x 4
    plt.close("all")


def test_verdicts_are_computed_from_the_values():
    table = report.compare(
        {
            "base": {"cls/Acc": 0.9, "cls/NLL": 0.3, "cls/Entropy": 0.1},
            "other": {"cls/Acc": 0.95, "cls/NLL": 0.4, "cls/Entropy": 0.2},
        }  # fmt: skip
    )
    (line,) = report.verdicts(table, "base")
    assert line == "other vs base: better on 1 metrics (Acc), worse on 1 (NLL)."
    with pytest.raises(ValueError, match="not a column"):
        report.verdicts(table, "missing")

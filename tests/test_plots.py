"""What each figure shows a reader: its data, panels, words, scales, meaningful limits, legends.

The look (sizes, colours, line widths, fonts, placement) is left free: it lives in the style
tables at the top of ``tutorial_lib/plots.py`` and no test pins it.
(test_report_plots.py checks the computed parts: bar heights, ROC and risk-coverage points.)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from torch.utils.tensorboard import SummaryWriter

from tutorial_lib import plots
from tutorial_lib.layers import PackedLinear
from tutorial_lib.metrics.calibration import calibration_bins


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def predictions():
    g = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 10, (300,), generator=g)
    logits = torch.randn(300, 2, 10, generator=g) * 2
    logits[torch.arange(300), :, targets] += 2.5
    ood = (torch.randn(200, 2, 10, generator=g) * 0.5).softmax(-1)
    return logits.softmax(-1), targets, ood


def axis_text(ax) -> dict[str, object]:
    """The words and scales of one axis."""
    legend = ax.get_legend()
    return {
        "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
        "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else None,
    }  # fmt: skip


def test_reliability_diagram_panels_words_and_diagonal(predictions):
    probs, targets, _ = predictions
    fig = plots.reliability_diagram(probs, targets)
    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)  # one confidence axis for both panels
    words = axis_text(top)
    assert words["title"].startswith("Reliability diagram (ECE ") and words["title"].endswith("%)")
    assert words["ylabel"] == "accuracy" and words["yscale"] == "linear"
    assert words["legend"] == ["perfect calibration", "accuracy", "gap to confidence"]
    diagonal = top.lines[0]
    assert diagonal.get_xdata().tolist() == [0, 1] and diagonal.get_ydata().tolist() == [0, 1]
    assert len(top.containers) == 2  # the accuracy bars and the gaps above or below them
    assert axis_text(bottom) == {"title": "", "xlabel": "confidence (max mean probability)",
                                 "ylabel": "samples", "xscale": "linear", "yscale": "log",
                                 "legend": None}  # fmt: skip
    assert bottom.get_xlim() == pytest.approx((0, 1))  # nothing drawn past a confidence of 1
    assert len(bottom.containers[0]) == 15  # no confidence of exactly 1.0 here: no point
    assert not bottom.lines and len(top.lines) == 1
    assert sum(b.get_height() for b in bottom.containers[0]) == 300  # every sample counted


def test_reliability_diagram_draws_confidence_one_as_a_point_at_one():
    # 4 predictions of confidence exactly 1.0 (3 right), 2 of confidence 0.5 (1 right)
    probs = torch.zeros(6, 1, 3, dtype=torch.float64)
    probs[:4, 0, 0] = 1.0
    probs[4:, 0, :2] = 0.5
    targets = torch.tensor([0, 0, 0, 1, 0, 1])
    fig = plots.reliability_diagram(probs, targets)
    top, bottom = fig.axes
    assert top.get_xlim() == bottom.get_xlim() == pytest.approx((0, 1))
    for ax in (top, bottom):
        for bar in ax.containers[0]:
            assert bar.get_x() + bar.get_width() <= 1 + 1e-9  # no bar past a confidence of 1
    assert sum(b.get_height() for b in bottom.containers[0]) == 2  # the two at 0.5
    point = bottom.lines[0]
    assert point.get_xdata().tolist() == [1.0] and point.get_ydata().tolist() == [4]
    accuracy_at_one = top.lines[1]  # after the diagonal
    assert accuracy_at_one.get_xdata().tolist() == [1.0]
    assert accuracy_at_one.get_ydata().tolist() == pytest.approx([0.75])
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend == ["perfect calibration", "confidence 1.0 (4)", "accuracy", "gap to confidence"]
    # the ECE in the title still counts that bin: (4 * 0.25 + 2 * 0) / 6
    assert top.get_title() == f"Reliability diagram (ECE {100 * 1 / 6:.2f}%)"


def test_reliability_diagram_uses_the_bins_it_is_given(predictions):
    probs, targets, _ = predictions
    fig = plots.reliability_diagram(probs, targets, n_bins=5, title="five")
    top, bottom = fig.axes
    assert top.get_title().startswith("five (ECE ")
    assert len(bottom.containers[0]) == 5
    assert {round(b.get_width(), 9) for b in bottom.containers[0]} == {0.2}
    assert sum(b.get_height() for b in bottom.containers[0]) == 300  # every sample in 5 bins
    conf, pred = probs.double().mean(1).max(-1)
    counts, acc, _ = calibration_bins(conf, pred == targets, 5)
    heights = [b.get_height() for b in top.containers[0]]
    assert heights == pytest.approx(acc[:5][counts[:5] > 0].tolist())  # the 5 bins' accuracies


def test_reliability_diagram_draws_a_single_confidence_of_one():
    probs = torch.zeros(3, 1, 2, dtype=torch.float64)
    probs[0, 0, 0] = 1.0  # one prediction of confidence exactly 1.0, right
    probs[1:, 0] = torch.tensor([0.7, 0.3])
    top, bottom = plots.reliability_diagram(probs, torch.tensor([0, 0, 1])).axes
    assert bottom.lines[0].get_ydata().tolist() == [1]
    assert top.lines[1].get_xdata().tolist() == [1.0] and top.lines[1].get_ydata().tolist() == [1.0]


def test_ood_histograms_bins_density_and_words(predictions):
    probs, _, ood = predictions
    fig = plots.ood_histograms(probs, ood)
    left, right = fig.axes
    id_bars, ood_bars = left.containers
    for bars in (id_bars, ood_bars):
        assert len(bars) == 40
        assert [round(b.get_x(), 9) for b in bars] == [round(x, 9) for x in np.arange(40) / 40]
        assert sum(b.get_height() * b.get_width() for b in bars) == pytest.approx(1)  # density
    id_conf = probs.mean(1).max(-1).values
    counts, _ = np.histogram(id_conf.numpy(), np.linspace(0, 1, 41))
    heights = np.array([b.get_height() for b in id_bars])
    assert np.allclose(heights, counts / counts.sum() * 40)  # the ID bars are the ID set's
    assert axis_text(left) == {"title": "confidence", "xlabel": "confidence (max mean probability)",
                               "ylabel": "density", "xscale": "linear", "yscale": "log",
                               "legend": ["MNIST (ID)", "FashionMNIST (OOD)"]}  # fmt: skip
    words = axis_text(right)
    assert words["title"] == "ROC: OOD = positive, score = -confidence"
    assert words["xlabel"] == "false positive rate (ID flagged)"
    assert words["ylabel"] == "true positive rate (OOD caught)"
    assert words["legend"][0].startswith("AUROC ") and len(words["legend"]) == 1
    chance = right.lines[1]
    assert chance.get_xdata().tolist() == [0, 1] and chance.get_ydata().tolist() == [0, 1]
    named = plots.ood_histograms(probs, ood, "LeNet", "digits", "clothes")
    assert axis_text(named.axes[0])["title"] == "LeNet confidence"
    assert axis_text(named.axes[0])["legend"] == ["digits", "clothes"]


def test_risk_coverage_words_limits_and_oracles(predictions):
    probs, targets, _ = predictions
    fig = plots.risk_coverage_plot({"one": (probs[:, :1], targets), "two": (probs, targets)},
                                   oracle=True)  # fmt: skip
    (ax,) = fig.axes
    words = axis_text(ax)
    assert words["title"] == "Risk-coverage" and words["xlabel"] == "coverage (%)"
    assert words["ylabel"] == "risk: error rate among kept (%)"
    assert [w.split(" (AURC")[0] for w in words["legend"]] == ["one", "one: oracle", "two",
                                                               "two: oracle"]  # fmt: skip
    one, one_oracle, two, two_oracle = ax.lines
    for model, best in ((one, one_oracle), (two, two_oracle)):  # no model beats its oracle
        assert best.get_xdata().tolist() == model.get_xdata().tolist()
        assert np.all(best.get_ydata() <= model.get_ydata() + 1e-9)
    assert ax.get_xlim() == (0, 100)
    top = max(max(line.get_ydata()) for line in (one, two))
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= top  # from 0, no curve cut off
    perfect = torch.nn.functional.one_hot(targets, 10).float()[:, None]
    flat = plots.risk_coverage_plot({"perfect": (perfect, targets)}, title="t")
    assert flat.axes[0].get_ylim() == (0, 1)  # no error at all: the axis still shows 0 to 1
    assert flat.axes[0].get_title() == "t"


def test_error_gallery_grid_words_and_members(predictions):
    probs, targets, _ = predictions
    images = torch.rand(300, 1, 28, 28)
    names = [f"c{i}" for i in range(10)]
    fig = plots.error_gallery(images, probs, targets, class_names=names, max_images=5)
    assert len(fig.axes) == 8  # 5 errors: 4 columns, 2 rows
    assert len(fig.axes[5].images) == 0 and len(fig.axes[4].images) == 1
    first = fig.axes[0]
    assert first.get_title().startswith("true c") and ", pred c" in first.get_title()
    (members,) = first.texts
    lines = members.get_text().split("\n")
    assert len(lines) == 2 and lines[0].startswith("m0: c") and lines[1].startswith("m1: c")
    right = torch.nn.functional.one_hot(targets, 10).float()[:, None]
    none = plots.error_gallery(images, right, targets)
    assert len(none.axes) == 1 and none.axes[0].texts[0].get_text() == "no errors"
    two = plots.error_gallery(images, probs, targets, max_images=2)
    assert len(two.axes) == 2  # as many columns as errors, up to 4


def test_disagreement_matrix_words_and_numbers(predictions):
    probs, _, _ = predictions
    three = torch.cat([probs, probs[:, :1].roll(1, 0)], dim=1)  # member 2 disagrees most
    fig = plots.disagreement_matrix(three, title="who disagrees")
    ax, colorbar = fig.axes
    assert axis_text(ax)["title"] == "who disagrees"
    assert ax.get_xlabel() == "member" and ax.get_ylabel() == "member"
    assert list(ax.get_xticks()) == [0, 1, 2] and list(ax.get_yticks()) == [0, 1, 2]
    assert colorbar.get_ylabel() == "disagreement (%)"
    assert colorbar.yaxis.get_major_formatter()(0.25, 0) == "25"  # ticks read in percent
    matrix = ax.images[0].get_array()
    texts = {(t.get_position()[1], t.get_position()[0]): t for t in ax.texts}
    assert len(texts) == 9 and texts[(0, 1)].get_text() == f"{100 * matrix[0, 1]:.1f}"


def test_learning_curves_words_and_epochs(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_scalar("train/loss", 1.0 / (step + 1), 10 * step)
    for epoch in range(3):
        writer.add_scalar("val/Acc", 0.9 + epoch / 100, 10 * epoch)
    writer.close()
    fig = plots.learning_curves(tmp_path, title="curves")
    left, right = fig.axes
    assert axis_text(left) == {"title": "curves", "xlabel": "training step",
                               "ylabel": "training loss", "xscale": "linear", "yscale": "log",
                               "legend": [tmp_path.name]}  # fmt: skip
    assert left.lines[0].get_xdata().tolist() == [0, 10, 20]
    assert axis_text(right) == {"title": "Validation (held-out training images)",
                                "xlabel": "epoch", "ylabel": "validation accuracy (%)",
                                "xscale": "linear", "yscale": "linear",
                                "legend": [tmp_path.name]}  # fmt: skip
    assert list(right.lines[0].get_xdata()) == [1, 2, 3]  # epochs count from 1
    assert right.lines[0].get_ydata() == pytest.approx([90, 91, 92])
    assert plots.learning_curves(tmp_path).axes[0].get_title() == "Learning curves"


def test_packed_weight_diagram_words_and_blocks():
    layers = {"a": PackedLinear(8, 8, alpha=2, num_estimators=4),
              "b": PackedLinear(8, 8, alpha=2, num_estimators=2)}  # fmt: skip
    fig = plots.packed_weight_diagram(layers)
    first, second, colour_bar = fig.axes
    assert colour_bar.get_ylabel().startswith("|weight|")
    assert first.get_title() == "a\n16x16, 4 groups" and second.get_title() == "b\n16x16, 2 groups"
    assert first.get_xlabel() == "input feature" and first.get_ylabel() == "output feature"
    image = second.images[0].get_array()
    exists = ~np.ma.getmaskarray(image)  # no weight outside the member blocks: masked
    assert exists.sum() == 2 * 8 * 8 and exists[0, 0] and not exists[0, 15]
    assert np.array_equal(image[exists], layers["b"].weight.detach().abs().flatten().numpy())


def test_packed_weight_panels_share_one_colour_scale_and_one_size_per_weight():
    torch.manual_seed(0)
    # fan-in 2 per group (|w| < 0.71) and 16 (|w| < 0.25): the two panels' ranges differ
    layers = {"narrow": PackedLinear(8, 8, alpha=2, num_estimators=4, gamma=2),
              "wide": PackedLinear(8, 8, alpha=4, num_estimators=2)}  # fmt: skip
    fig = plots.packed_weight_diagram(layers)
    narrow, wide, bar = fig.axes
    largest = max(float(layer.weight.detach().abs().max()) for layer in layers.values())
    for ax in (narrow, wide):  # one colour scale: 0 to the largest |weight| of every panel
        norm = ax.images[0].norm
        assert (norm.vmin, norm.vmax) == (0, pytest.approx(largest))
    assert bar.get_ylim() == (0, pytest.approx(largest))  # and one colour bar shows it
    assert narrow.images[0].get_array().shape == (16, 16)
    assert wide.images[0].get_array().shape == (32, 32)
    fig.canvas.draw()  # one size per weight: the same data span over the same width in pixels
    spans = [abs(np.diff(ax.get_xlim())[0]) / ax.get_window_extent().width for ax in (narrow, wide)]
    assert spans[0] == pytest.approx(spans[1]) and abs(np.diff(narrow.get_xlim())[0]) == 32
    rows = [abs(np.diff(ax.get_ylim())[0]) / ax.get_window_extent().height for ax in (narrow, wide)]
    assert rows[0] == pytest.approx(rows[1]) == pytest.approx(spans[0])  # square weights


def test_shift_boxplots_places_one_box_per_model_and_severity():
    rows = [
        {"model": m, "severity": s, "corruption": c, "cls/Acc": 0.9 - 0.1 * s, "cal/ECE": 0.01 * s}
        for m in ("a", "b", "c") for s in (0, 1, 3) for c in ("x", "y")
    ]  # fmt: skip
    fig = plots.shift_boxplots(rows)
    acc, ece = fig.axes
    assert axis_text(acc) == {"title": "Acc under shift",
                              "xlabel": "shift severity (0 = clean test set)",
                              "ylabel": "Acc (%)", "xscale": "linear", "yscale": "linear",
                              "legend": ["a", "b", "c"]}  # fmt: skip
    assert ece.get_title() == "ECE under shift" and ece.get_ylabel() == "ECE (%)"
    assert ece.get_legend() is None  # one legend for the figure
    assert list(acc.get_xticks()) == [0, 1, 3]
    boxes = [p.get_path().get_extents() for p in acc.patches]  # a: 0, 1, 3; b: 0, 1, 3; c...
    spacing = 0.8 / 3
    expected = [s + (i - 1) * spacing for i in range(3) for s in (0, 1, 3)]
    assert [(b.x0 + b.x1) / 2 for b in boxes] == pytest.approx(expected)  # side by side
    assert [b.x1 - b.x0 < spacing for b in boxes] == [True] * 9  # no box covers its neighbour
    assert [round(b.y0, 6) for b in boxes] == [90.0, 80.0, 60.0] * 3  # accuracy in percent


def test_shift_boxplots_draw_each_median_visibly_on_its_box():
    from matplotlib.colors import to_rgba

    offsets = {"x": 0.0, "y": 0.05, "z": 0.2}  # three corruptions: the median is the middle one
    rows = [
        {"model": m, "severity": s, "corruption": c, "cls/Acc": 0.9 - 0.1 * s - d}
        for m in ("a", "b", "c") for s in (0, 1) for c, d in offsets.items()
    ]  # fmt: skip
    (acc,) = plots.shift_boxplots(rows, keys=("cls/Acc",)).axes
    for patch in acc.patches:  # model a: s0, s1; b: s0, s1; c ...
        box = patch.get_path().get_extents()
        medians = [line for line in acc.lines
                   if len(set(line.get_ydata())) == 1 and len(line.get_xdata()) == 2
                   and min(line.get_xdata()) == pytest.approx(box.x0)
                   and max(line.get_xdata()) == pytest.approx(box.x1)
                   and box.y0 < line.get_ydata()[0] < box.y1]  # fmt: skip
        assert len(medians) == 1, box  # one line across the box, strictly inside it
        (median,) = medians
        severity = round(box.x0 + box.width / 2)
        assert median.get_ydata()[0] == pytest.approx(100 * (0.9 - 0.1 * severity - 0.05))
        assert to_rgba(median.get_color()) != patch.get_facecolor()  # not lost in the box's colour
        assert median.get_visible() and median.get_zorder() >= patch.get_zorder()


def test_shift_boxplots_words_for_scaled_metrics_and_a_model_without_the_metric():
    rows = [
        {"model": m, "severity": s, "corruption": c, "ts/cls/NLL": 0.1 + s, "cal/ECE": 0.01}
        | ({"ens/MI": 0.05 * (s + 1)} if m != "single" else {})
        for m in ("single", "ensemble") for s in (0, 1) for c in ("x", "y")
    ]  # fmt: skip
    nll, mi = plots.shift_boxplots(rows, keys=("ts/cls/NLL", "ens/MI")).axes
    assert nll.get_title() == "T-scaled NLL under shift"
    assert nll.get_ylabel() == "T-scaled NLL (nats)"
    assert mi.get_title() == "MI under shift" and mi.get_ylabel() == "MI (nats)"
    assert [t.get_text() for t in nll.get_legend().get_texts()] == ["single", "ensemble"]
    assert len(nll.patches) == 4 and len(mi.patches) == 2  # no MI box for the single network
    spacing = 0.8 / 2
    boxes = [p.get_path().get_extents() for p in mi.patches]
    assert [round(b.y0, 6) for b in boxes] == [0.05, 0.1]  # in nats
    assert [(b.x0 + b.x1) / 2 for b in boxes] == pytest.approx([0 + spacing / 2, 1 + spacing / 2])


def test_pareto_plot_points_areas_error_bars_and_words():
    points = {
        "small": {"images_per_s": 1000.0, "params": 10, "cls/Acc": 0.9, "cls/Acc_std": 0.01,
                  "ood/AUROC": 0.8},
        "big": {"images_per_s": 100.0, "params": 40, "cls/Acc": 0.95, "ood/AUROC": 0.9,
                "ood/AUROC_std": 0.02},
    }  # fmt: skip
    fig = plots.pareto_plot(points, title="MNIST")
    acc, auroc = fig.axes
    assert axis_text(acc) == {"title": "MNIST Acc",
                              "xlabel": "inference throughput (images/s, log scale)",
                              "ylabel": "Acc (%)", "xscale": "log", "yscale": "linear",
                              "legend": None}  # fmt: skip
    assert auroc.get_title() == "MNIST AUROC" and auroc.get_ylabel() == "AUROC (%)"
    small, big = [c for c in acc.collections if isinstance(c, PathCollection)]
    assert small.get_offsets().tolist() == [[1000.0, 90.0]]
    assert big.get_offsets().tolist() == [[100.0, 95.0]]
    assert small.get_sizes()[0] < big.get_sizes()[0]  # the marker area grows with parameters
    bars = [c for c in acc.containers]
    assert len(bars) == 1  # only "small" has an accuracy spread
    (segment,) = bars[0].lines[2][0].get_segments()
    assert np.allclose(segment, [[1000.0, 89.0], [1000.0, 91.0]])  # +- 1 std, in percent
    assert len(auroc.containers) == 1
    (legend,) = fig.legends  # the key of marker sizes; the models' names are on the markers
    assert legend.get_title().get_text() == "marker area: parameters"
    assert [t.get_text() for t in legend.get_texts()] == ["10 parameters", "20 parameters",
                                                          "40 parameters",
                                                          "bars: ±1 std over seeds"]  # fmt: skip
    assert sorted(t.get_text() for t in acc.texts) == ["big", "small"]
    assert plots.pareto_plot(points).axes[0].get_title() == "Acc"


def test_error_gallery_lists_every_members_prediction_under_its_image(predictions):
    probs, targets, _ = predictions
    images = torch.rand(300, 28, 28)
    fig = plots.error_gallery(images, probs, targets)  # at most 8 errors by default
    assert len(fig.axes) == 8 and all(len(ax.images) == 1 for ax in fig.axes)
    (members,) = fig.axes[0].texts
    mean = probs.mean(1)
    conf, pred = mean.max(-1)
    wrong = torch.nonzero(pred != targets).flatten()
    top = int(wrong[torch.argmax(conf[wrong])])
    expected = [f"m{m}: {int(p.argmax())} {100 * float(p.max()):.0f}%" for m, p in
                enumerate(probs[top])]  # fmt: skip
    assert members.get_text().split("\n") == expected


def test_disagreement_matrix_of_two_members_and_of_identical_members(predictions):
    probs, _, _ = predictions
    fig = plots.disagreement_matrix(probs)  # M = 2 is enough
    ax = fig.axes[0]
    assert ax.get_title() == "Pairwise disagreement"
    preds = probs.argmax(-1)
    apart = float((preds[:, 0] != preds[:, 1]).double().mean())
    assert np.allclose(ax.images[0].get_array(), [[0, apart], [apart, 0]])
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}  # fmt: skip
    percent = f"{100 * apart:.1f}"  # each cell prints its value, in percent
    assert cells == {(0, 0): "0.0", (0, 1): percent, (1, 0): percent, (1, 1): "0.0"}
    same = torch.cat([probs[:, :1]] * 2 + [probs[:, :1].roll(1, 0)], dim=1)
    matrix = plots.disagreement_matrix(same).axes[0].images[0].get_array()
    assert matrix[0, 1] == matrix[1, 0] == 0  # two copies of one member never disagree
    assert matrix[0, 2] == matrix[1, 2] > 0


def test_pareto_plot_draws_each_models_error_bar_at_its_own_point():
    points = {name: {"images_per_s": 10.0 ** (i + 1), "params": 10 * (i + 1), "cls/Acc": 0.9,
                     "cls/Acc_std": 0.01 * (i + 1), "ood/AUROC": 0.8}
              for i, name in enumerate(("a", "b"))}  # fmt: skip
    fig = plots.pareto_plot(points)
    acc = fig.axes[0]
    dots = [c for c in acc.collections if isinstance(c, PathCollection)]
    for std, dot, bar in zip((1, 2), dots, acc.containers, strict=True):  # std in percent
        ((x, y),) = dot.get_offsets().tolist()
        (segment,) = bar.lines[2][0].get_segments()
        assert np.allclose(segment, [[x, y - std], [x, y + std]])
    assert sorted(t.get_text() for t in acc.texts) == ["a", "b"]


def _crowded_points():
    """Ten models as a Pareto study gives them: two pairs of twins (same speed, same quality),
    a cluster of fast models and one slow one."""
    rows = [
        ("LeNet", 82e3, 0.985, 44e3),
        ("MC-Dropout (T=8)", 4.7e3, 0.981, 44e3),
        ("BatchEnsemble (M=4)", 28e3, 0.986, 48e3),
        ("Packed-Ensemble (alpha=1, M=2)", 83e3, 0.978, 23e3),
        ("Packed-Ensemble (alpha=2, M=2)", 63e3, 0.9891, 89e3),
        ("Packed-Ensemble (alpha=2, M=4)", 63e3, 0.9815, 46e3),
        ("Packed-Ensemble (alpha=4, M=2)", 24e3, 0.9917, 350e3),
        ("Packed-Ensemble (alpha=4, M=4)", 27.7e3, 0.9899, 178e3),
        ("Deep Ensemble (M=2)", 63e3, 0.9890, 89e3),
        ("Deep Ensemble (M=4)", 27.7e3, 0.9898, 178e3),
    ]
    return {name: {"images_per_s": x, "images_per_s_min": 0.9 * x, "images_per_s_max": 1.2 * x,
                   "cls/Acc": acc, "cls/Acc_std": 0.001, "ood/AUROC": acc - 0.02, "params": params}
            for name, x, acc, params in rows}  # fmt: skip


def test_pareto_plot_is_readable_names_on_markers_nothing_covered():
    points = _crowded_points()
    fig = plots.pareto_plot(points, title="MNIST")
    renderer = fig.canvas.get_renderer()
    to_pixels = fig.dpi / 72
    for ax in fig.axes:
        names = [t for t in ax.texts]
        assert sorted(t.get_text() for t in names) == sorted(plots.short_name(n) for n in points)
        boxes = [t.get_window_extent(renderer) for t in names]
        for i, a in enumerate(boxes):
            assert ax.get_window_extent(renderer).contains(a.x0, a.y0)
            assert ax.get_window_extent(renderer).contains(a.x1, a.y1)
            assert not any(a.overlaps(b) for b in boxes[i + 1 :]), names[i].get_text()
        dots = [c for c in ax.collections if isinstance(c, PathCollection)]
        centres = np.array([ax.transData.transform(d.get_offsets()[0]) for d in dots])
        radii = np.array([np.sqrt(d.get_sizes()[0]) / 2 * to_pixels for d in dots])
        for i in range(len(dots)):  # no marker covers another
            apart = np.hypot(*(centres[i + 1 :] - centres[i]).T)
            assert (apart >= radii[i] + radii[i + 1 :]).all()
        for box in boxes:  # no name covers a marker
            nearest = np.column_stack([centres[:, 0].clip(box.x0, box.x1),
                                       centres[:, 1].clip(box.y0, box.y1)])  # fmt: skip
            assert (np.hypot(*(centres - nearest).T) >= radii - 0.5).all()
        segments = [ax.transData.transform(line.get_segments()[0])
                    for bar in ax.containers for line in bar.lines[2]]  # fmt: skip
        for (x0, y0), (x1, y1) in segments:  # no name crosses an error bar
            assert not any(b.x0 < x1 and x0 < b.x1 and b.y0 < y1 and y0 < b.y1 for b in boxes)
        true_x = ax.transData.transform([(p["images_per_s"], 1) for p in points.values()])[:, 0]
        assert np.abs(centres[:, 0] - true_x).max() <= 2 * radii.max()  # a dodge, not a move
        assert np.abs(centres[:, 0] - true_x)[[0, 1, 2]].max() == 0  # alone: exactly in place
        ticks = [
            t.get_window_extent(renderer)
            for t in ax.get_xticklabels()
            if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]
        ]
        assert len(ticks) >= 3
        assert not any(a.overlaps(b) for i, a in enumerate(ticks) for b in ticks[i + 1 :])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert {"5k", "10k", "20k", "50k"} <= set(labels)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[-4:] == ["PE: Packed-Ensemble", "DE: Deep Ensemble", "BE: BatchEnsemble",
                          "bars: ±1 std over seeds"]  # fmt: skip
    acc = fig.axes[0]  # the throughput's range as a horizontal bar
    lenet_bars = acc.containers[0].lines[2]
    assert len(lenet_bars) == 2  # one horizontal, one vertical
    assert plots.short_name("Packed-Ensemble (alpha=2, M=4)") == "PE (α=2, M=4)"
    assert plots.short_name("Deep Ensemble (M=2)") == "DE (M=2)"
    assert plots.short_name("LeNet") == "LeNet"


def _titled(text: str, log=None):
    """A drawing for write_figures: a figure titled ``text``; it notes which process drew it."""

    def draw():
        import os

        if log is not None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.set_title(text)
        return fig

    return draw


def test_write_figures_writes_every_figure_and_raises_a_drawing_error(tmp_path):
    drawings = {f"f{i}": _titled(f"figure {i}") for i in range(3)}
    plots.write_figures(drawings, tmp_path)
    for i in range(3):
        assert (tmp_path / f"f{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # no figure left open

    def broken():
        raise ValueError("no data to draw")

    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="no data to draw"):
        plots.write_figures({"a": _titled("a"), "b": broken}, tmp_path / "x")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["a.png"]


def test_markers_that_would_overlap_are_moved_apart_and_the_others_stay():
    import numpy as np

    centres = np.array([[100.0, 50.0], [104.0, 50.0], [300.0, 50.0], [100.0, 90.0]])
    radii = np.array([10.0, 6.0, 8.0, 5.0])
    x = plots._dodge(centres, radii, gap=2.0)
    assert x[1] - x[0] >= 10 + 6 + 2  # now side by side, the second still on the right
    assert abs((x[0] + x[1]) / 2 - 102.0) < 1e-9  # pushed apart evenly about their middle
    assert x[2] == 300.0 and x[3] == 100.0  # far away, or above by more than the radii: kept
    pile = np.array([[0.0, 0.0]] * 3)  # three on one spot: no two overlap any more
    spread = np.sort(plots._dodge(pile, np.array([4.0, 4.0, 4.0]), gap=1.0))
    assert np.all(np.diff(spread) >= 9.0 - 1e-9)


def test_counts_geometry_of_names_and_markers():
    assert [plots._count(v) for v in (200, 1000, 5000, 1_500_000)] == ["200", "1k", "5k", "1.5M"]
    assert plots._overlap((0, 0, 4, 2), (3, 1, 10, 10)) == 1.0  # a 1 x 1 corner shared
    assert plots._overlap((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert plots._covers((20, 0, 30, 10), (0.0, 5.0), 25.0) == 500.0  # 5 px deep, x 100
    assert plots._covers((20, 0, 30, 10), (0.0, 5.0), 15.0) == 0.0  # does not reach


def _outside(a, b) -> bool:
    """Whether two pixel boxes share no area (touching edges allowed)."""
    return a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


@pytest.mark.parametrize("members", [2, 4])
def test_error_gallery_members_lines_sit_under_their_own_image_and_cover_nothing(members):
    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 10, (200,), generator=g)
    probs = (torch.randn(200, members, 10, generator=g) * 2).softmax(-1)
    fig = plots.error_gallery(torch.rand(200, 28, 28), probs, targets)  # 8 errors: 2 rows of 4
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    whole = fig.bbox
    images = [ax.images[0].get_window_extent(renderer) for ax in fig.axes]
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for i, ax in enumerate(fig.axes):
        (text,) = ax.texts
        lines = text.get_window_extent(renderer)
        assert len(text.get_text().split("\n")) == members
        assert lines.y1 <= images[i].y0 + 1  # under its image,
        assert images[i].x0 - 1 <= (lines.x0 + lines.x1) / 2 <= images[i].x1 + 1  # centred on it
        assert whole.x0 <= lines.x0 and lines.x1 <= whole.x1 and whole.y0 <= lines.y0
        others = [b for j, b in enumerate(images + titles) if j not in (i, i + len(images))]
        assert all(_outside(lines, other) for other in others)  # on no other image or title


def test_packed_weight_diagram_outlines_and_centres_each_matrix_first_row_on_top():
    layers = {"wide": PackedLinear(8, 16, alpha=2, num_estimators=4),
              "narrow": PackedLinear(4, 8, alpha=2, num_estimators=2)}  # fmt: skip
    fig = plots.packed_weight_diagram(layers)
    wide, narrow, _ = fig.axes
    for ax, (rows, cols) in ((wide, (32, 16)), (narrow, (16, 8))):
        assert ax.images[0].get_array().shape == (rows, cols)
        (outline,) = ax.patches  # the outline: exactly around the matrix, not filled
        assert outline.get_xy() == (-0.5, -0.5)
        assert (outline.get_width(), outline.get_height()) == (cols, rows)
        assert not outline.get_fill()
        left, right = ax.get_xlim()
        bottom, top = ax.get_ylim()
        assert top < bottom  # row 0 (the first output feature) at the top
        assert right - left == 16 and bottom - top == 32  # the largest matrix's span in every panel
        assert (left + right) / 2 == pytest.approx((cols - 1) / 2)  # the matrix in the middle
        assert (bottom + top) / 2 == pytest.approx((rows - 1) / 2)
        for ticks, size in ((ax.get_xticks(), cols), (ax.get_yticks(), rows)):
            assert ticks[0] == 0 and ticks[-1] <= size - 1 and 4 <= len(ticks) <= 5
    assert narrow.images[0].cmap.get_bad().tolist() == [1.0, 1.0, 1.0, 1.0]  # no weight: white


def test_pareto_plot_bars_limits_and_key_agree_with_the_data():
    points = {"slow": {"images_per_s": 200.0, "images_per_s_min": 150.0, "images_per_s_max": 260.0,
                       "params": 1000, "cls/Acc": 0.80, "cls/Acc_std": 0.02},
              "fast": {"images_per_s": 5000.0, "params": 100000, "cls/Acc": 0.90,
                       "cls/Acc_std": 0.01}}  # fmt: skip
    fig = plots.pareto_plot(points, y_keys=("cls/Acc",))
    (acc,) = fig.axes
    slow_bars, fast_bars = acc.containers
    horizontal, vertical = slow_bars.lines[2]
    assert np.allclose(horizontal.get_segments()[0], [[150.0, 80.0], [260.0, 80.0]])  # the range
    assert np.allclose(vertical.get_segments()[0], [[200.0, 78.0], [200.0, 82.0]])
    assert len(fast_bars.lines[2]) == 1  # no range given: no horizontal bar
    dots = [c for c in acc.collections if isinstance(c, PathCollection)]
    for dot, bars in zip(dots, (slow_bars, fast_bars), strict=True):  # a bar in its marker's colour
        for line in bars.lines[2]:
            assert np.allclose(line.get_colors()[0][:3], dot.get_facecolors()[0][:3])
    low, high = acc.get_ylim()  # every bar inside, the lowest and highest near the edges
    span = 91.0 - 78.0
    assert 78.0 - 0.3 * span < low < 78.0 and 91.0 < high < 91.0 + 0.3 * span
    left, right = acc.get_xlim()
    assert left < 150.0 and right > 5000.0
    (legend,) = fig.legends  # the key's markers have the sizes of models of those sizes
    keys = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles,
                    strict=True))  # fmt: skip
    for dot, params in zip(dots, (1000, 100000), strict=True):
        marker = keys[f"{plots._count(params)} parameters"]
        assert marker.get_marker() == "o" and marker.get_linestyle() == "None"
        assert marker.get_markersize() == pytest.approx(np.sqrt(dot.get_sizes()[0]))
    fig.canvas.draw()  # the key stands beside the panels, on none of them
    assert legend.get_window_extent().x0 >= acc.get_window_extent().x1


def test_pareto_names_sit_beside_their_own_marker_or_are_led_to_it():
    lone = {"a": {"images_per_s": 100.0, "params": 10, "cls/Acc": 0.5},
            "b": {"images_per_s": 10000.0, "params": 40, "cls/Acc": 0.9}}  # fmt: skip
    fig = plots.pareto_plot(lone, y_keys=("cls/Acc",))
    renderer = fig.canvas.get_renderer()
    to_pixels = fig.dpi / 72
    (ax,) = fig.axes
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    gap = plots.MARKER["gap"] * to_pixels
    for dot, name in zip(dots, ax.texts, strict=True):  # room on the right: the name is there
        cx, cy = ax.transData.transform(dot.get_offsets()[0])
        radius = np.sqrt(dot.get_sizes()[0]) / 2 * to_pixels
        box = name.get_window_extent(renderer)
        assert box.x0 == pytest.approx(cx + radius + gap, abs=1.5)
        assert (box.y0 + box.y1) / 2 == pytest.approx(cy, abs=1.5)
        assert name.arrow_patch is None
    points = _crowded_points()
    fig = plots.pareto_plot(points)
    for ax in fig.axes:
        dots = [c for c in ax.collections if isinstance(c, PathCollection)]
        centres = np.array([ax.transData.transform(d.get_offsets()[0]) for d in dots])
        radii = np.array([np.sqrt(d.get_sizes()[0]) / 2 * to_pixels for d in dots])
        for i, (dot, name) in enumerate(zip(dots, ax.texts, strict=True)):
            box = name.get_window_extent(renderer)
            nearest = np.column_stack([centres[:, 0].clip(box.x0, box.x1),
                                       centres[:, 1].clip(box.y0, box.y1)])  # fmt: skip
            edges = np.hypot(*(centres - nearest).T) - radii  # from the name to each marker
            if name.arrow_patch is None:  # beside its own marker, nearer it than any other
                assert edges[i] <= gap + 1.5 and edges[i] <= edges.min() + 0.5
            else:  # further out, with a leader in its marker's colour
                assert np.allclose(
                    name.arrow_patch.get_edgecolor()[:3], dot.get_facecolors()[0][:3]
                )
                assert edges[i] <= gap + to_pixels * max(plots.MARKER["reach"]) * 1.5

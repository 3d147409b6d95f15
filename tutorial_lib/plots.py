"""Diagnostic plots (matplotlib, headless-safe). Every function returns a Figure.

Inputs follow the library's conventions: probabilities ``(N, C)`` or per-member ``(N, M, C)``,
labels ``(N,)``, images ``(N, 28, 28)`` or ``(N, 1, 28, 28)``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor, nn

from tutorial_lib import files
from tutorial_lib.metrics.calibration import calibration_bins
from tutorial_lib.metrics.ood import OODDetection, roc_curve
from tutorial_lib.metrics.selective import aurc, risk_coverage_curve
from tutorial_lib.metrics.validation import check_probs, check_targets

# The figures' style, in one place: what is drawn (data, axes, labels, scales, limits) is in the
# functions and tested; how it looks (sizes in inches, colours, transparency, line widths, font
# sizes, legend places) is here.
EDGE = {"edgecolor": "black"}
GAP = {"color": "tab:red", "alpha": 0.35, "edgecolor": "tab:red"}
COUNTS = {"edgecolor": "black", "color": "tab:gray"}
DIAGONAL = {"color": "black", "linestyle": "--", "lw": 1}
POINT = {"marker": "D", "color": "tab:blue", "markeredgecolor": "black", "linestyle": "none"}
THIN = {"lw": 1}
OVERLAP = {"alpha": 0.6}
GRID = {"alpha": 0.3}
MEDIAN = {"color": "black", "lw": 1.5}  # a box's median, visible on every box colour
SMALL = 8  # legend and annotation font size
SIZES = {"reliability": (5, 6), "ood": (10, 4), "risk_coverage": (6.5, 4.5),
         "learning_curves": (11, 3.8), "packed_panel": 3.6, "shift_panel": (6, 4),
         "pareto_panel": (6.2, 4.6), "gallery_panel": (3.3, 2.9, 0.19)}  # fmt: skip
LEGEND = {"reliability": "upper left", "ood": "upper left", "roc": "lower right"}
# Pareto markers: area base + span * params / largest (points^2); pad: share of the y range
# left free above and below; x_margin: factor of free throughput on each side; gap and reach
# (points): room between a marker and its name, and how far out a name may be moved
MARKER = {"alpha": 0.6, "edgecolors": "black", "base": 30, "span": 330, "capsize": 3, "pad": 0.12,
          "x_margin": 1.6, "gap": 2, "reach": (0, 8, 18)}  # fmt: skip
WEIGHTS = {"cmap": "viridis", "absent": "white"}  # packed weight panels


REPORT_DPI = 90  # the resolution of the PNG files a comparison writes (and of TensorBoard's)


def figure_png(fig: Figure, dpi: int = REPORT_DPI) -> bytes:
    """The figure drawn once, as PNG bytes, and closed: a report writes them to a file,
    TensorBoard shows them (drawing is most of a figure's cost)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _write_pngs(drawings: Mapping[str, Callable[[], Figure]], folder: Path) -> None:
    for stem, draw in drawings.items():
        files.write_bytes(folder / f"{stem}.png", figure_png(draw()))


def write_figures(drawings: Mapping[str, Callable[[], Figure]], folder: str | os.PathLike) -> None:
    """Draw each figure and write it to ``<folder>/<stem>.png`` (written atomically).

    Args:
        drawings: ``{stem: a function returning a new Figure}``; each figure is closed once drawn.
        folder: an existing folder.
    """
    _write_pngs(drawings, Path(folder))


def _mean_probs(probs: Tensor) -> Tensor:
    return check_probs(probs).mean(1)


def reliability_diagram(
    probs: Tensor, targets: Tensor, n_bins: int = 15, title: str = "Reliability diagram"
) -> Figure:
    """Accuracy vs confidence per equal-width bin (with the gap to the diagonal), and the number
    of samples per bin underneath.

    The bins are those of the ECE in the metric tables (:func:`calibration_bins`), so the ECE in
    the title is the tables' ECE. Its extra bin, a confidence of exactly 1.0, is not an interval:
    it is drawn as a point at confidence 1.0 (its accuracy above, its count below), so that
    nothing is drawn past a confidence of 1.
    """
    mean = _mean_probs(probs)
    targets = check_targets(targets, mean.shape[0], mean.shape[1])
    conf, pred = mean.max(-1)
    counts, acc, avg_conf = (t.numpy() for t in calibration_bins(conf, pred == targets, n_bins))
    width = 1 / n_bins
    left = np.arange(n_bins) * width
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=SIZES["reliability"], sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = counts[:n_bins] > 0
    top.bar(left[filled], acc[:n_bins][filled], width, align="edge", label="accuracy", **EDGE)
    top.bar(left[filled], (avg_conf - acc)[:n_bins][filled], width, bottom=acc[:n_bins][filled],
            align="edge", label="gap to confidence", **GAP)  # fmt: skip
    top.plot([0, 1], [0, 1], label="perfect calibration", **DIAGONAL)
    bottom.bar(left, counts[:n_bins], width, align="edge", **COUNTS)
    if counts[n_bins] > 0:  # confidence exactly 1.0: a point, not a bar past 1
        top.plot([1.0], [acc[n_bins]], label=f"confidence 1.0 ({counts[n_bins]:,.0f})",
                 clip_on=False, **POINT)  # fmt: skip
        bottom.plot([1.0], [counts[n_bins]], clip_on=False, **POINT)
    ece = float(np.sum(counts * np.abs(acc - avg_conf)) / counts.sum())
    top.set(ylabel="accuracy", ylim=(0, 1), title=f"{title} (ECE {100 * ece:.2f}%)")
    top.legend(loc=LEGEND["reliability"])
    bottom.set(xlabel="confidence (max mean probability)", ylabel="samples", yscale="log",
               xlim=(0, 1))  # fmt: skip
    fig.tight_layout()
    return fig


def oracle_risk(errors: Tensor) -> Tensor:
    """The risk-coverage curve of a perfect ranking of these predictions (every right one first):
    ``max(0, k - n_right) / k`` at coverage k/N, k = 1..N, float64."""
    n = errors.shape[0]
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return (k - (n - errors.double().sum())).clamp(min=0) / k


def risk_coverage_plot(
    models: Mapping[str, tuple[Tensor, Tensor]],
    title: str = "Risk-coverage",
    coverage_range: tuple[float, float] = (0.0, 100.0),
    oracle: bool = False,
) -> Figure:
    """Risk-coverage curves of several models on one axis, AURC in the legend.

    Args:
        models: ``{name: (probs, targets)}``.
        coverage_range: the coverages shown, in percent (e.g. ``(80, 100)`` to zoom where the
            curves differ).
        oracle: also draw, dashed, each model's oracle curve (its own errors, ranked last).
    """
    fig, ax = plt.subplots(figsize=SIZES["risk_coverage"])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown_max = 0.0
    for i, (name, (probs, targets)) in enumerate(models.items()):
        mean = _mean_probs(probs)
        targets = check_targets(targets, mean.shape[0], mean.shape[1])
        conf, pred = mean.max(-1)
        errors = (pred != targets).double()
        coverage, risk = risk_coverage_curve(conf, errors)
        colour = colours[i % len(colours)]
        ax.plot(coverage * 100, risk * 100, color=colour,
                label=f"{name} (AURC {100 * aurc(coverage, risk):.3f}%)")  # fmt: skip
        inside = (coverage * 100 >= coverage_range[0]) & (coverage * 100 <= coverage_range[1])
        shown_max = max(shown_max, float(risk[inside].max()) * 100)
        if oracle:
            ax.plot(coverage * 100, oracle_risk(errors) * 100, "--", color=colour,
                    label=f"{name}: oracle", **THIN)  # fmt: skip
    ax.set(xlabel="coverage (%)", ylabel="risk: error rate among kept (%)", title=title,
           xlim=coverage_range, ylim=(0, 1.05 * shown_max or 1))  # fmt: skip
    ax.grid(**GRID)
    ax.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def ood_histograms(
    id_probs: Tensor, ood_probs: Tensor, name: str = "", id_label: str = "MNIST (ID)",
    ood_label: str = "FashionMNIST (OOD)",
) -> Figure:  # fmt: skip
    """Histograms of the confidence on ID and OOD inputs, and the ROC curve of OOD detection."""
    id_conf = _mean_probs(id_probs).max(-1).values
    ood_conf = _mean_probs(ood_probs).max(-1).values
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZES["ood"])
    bins = np.linspace(0, 1, 41)
    left.hist(id_conf.numpy(), bins, label=id_label, density=True, **OVERLAP)
    left.hist(ood_conf.numpy(), bins, label=ood_label, density=True, **OVERLAP)
    left.set(xlabel="confidence (max mean probability)", ylabel="density", yscale="log",
             title=f"{name} confidence".strip())  # fmt: skip
    left.legend(loc=LEGEND["ood"])
    scores = torch.cat([1 - id_conf, 1 - ood_conf])
    is_ood = torch.cat([torch.zeros_like(id_conf), torch.ones_like(ood_conf)]).bool()
    fpr, tpr = roc_curve(scores, is_ood)
    detection = OODDetection()
    detection.update(id_conf, False)
    detection.update(ood_conf, True)
    auroc = detection.compute()["AUROC"]
    right.plot(fpr.numpy(), tpr.numpy(), label=f"AUROC {100 * auroc:.2f}%")
    right.plot([0, 1], [0, 1], **DIAGONAL)
    right.set(xlabel="false positive rate (ID flagged)", ylabel="true positive rate (OOD caught)",
              title="ROC: OOD = positive, score = -confidence")  # fmt: skip
    right.legend(loc=LEGEND["roc"])
    fig.tight_layout()
    return fig


def error_gallery(
    images: Tensor,
    probs: Tensor,
    targets: Tensor,
    class_names: Sequence[str] | None = None,
    max_images: int = 8,
) -> Figure:
    """Misclassified images, the most confident errors first, each with the ensemble's
    prediction and every member's predicted class and confidence underneath."""
    per_member = check_probs(probs)
    mean = per_member.mean(1)
    targets = check_targets(targets, mean.shape[0], mean.shape[1])
    conf, pred = mean.max(-1)
    wrong = torch.nonzero(pred != targets).flatten()
    wrong = wrong[torch.argsort(conf[wrong], descending=True)][:max_images]
    names = class_names or [str(c) for c in range(mean.shape[1])]
    cols = max(1, min(4, wrong.numel()))
    rows = max(1, -(-wrong.numel() // cols))
    members = per_member.shape[1]
    width, height, per_member_line = SIZES["gallery_panel"]
    row_height = height + per_member_line * members  # the image, its title, a line per member
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, row_height * rows), squeeze=False,
                             layout="constrained")  # fmt: skip  # room for the members' lines
    for ax in axes.flat:
        ax.axis("off")
    if wrong.numel() == 0:
        axes[0, 0].text(0.5, 0.5, "no errors", ha="center", va="center")
    imgs = images.reshape(images.shape[0], 28, 28).float().cpu()
    for ax, i in zip(axes.flat, wrong.tolist(), strict=False):
        ax.imshow(imgs[i].numpy(), cmap="gray")
        member_lines = [
            f"m{m}: {names[int(p.argmax())]} {100 * float(p.max()):.0f}%"
            for m, p in enumerate(per_member[i])
        ]
        ax.set_title(
            f"true {names[int(targets[i])]}, pred {names[int(pred[i])]} "
            f"({100 * float(conf[i]):.0f}%)",
            fontsize=SMALL + 1,
        )
        ax.text(0.5, -0.04, "\n".join(member_lines), transform=ax.transAxes, ha="center",
                va="top", fontsize=SMALL, family="monospace")  # fmt: skip
    return fig


def disagreement_matrix(probs: Tensor, title: str = "Pairwise disagreement") -> Figure:
    """Heat map of the fraction of inputs on which members i and j predict different classes.

    Args:
        probs: (N, M, C) per-member probabilities, M >= 2.
    """
    per_member = check_probs(probs)
    m = per_member.shape[1]
    if m < 2:
        raise ValueError(f"disagreement_matrix needs M >= 2 members, got {m}.")
    preds = per_member.argmax(-1)  # (N, M)
    matrix = (preds[:, :, None] != preds[:, None, :]).double().mean(0).numpy()
    fig, ax = plt.subplots(figsize=(1 + 0.6 * m, 0.8 + 0.6 * m))
    image = ax.imshow(matrix, cmap="viridis")
    for i in range(m):
        for j in range(m):
            ax.text(j, i, f"{100 * matrix[i, j]:.1f}", ha="center", va="center", fontsize=SMALL,
                    color="white" if matrix[i, j] < matrix.max() / 2 else "black")  # fmt: skip
    ax.set(xticks=range(m), yticks=range(m), xlabel="member", ylabel="member", title=title)
    fig.colorbar(image, ax=ax, label="disagreement (%)", format=lambda x, _: f"{100 * x:.0f}")
    fig.tight_layout()
    return fig


def learning_curves(log_dir: str | os.PathLike, title: str = "Learning curves") -> Figure:
    """Training loss per step and validation accuracy per epoch, read back from the TensorBoard
    event files under ``log_dir`` (one curve per run; for places where TensorBoard cannot run).

    Raises:
        FileNotFoundError: no event file under ``log_dir``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")})
    if not runs:
        raise FileNotFoundError(f"No TensorBoard event file under {log_dir}: train a model first.")
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZES["learning_curves"])
    for run in runs:
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        label = str(run.relative_to(log_dir)) if run != Path(log_dir) else run.name
        if "train/loss" in tags:
            points = events.Scalars("train/loss")
            left.plot([p.step for p in points], [p.value for p in points], label=label, **THIN)
        if "val/Acc" in tags:
            points = events.Scalars("val/Acc")
            right.plot(
                range(1, len(points) + 1), [100 * p.value for p in points], "o-", label=label
            )
    left.set(xlabel="training step", ylabel="training loss", yscale="log", title=title)
    right.set(
        xlabel="epoch",
        ylabel="validation accuracy (%)",
        title="Validation (held-out training images)",
    )
    for ax in (left, right):
        ax.grid(**GRID)
        ax.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def packed_weight_diagram(layers: Mapping[str, nn.Module]) -> Figure:
    """The weight matrices of packed linear layers as images: block-diagonal, one block per group.

    Every panel is drawn at one scale: each has the axis limits of the largest matrix, with its
    own matrix centred and outlined, so that a weight is a square of the same size in every panel
    (a layer twice as wide is drawn twice as wide); and one colour scale, |weight| from 0 to the
    largest of all panels, serves them all (one colour bar). Where no weight exists (outside the
    blocks) the image is masked, drawn white.

    Args:
        layers: ``{title: PackedLinear}``.
    """
    shown = {}
    for title, layer in layers.items():
        g = layer.groups
        blocks = layer.weight.detach().abs().reshape(g, -1, layer.weight.shape[1])
        exists = torch.block_diag(*torch.ones_like(blocks)).numpy() > 0
        shown[title] = (np.ma.masked_array(torch.block_diag(*blocks).numpy(), mask=~exists), g)
    most_rows = max(image.shape[0] for image, _ in shown.values())
    most_cols = max(image.shape[1] for image, _ in shown.values())
    norm = plt.Normalize(vmin=0, vmax=max(float(image.max()) for image, _ in shown.values()))
    cmap = plt.get_cmap(WEIGHTS["cmap"]).with_extremes(bad=WEIGHTS["absent"])
    side = SIZES["packed_panel"]
    fig, axes = plt.subplots(1, len(shown), figsize=(side * len(shown) + 1, side), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (title, (image, g)) in zip(axes[0], shown.items(), strict=True):
        rows, cols = image.shape
        ax.imshow(image, cmap=cmap, norm=norm)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), cols, rows, fill=False, **EDGE))
        pad_x, pad_y = (most_cols - cols) / 2, (most_rows - rows) / 2
        ax.set(title=f"{title}\n{rows}x{cols}, {g} groups", xlabel="input feature",
               ylabel="output feature", xlim=(-0.5 - pad_x, cols - 0.5 + pad_x),
               ylim=(rows - 0.5 + pad_y, -0.5 - pad_y))  # fmt: skip
        ax.set(xticks=range(0, cols, max(1, cols // 4)), yticks=range(0, rows, max(1, rows // 4)))
        ax.spines[:].set_visible(False)  # the outline marks the matrix
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]),
                 label="|weight| (one scale for all panels)")  # fmt: skip
    return fig


def shift_boxplots(rows: list[dict], keys: tuple[str, ...] = ("cls/Acc", "cal/ECE")) -> Figure:
    """Box plots over corruptions (and seeds) of each metric vs severity, one colour per model,
    as in Ovadia et al. (2019). ``rows`` as :func:`tutorial_lib.compare.evaluate_shift` returns.
    Each box spans the quartiles, its line is the median, its whiskers reach the furthest values
    within 1.5 interquartile ranges.

    NLL and MI are shown in nats, the other metrics in percent; ``ts/...`` keys (after
    temperature scaling) are labelled "T-scaled". A model whose rows lack a key (no ``ens/MI``
    for a single network) keeps its colour and place but draws no box in that panel.
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    severities = sorted({r["severity"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width, height = SIZES["shift_panel"]
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), height), squeeze=False)
    spacing = 0.8 / len(models)
    for ax, key in zip(axes[0], keys, strict=True):
        scale, unit = (1, "nats") if key.endswith(("NLL", "MI")) else (100, "%")
        for i, model in enumerate(models):
            ax.plot([], [], color=colours[i % len(colours)], lw=8, label=model)
            data = [
                [scale * r[key] for r in rows
                 if r["model"] == model and r["severity"] == s and key in r]
                for s in severities
            ]  # fmt: skip
            if not all(data):
                continue
            positions = [s + (i - (len(models) - 1) / 2) * spacing for s in severities]
            box = ax.boxplot(data, positions=positions, widths=spacing * 0.9, patch_artist=True,
                             showfliers=False, manage_ticks=False, medianprops=MEDIAN)  # fmt: skip
            for patch in box["boxes"]:
                patch.set_facecolor(colours[i % len(colours)])
        short = ("T-scaled " if key.startswith("ts/") else "") + key.split("/")[-1]
        ax.set(xticks=severities, xlabel="shift severity (0 = clean test set)",
               ylabel=f"{short} ({unit})", title=f"{short} under shift")  # fmt: skip
        ax.grid(**GRID)
    axes[0][0].legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def pareto_plot(
    points: Mapping[str, Mapping[str, float]],
    y_keys: Sequence[str] = ("cls/Acc", "ood/AUROC"),
    x_key: str = "images_per_s",
    title: str = "",
) -> Figure:
    """Quality against inference throughput, marker area proportional to the parameter count
    (the format of Figure 1 of the Packed-Ensembles paper), one panel per metric.

    Made to be read: each marker carries its model's short name (:func:`short_name`), placed
    where it covers no other name, no marker and no error bar; markers that would cover each
    other (two models of equal speed and quality) are moved apart sideways by the few points
    needed (a "dodge": a shift far smaller than a throughput measurement's spread); the log axis is
    labelled at 1, 2 and 5 times the powers of ten ("5k", "10k", "20k"). Vertical bars: +- 1
    standard deviation over seeds; horizontal bars, where ``points`` has them: the range of the
    throughput measurements.

    Args:
        points: ``{model name: {x_key: ..., "params": ..., y_key: mean, f"{y_key}_std": std}}``,
            optionally ``f"{x_key}_min"`` and ``f"{x_key}_max"``.
        y_keys: the metrics on the vertical axes (fractions, shown in percent).
        x_key: the horizontal axis (log scale).
    """
    width, height = SIZES["pareto_panel"]
    fig, axes = plt.subplots(1, len(y_keys), figsize=(width * len(y_keys), height), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(points)
    largest = max(p["params"] for p in points.values())
    areas = np.array([MARKER["base"] + MARKER["span"] * points[n]["params"] / largest
                      for n in names])  # fmt: skip
    x = np.array([points[n][x_key] for n in names], dtype=float)
    x_low = np.array([points[n].get(f"{x_key}_min", points[n][x_key]) for n in names], dtype=float)
    x_high = np.array([points[n].get(f"{x_key}_max", points[n][x_key]) for n in names], dtype=float)
    for ax, key in zip(axes[0], y_keys, strict=True):
        y = np.array([100 * points[n][key] for n in names])
        spread = np.array([100 * (points[n].get(f"{key}_std") or 0.0) for n in names])
        low, high = float((y - spread).min()), float((y + spread).max())
        pad = max(high - low, 1e-3) * MARKER["pad"]
        short = key.split("/", 1)[-1]
        ax.set(xscale="log", xlabel="inference throughput (images/s, log scale)",
               ylabel=f"{short} (%)", title=f"{title} {short}".strip(),
               xlim=(x_low.min() / MARKER["x_margin"], x_high.max() * MARKER["x_margin"]),
               ylim=(low - pad, high + pad))  # fmt: skip
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_count))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(**GRID)
    diameters = np.sqrt(areas)  # points
    handles = [Line2D([], [], marker="o", linestyle="none", markersize=float(np.sqrt(
        MARKER["base"] + MARKER["span"] * size / largest)), markerfacecolor="lightgray",
        markeredgecolor=MARKER["edgecolors"], label=f"{_count(size)} parameters")
        for size in _key_sizes([points[n]["params"] for n in names])]  # fmt: skip
    shorts = [short_name(n) for n in names]
    notes = [f"{abbr}: {full}" for full, abbr in ABBREVIATIONS
             if any(s.startswith(abbr + " ") or s == abbr for s in shorts)]  # fmt: skip
    notes.append("bars: ±1 std over seeds")
    handles += [Line2D([], [], linestyle="none", label=note) for note in notes]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=SMALL,
               title="marker area: parameters", labelspacing=1.2, borderpad=0.8)  # fmt: skip
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    to_pixels = fig.dpi / 72
    for ax, key in zip(axes[0], y_keys, strict=True):
        y = np.array([100 * points[n][key] for n in names])
        radii = diameters / 2 * to_pixels
        centres = ax.transData.transform(np.column_stack([x, y]))
        moved = _dodge(centres, radii, MARKER["gap"] * to_pixels)
        shown_x = x.copy()
        for i in np.flatnonzero(moved != centres[:, 0]):
            shown_x[i] = ax.transData.inverted().transform((moved[i], centres[i, 1]))[0]
        for i, name in enumerate(names):
            colour = colours[i % len(colours)]
            ax.scatter(shown_x[i], y[i], s=areas[i], alpha=MARKER["alpha"], color=colour,
                       edgecolors=MARKER["edgecolors"], label=name, zorder=3)  # fmt: skip
            spread = points[name].get(f"{key}_std")
            horizontal = [[x[i] - x_low[i]], [x_high[i] - x[i]]] if x_high[i] > x_low[i] else None
            if spread or horizontal:
                ax.errorbar(shown_x[i], y[i], yerr=100 * spread if spread else None,
                            xerr=horizontal, color=colour, capsize=MARKER["capsize"],
                            zorder=2, **THIN)  # fmt: skip
        centres[:, 0] = moved
        spread = np.array([100 * (points[n].get(f"{key}_std") or 0.0) for n in names])
        cap = MARKER["capsize"] * to_pixels
        bars = [(cx - cap, ax.transData.transform((1, low))[1], cx + cap,
                 ax.transData.transform((1, high))[1])
                for cx, low, high in zip(moved, y - spread, y + spread, strict=True)]  # fmt: skip
        for i in np.flatnonzero(x_high > x_low):  # the throughput ranges, as drawn
            (x0, _), (x1, _) = ax.transData.transform(
                [(shown_x[i] - x[i] + x_low[i], 1), (shown_x[i] - x[i] + x_high[i], 1)]
            )
            bars.append((x0, centres[i, 1] - cap, x1, centres[i, 1] + cap))
        _place_names(ax, renderer, shorts, centres, radii, bars, shown_x, y, colours, to_pixels)
    return fig


# the short names of the Pareto plot's markers: (long, short)
ABBREVIATIONS = (("Packed-Ensemble", "PE"), ("Deep Ensemble", "DE"), ("BatchEnsemble", "BE"))


def short_name(name: str) -> str:
    """A model's name as the Pareto plot writes it: ``"Packed-Ensemble (alpha=2, M=4)"`` ->
    ``"PE (α=2, M=4)"``; names without a known long form are kept."""
    for full, abbr in ABBREVIATIONS:
        if name.startswith(full):
            name = abbr + name.removeprefix(full)
    return name.replace("alpha=", "α=")


def _count(value: float, _position: object = None) -> str:
    """A count as an axis label: 5000 -> "5k", 1500000 -> "1.5M", 200 -> "200"."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _key_sizes(params: Sequence[float]) -> list[float]:
    """Two or three round parameter counts that span ``params``, for the marker-size legend."""
    low, high = min(params), max(params)
    rounded = []
    for value in (low, (low * high) ** 0.5, high):
        digits = 10 ** math.floor(math.log10(value))
        rounded.append(round(value / digits) * digits)
    return sorted(set(rounded))


def _dodge(centres: np.ndarray, radii: np.ndarray, gap: float) -> np.ndarray:
    """Markers' horizontal display positions moved apart where two would overlap: ``centres``
    (n, 2) and ``radii`` (n,) in pixels -> new x (n,); markers that overlap nothing keep
    their exact position."""
    x = centres[:, 0].astype(float)
    y = centres[:, 1]
    for _ in range(200):
        moved = False
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                need = radii[i] + radii[j] + gap
                dx, dy = x[j] - x[i], y[j] - y[i]
                if dx * dx + dy * dy >= need * need or abs(dy) >= need:
                    continue
                push = (math.sqrt(need * need - dy * dy) - abs(dx)) / 2 + 0.01
                side = 1.0 if dx >= 0 else -1.0  # j stays on its side of i
                x[i] -= side * push
                x[j] += side * push
                moved = True
        if not moved:
            break
    return x


def _place_names(ax, renderer, labels, centres, radii, bars, x, y, colours, to_pixels) -> None:
    """Write each marker's name next to it, at the first of a list of places (right, left,
    above, below, the diagonals, then further out with a thin leader line) where it covers no
    name already written, no marker, no error bar (``bars``: boxes in pixels, the vertical and
    the horizontal ones), stays inside the axes and keeps at least as far from every other
    marker as from its own (so that it reads as its own marker's name); where no place is
    free, the one that covers the least (markers weigh most)."""
    inside = ax.get_window_extent(renderer)
    written: list[tuple[float, float, float, float]] = []
    gap = MARKER["gap"] * to_pixels
    places = [(1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"),
              (0, -1, "center", "top"), (1, 1, "left", "bottom"), (1, -1, "left", "top"),
              (-1, 1, "right", "bottom"), (-1, -1, "right", "top")]  # fmt: skip
    for i, label in enumerate(labels):
        best = None
        for reach in MARKER["reach"]:
            for sx, sy, ha, va in places:
                distance = radii[i] + gap + reach * to_pixels
                step = distance / (math.sqrt(2) if sx and sy else 1)
                offset = (sx * step / to_pixels, sy * step / to_pixels)  # points
                leader = {"arrowstyle": "-", "color": colours[i % len(colours)], "lw": 0.6,
                          "shrinkA": 0, "shrinkB": radii[i] / to_pixels}  # fmt: skip
                text = ax.annotate(label, (x[i], y[i]), xytext=offset, textcoords="offset points",
                                   ha=ha, va=va, fontsize=SMALL, zorder=4,
                                   arrowprops=leader if reach else None)  # fmt: skip
                extent = text.get_window_extent(renderer)
                box = (extent.x0 - 1, extent.y0 - 1, extent.x1 + 1, extent.y1 + 1)
                cost = sum(_overlap(box, other) for other in written + bars)
                cost += sum(
                    _covers(box, c, r + gap * (j != i))  # keep off the other markers
                    for j, (c, r) in enumerate(zip(centres, radii, strict=True))
                )
                cost += 1e6 * (box[0] < inside.x0 or box[2] > inside.x1 or box[1] < inside.y0
                               or box[3] > inside.y1)  # fmt: skip
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, text, box)
                else:
                    text.remove()
                if cost == 0:
                    break
            if best[0] == 0:
                break
        written.append(best[2])


def _covers(box: tuple[float, ...], centre: np.ndarray, radius: float) -> float:
    """How far a box (x0, y0, x1, y1) reaches into a round marker, in pixels (0: not at all)."""
    nearest_x = min(max(centre[0], box[0]), box[2])
    nearest_y = min(max(centre[1], box[1]), box[3])
    return max(0.0, radius - math.hypot(centre[0] - nearest_x, centre[1] - nearest_y)) * 100


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The area two boxes (x0, y0, x1, y1) share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

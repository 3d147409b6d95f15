"""Diagnostic plots (matplotlib, headless-safe). Every function returns a Figure.

Inputs follow the library's conventions: probabilities ``(N, C)`` or per-member ``(N, M, C)``,
labels ``(N,)``, images ``(N, 28, 28)`` or ``(N, 1, 28, 28)``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
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
THIN = {"lw": 1}
OVERLAP = {"alpha": 0.6}
GRID = {"alpha": 0.3}
SMALL = 8  # legend and annotation font size
SIZES = {"reliability": (5, 6), "ood": (10, 4), "risk_coverage": (6.5, 4.5),
         "learning_curves": (11, 3.8), "packed_panel": 3.6, "shift_panel": (6, 4),
         "pareto_panel": (6.2, 4.6), "gallery_panel": (3.3, 2.9, 0.19)}  # fmt: skip
LEGEND = {"reliability": "upper left", "ood": "upper left", "roc": "lower right"}
MARKER = {"alpha": 0.55, "edgecolors": "black", "base": 40, "span": 900, "capsize": 3}


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

    The bins are those of the ECE in the metric tables (:func:`calibration_bins`, a confidence of
    exactly 1.0 in the last bar), so the ECE in the title is the tables' ECE.
    """
    mean = _mean_probs(probs)
    targets = check_targets(targets, mean.shape[0], mean.shape[1])
    conf, pred = mean.max(-1)
    counts, acc, avg_conf = (t.numpy() for t in calibration_bins(conf, pred == targets, n_bins))
    width = 1 / n_bins
    left = np.arange(n_bins + 1) * width  # the last bar: confidence exactly 1.0
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=SIZES["reliability"], sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = counts > 0
    top.bar(left[filled], acc[filled], width, align="edge", label="accuracy", **EDGE)
    top.bar(left[filled], (avg_conf - acc)[filled], width, bottom=acc[filled], align="edge",
            label="gap to confidence", **GAP)  # fmt: skip
    top.plot([0, 1], [0, 1], label="perfect calibration", **DIAGONAL)
    ece = float(np.sum(counts * np.abs(acc - avg_conf)) / counts.sum())
    top.set(ylabel="accuracy", ylim=(0, 1), title=f"{title} (ECE {100 * ece:.2f}%)")
    top.legend(loc=LEGEND["reliability"])
    bottom.bar(left, counts, width, align="edge", **COUNTS)
    bottom.set(xlabel="confidence (max mean probability)", ylabel="samples", yscale="log",
               xlim=(0, 1 + width))  # fmt: skip
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
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, row_height * rows), squeeze=False)
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
    fig.tight_layout()
    fig.subplots_adjust(hspace=0.25 + 0.1 * members)  # room for the members' lines
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
    """The weight matrix of packed linear layers as images: block-diagonal, one block per group.

    Args:
        layers: ``{title: PackedLinear}``.
    """
    side = SIZES["packed_panel"]
    fig, axes = plt.subplots(1, len(layers), figsize=(side * len(layers), side), squeeze=False)
    for ax, (title, layer) in zip(axes[0], layers.items(), strict=True):
        g = layer.groups
        blocks = layer.weight.detach().reshape(g, -1, layer.weight.shape[1])
        full = torch.block_diag(*blocks).abs().numpy()
        ax.imshow(full > 0, cmap="Blues", vmin=0, vmax=1.3)
        ax.set(title=f"{title}\n{full.shape[0]}x{full.shape[1]}, {g} groups",
               xlabel="input feature", ylabel="output feature")  # fmt: skip
    fig.tight_layout()
    return fig


def shift_boxplots(rows: list[dict], keys: tuple[str, ...] = ("cls/Acc", "cal/ECE")) -> Figure:
    """Box plots over corruptions (and seeds) of each metric vs severity, one colour per model,
    as in Ovadia et al. (2019). ``rows`` as :func:`tutorial_lib.compare.evaluate_shift` returns.

    NLL is shown in nats, the other metrics in percent.
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    severities = sorted({r["severity"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width, height = SIZES["shift_panel"]
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), height), squeeze=False)
    spacing = 0.8 / len(models)
    for ax, key in zip(axes[0], keys, strict=True):
        scale, unit = (1, "nats") if key.endswith("NLL") else (100, "%")
        for i, model in enumerate(models):
            data = [
                [scale * r[key] for r in rows if r["model"] == model and r["severity"] == s]
                for s in severities
            ]
            positions = [s + (i - (len(models) - 1) / 2) * spacing for s in severities]
            box = ax.boxplot(data, positions=positions, widths=spacing * 0.9, patch_artist=True,
                             showfliers=False, manage_ticks=False)  # fmt: skip
            for patch in box["boxes"]:
                patch.set_facecolor(colours[i % len(colours)])
            ax.plot([], [], color=colours[i % len(colours)], lw=8, label=model)
        short = key.split("/")[-1]
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

    Args:
        points: ``{model name: {x_key: ..., "params": ..., y_key: mean, f"{y_key}_std": std}}``.
        y_keys: the metrics on the vertical axes (fractions, shown in percent).
        x_key: the horizontal axis (log scale).
    """
    width, height = SIZES["pareto_panel"]
    fig, axes = plt.subplots(1, len(y_keys), figsize=(width * len(y_keys), height), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    largest = max(p["params"] for p in points.values())
    for ax, key in zip(axes[0], y_keys, strict=True):
        for i, (name, p) in enumerate(points.items()):
            x, y = p[x_key], 100 * p[key]
            area = MARKER["base"] + MARKER["span"] * p["params"] / largest
            colour = colours[i % len(colours)]
            ax.scatter(x, y, s=area, alpha=MARKER["alpha"], color=colour,
                       edgecolors=MARKER["edgecolors"], label=name)  # fmt: skip
            spread = p.get(f"{key}_std")
            if spread:
                ax.errorbar(x, y, yerr=100 * spread, color=colour, capsize=MARKER["capsize"],
                            **THIN)  # fmt: skip
        short = key.split("/", 1)[-1]
        ax.set(xscale="log", xlabel="inference throughput (images/s, log scale)",
               ylabel=f"{short} (%)", title=f"{title} {short}".strip())  # fmt: skip
        ax.grid(**GRID)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=SMALL,
               markerscale=0.5, title="marker area: parameters")  # fmt: skip
    fig.tight_layout()
    return fig

"""Distribution shift: corrupted MNIST test sets, and how the models' uncertainty holds up.

Each corruption is a batched tensor operation on uint8 images (N, 28, 28), at severities 1 to 5
(severity 0 is the identity), deterministic for a seed. They follow the spirit of MNIST-C
(Mu & Gilmer, 2019) and of Ovadia et al. (NeurIPS 2019), who showed that calibration degrades
under shift and that deep ensembles degrade least. When the real MNIST-C data set is on disk
(``<data root or mirror>/mnist_c/<corruption>/test_images.npy``), :func:`load_mnist_c` reads it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from tutorial_lib.data import TensorBatchLoader, data_mirror, data_root, load_split

SEVERITIES = (1, 2, 3, 4, 5)


def _to_float(images: Tensor) -> Tensor:
    return images.float().div(255.0)


def _to_uint8(images: Tensor) -> Tensor:
    return images.clamp(0, 1).mul(255.0).round().to(torch.uint8)


def _affine(images: Tensor, angles: Tensor, shifts: Tensor) -> Tensor:
    """Rotate (radians, (N,)) and translate (pixels, (N, 2)) a batch; the outside is black."""
    n = images.shape[0]
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, :, 2] = -shifts * 2 / 28  # grid coordinates span [-1, 1] over 28 pixels
    grid = F.affine_grid(theta, (n, 1, 28, 28), align_corners=False)
    x = _to_float(images).unsqueeze(1)
    return _to_uint8(F.grid_sample(x, grid, align_corners=False, padding_mode="zeros").squeeze(1))


def rotation(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Rotation by 10, 20, 30, 45 or 60 degrees, clockwise or not at random."""
    degrees = (0, 10, 20, 30, 45, 60)[severity]
    sign = torch.randint(0, 2, (images.shape[0],), generator=g) * 2 - 1
    return _affine(images, sign * math.radians(degrees), torch.zeros(images.shape[0], 2))


def translation(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Shift by 2, 4, 6, 8 or 10 pixels in a random direction."""
    pixels = (0, 2, 4, 6, 8, 10)[severity]
    angle = torch.rand(images.shape[0], generator=g) * 2 * math.pi
    shifts = pixels * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return _affine(images, torch.zeros(images.shape[0]), shifts)


def gaussian_noise(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Additive Gaussian noise of standard deviation 0.1 ... 0.5 (images scaled to [0, 1])."""
    sigma = (0, 0.1, 0.2, 0.3, 0.4, 0.5)[severity]
    return _to_uint8(_to_float(images) + sigma * torch.randn(images.shape, generator=g))


def impulse_noise(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Salt-and-pepper noise on 3 %, 6 %, 10 %, 15 % or 22 % of the pixels."""
    fraction = (0, 0.03, 0.06, 0.10, 0.15, 0.22)[severity]
    hit = torch.rand(images.shape, generator=g) < fraction
    salt = torch.rand(images.shape, generator=g) < 0.5
    out = images.clone()
    out[hit & salt], out[hit & ~salt] = 255, 0
    return out


def gaussian_blur(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Gaussian blur of standard deviation 0.6, 1.0, 1.4, 1.8 or 2.4 pixels."""
    sigma = (0, 0.6, 1.0, 1.4, 1.8, 2.4)[severity]
    if sigma == 0:
        return images.clone()
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    x = _to_float(images).unsqueeze(1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius)), kernel.view(1, 1, -1, 1))
    return _to_uint8(x.squeeze(1))


def contrast(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Contrast scaled towards each image's mean by 0.6, 0.4, 0.3, 0.2 or 0.1."""
    factor = (1, 0.6, 0.4, 0.3, 0.2, 0.1)[severity]
    x = _to_float(images)
    mean = x.mean(dim=(1, 2), keepdim=True)
    return _to_uint8((x - mean) * factor + mean)


def zigzag(images: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """1 to 5 white zigzag lines across the image (thicker from severity 4), an occlusion."""
    if severity == 0:
        return images.clone()
    n = images.shape[0]
    lines, width = severity, 1.0 if severity < 4 else 1.6
    cols = torch.arange(28, dtype=torch.float32)
    rows = torch.arange(28, dtype=torch.float32)[:, None]
    mask = torch.zeros(n, 28, 28, dtype=torch.bool)
    for _ in range(lines):
        base = torch.rand(n, 1, 1, generator=g) * 20 + 4
        period = torch.rand(n, 1, 1, generator=g) * 6 + 6
        phase = torch.rand(n, 1, 1, generator=g) * period
        triangle = (
            2 * ((cols + phase) / period - torch.floor((cols + phase) / period + 0.5))
        ).abs()
        centre = base + 4 * (triangle - 0.5)  # (n, 1, 28): the line's row at each column
        mask |= (rows - centre).abs() <= width
    out = images.clone()
    out[mask] = 255
    return out


CORRUPTIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "rotation": rotation,
    "translation": translation,
    "gaussian_noise": gaussian_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "zigzag": zigzag,
}


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Apply corruption ``name`` at ``severity`` (0 = identity, 1-5) to (N, 28, 28) uint8 images.

    Deterministic: the same images, corruption, severity and seed give the same pixels.

    Raises:
        ValueError: unknown corruption or severity.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}: choose one of {sorted(CORRUPTIONS)}.")
    if severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0 to 5, got {severity}.")
    if severity == 0:
        return images.clone()
    g = torch.Generator().manual_seed(seed * 1000 + sorted(CORRUPTIONS).index(name) * 10 + severity)
    return CORRUPTIONS[name](images.cpu(), severity, g)


def load_mnist_c(
    name: str, root: str | os.PathLike | None = None, mirror: str | os.PathLike | None = None
) -> tuple[Tensor, Tensor] | None:
    """The real MNIST-C test set of corruption ``name``, if it is on disk; else None.

    Looks for ``mnist_c/<name>/test_images.npy`` and ``test_labels.npy`` under the data root, then
    the mirror. Returns images (N, 28, 28) uint8 and labels (N,) int64.
    """
    import numpy as np

    for base in (data_root(root), data_mirror(mirror)):
        folder = Path(base) / "mnist_c" / name if base else None
        if folder and (folder / "test_images.npy").exists():
            images = torch.from_numpy(np.load(folder / "test_images.npy")).reshape(-1, 28, 28)
            labels = torch.from_numpy(np.load(folder / "test_labels.npy")).long()
            return images.to(torch.uint8), labels
    return None


def shifted_test_set(
    name: str,
    severity: int,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    seed: int = 0,
    subset: int | None = None,
) -> tuple[Tensor, Tensor]:
    """MNIST test images under corruption ``name`` at ``severity``, with their labels.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64 on the CPU.
    """
    images, labels = load_split("MNIST", False, root, mirror)
    images, labels = images[:subset], labels[:subset]
    return corrupt(images, name, severity, seed), labels


@torch.no_grad()
def evaluate_shift(
    models: dict[str, torch.nn.Module],
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS),
    severities: tuple[int, ...] = (0, *SEVERITIES),
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    seed: int = 0,
    subset: int | None = None,
    grouping: bool = True,
    batch_size: int = 2048,
) -> list[dict]:
    """Accuracy, NLL, ECE (and the grouping loss) of each model on each corrupted test set.

    Args:
        models: ``{name: model}``; each maps (B, 1, 28, 28) to (B, C) or estimator-major
            (M*B, C) logits (and has ``feats_forward`` when ``grouping``).

    Returns:
        One row per (model, corruption, severity): ``{"model", "corruption", "severity",
        "cls/Acc", "cls/NLL", "cal/ECE", "cal/GL"}`` (severity 0, clean data, once per model with
        corruption ``"none"``).
    """
    from tutorial_lib.metrics import evaluate_predictions, grouping_loss
    from tutorial_lib.routine import predict
    from tutorial_lib.trainer import release_cpu_memory

    rows = []
    sets = [("none", 0)] if 0 in severities else []
    sets += [(c, s) for c in corruptions for s in severities if s > 0]
    for corruption, severity in sets:
        name = corruption if corruption != "none" else next(iter(CORRUPTIONS))
        images, labels = shifted_test_set(name, severity, root, mirror, seed, subset)
        loader = TensorBatchLoader(images, labels, batch_size, shuffle=False)
        for model_name, model in models.items():
            kept = predict(model, loader, features=grouping)
            probs = kept["probs"]
            metrics = evaluate_predictions(probs, labels)
            row = {"model": model_name, "corruption": corruption, "severity": severity}
            row |= {k: metrics[k] for k in ("cls/Acc", "cls/NLL", "cal/ECE")}
            if grouping:
                try:
                    row["cal/GL"] = grouping_loss(probs, labels, kept["features"])["GL"]
                except ValueError:  # all right (or all wrong): not defined
                    row["cal/GL"] = float("nan")
            rows.append(row)
        release_cpu_memory()
    return rows


def summarize_shift(rows: list[dict], key: str = "cls/Acc") -> dict[str, dict[int, float]]:
    """``{model: {severity: mean of key over corruptions}}`` (severity 0: the clean test set)."""
    table: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        table.setdefault(row["model"], {}).setdefault(row["severity"], []).append(row[key])
    return {m: {s: sum(v) / len(v) for s, v in sorted(by.items())} for m, by in table.items()}


def plot_shift(rows: list[dict], keys: tuple[str, ...] = ("cls/Acc", "cal/ECE")):
    """Box plots over corruptions of each metric vs severity, one colour per model (Ovadia et al.).

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    severities = sorted({r["severity"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    width = 0.8 / len(models)
    for ax, key in zip(axes[0], keys, strict=True):
        for i, model in enumerate(models):
            data = [
                [100 * r[key] for r in rows if r["model"] == model and r["severity"] == s]
                for s in severities
            ]
            positions = [s + (i - (len(models) - 1) / 2) * width for s in severities]
            box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                             showfliers=False, manage_ticks=False)  # fmt: skip
            for patch in box["boxes"]:
                patch.set_facecolor(colours[i % len(colours)])
            ax.plot([], [], color=colours[i % len(colours)], lw=8, label=model)
        short = key.split("/")[-1]
        ax.set(xticks=severities, xlabel="shift severity (0 = clean test set)",
               ylabel=f"{short} (%)", title=f"{short} under shift")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig

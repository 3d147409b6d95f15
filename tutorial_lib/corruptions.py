"""Distribution shift at the data level: corrupted test sets at graded severities.

Each corruption is a batched tensor operation on uint8 images (N, 28, 28), at severities 1 to 5
(severity 0 is the identity), deterministic for a seed. They follow the spirit of MNIST-C
(Mu & Gilmer, 2019) and of Ovadia et al. (NeurIPS 2019), who showed that calibration degrades
under shift. Evaluating models on them is the experiment loop's job
(:func:`tutorial_lib.compare.evaluate_shift`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from tutorial_lib.data import load_split

SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 1000  # images per step of the memory-hungry corruptions (blur, affine resampling)


def _to_float(images: Tensor) -> Tensor:
    return images.float().div(255.0)


def _to_uint8(images: Tensor) -> Tensor:
    return images.clamp(0, 1).mul(255.0).round().to(torch.uint8)


def _chunked(fn: Callable[..., Tensor], images: Tensor, *per_image: Tensor) -> Tensor:
    """``fn(images, *per_image)`` applied :data:`CHUNK` images at a time (the same pixels: these
    operations treat each image alone), so that a whole test set never needs a full-size buffer:
    a 17-tap blur of 10,000 images would otherwise take about 0.5 GB of scratch memory."""
    if images.shape[0] <= CHUNK:
        return fn(images, *per_image)
    parts = [fn(images[i : i + CHUNK], *(a[i : i + CHUNK] for a in per_image))
             for i in range(0, images.shape[0], CHUNK)]  # fmt: skip
    return torch.cat(parts)


def _affine(images: Tensor, angles: Tensor, shifts: Tensor) -> Tensor:
    """Rotate (radians, (N,)) and translate (pixels, (N, 2)) a batch; the outside is black."""
    return _chunked(_affine_chunk, images, angles, shifts)


def _affine_chunk(images: Tensor, angles: Tensor, shifts: Tensor) -> Tensor:
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

    def blur(chunk: Tensor) -> Tensor:
        x = _to_float(chunk).unsqueeze(1)
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius)), kernel.view(1, 1, -1, 1))
        return _to_uint8(x.squeeze(1))

    return _chunked(blur, images)


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


def shifted_test_set(
    name: str,
    severity: int,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    seed: int = 0,
    subset: int | None = None,
    dataset: str = "MNIST",
) -> tuple[Tensor, Tensor]:
    """The test set of ``dataset`` under corruption ``name`` at ``severity``, with its labels.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64 on the CPU.
    """
    images, labels = load_split(dataset, False, root, mirror)
    images, labels = images[:subset], labels[:subset]
    return corrupt(images, name, severity, seed), labels

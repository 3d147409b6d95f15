"""Corruptions: identity at severity 0, monotone in severity, deterministic for a seed."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_lib import corruptions as shift
from tutorial_lib.data import load_split


@pytest.fixture(scope="module")
def digits(real_root):
    images, labels = load_split("MNIST", False, real_root)
    return images[:200], labels[:200]


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
def test_severity_zero_is_identity_and_severities_are_monotone(name, digits):
    images, _ = digits
    assert torch.equal(shift.corrupt(images, name, 0), images)
    distances = [
        (shift.corrupt(images, name, s).float() - images.float()).abs().mean().item()
        for s in shift.SEVERITIES
    ]
    assert all(b > a for a, b in zip(distances, distances[1:], strict=False)), distances
    out = shift.corrupt(images, name, 3)
    assert out.shape == images.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
def test_corruptions_are_deterministic_for_a_seed(name, digits):
    images, _ = digits
    assert torch.equal(
        shift.corrupt(images, name, 2, seed=1), shift.corrupt(images, name, 2, seed=1)
    )
    if name not in ("gaussian_blur", "contrast"):  # the only two without randomness
        assert not torch.equal(
            shift.corrupt(images, name, 2, seed=1), shift.corrupt(images, name, 2, seed=2)
        )


@pytest.mark.parametrize("name", ["rotation", "translation", "gaussian_blur"])
def test_working_in_chunks_gives_the_same_pixels(name, digits, monkeypatch):
    images, _ = digits  # 200 images: one chunk by default, 7 full chunks and a partial one of 4
    whole = shift.corrupt(images, name, 3, seed=5)
    monkeypatch.setattr(shift, "CHUNK", 28)
    assert torch.equal(shift.corrupt(images, name, 3, seed=5), whole)


def test_bad_arguments():
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="Unknown corruption"):
        shift.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        shift.corrupt(images, "contrast", 6)


def test_each_corruption_does_what_its_docstring_says():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8)
    x = images.float() / 255
    # contrast: scaled towards each image's mean by 0.6 at severity 1
    mean = x.mean(dim=(1, 2), keepdim=True)
    expected = ((x - mean) * 0.6 + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    assert torch.equal(shift.corrupt(images, "contrast", 1), expected)
    # Gaussian noise: standard deviation 0.1 at severity 1 (mid-grey: no clipping)
    grey = torch.full((64, 28, 28), 128, dtype=torch.uint8)
    noise = shift.corrupt(grey, "gaussian_noise", 1).float() / 255 - 128 / 255
    assert abs(float(noise.std()) - 0.1) < 0.005
    # impulse noise: 10 % of the pixels at severity 3, each set to black or white
    flat = torch.full((200, 28, 28), 100, dtype=torch.uint8)
    hit = shift.corrupt(flat, "impulse_noise", 3) != 100
    assert abs(float(hit.float().mean()) - 0.10) < 0.01
    assert set(shift.corrupt(flat, "impulse_noise", 3)[hit].unique().tolist()) == {0, 255}
    # translation: a dot moves by 2 pixels at severity 1
    dot = torch.zeros(50, 28, 28, dtype=torch.uint8)
    dot[:, 14, 14] = 255
    moved = shift.corrupt(dot, "translation", 1).float()
    rows, cols = torch.arange(28.0)[:, None], torch.arange(28.0)[None]
    mass = moved.sum(dim=(1, 2))
    centre_r = (moved * rows).sum(dim=(1, 2)) / mass
    centre_c = (moved * cols).sum(dim=(1, 2)) / mass
    distance = ((centre_r - 14) ** 2 + (centre_c - 14) ** 2).sqrt()
    assert torch.allclose(distance, torch.full_like(distance, 2.0), atol=0.3)
    # rotation: 10 degrees at severity 1 turns a horizontal bar by 10 degrees
    bar = torch.zeros(1, 28, 28, dtype=torch.uint8)
    bar[0, 14, 4:24] = 255
    turned = shift.corrupt(bar, "rotation", 1)[0].float()
    ys, xs = torch.nonzero(turned > 100, as_tuple=True)
    slope = torch.linalg.lstsq(
        torch.stack([xs.float(), torch.ones_like(xs.float())], 1), ys.float()[:, None]
    ).solution[0, 0]
    assert abs(abs(math.degrees(math.atan(float(slope)))) - 10) < 2.5
    # blur keeps the total brightness of a centred dot and spreads it out
    blurred = shift.corrupt(dot[:1], "gaussian_blur", 5).float()
    assert abs(float(blurred.sum()) / 255 - 1) < 0.1 and float(blurred.max()) < 60
    # zigzag: white lines, nothing removed
    lines = shift.corrupt(images, "zigzag", 2)
    assert bool((lines >= images).all()) and bool((lines[lines != images] == 255).all())


def test_shifted_test_set_is_the_corrupted_test_set(real_root):
    images, labels = shift.shifted_test_set("rotation", 4, real_root, subset=50)
    clean, clean_labels = load_split("MNIST", False, real_root)
    assert torch.equal(images, shift.corrupt(clean[:50], "rotation", 4))
    assert torch.equal(labels, clean_labels[:50])


# What the committed results (data/results/) were computed on: for the first 200 MNIST test
# images, seed 0, severities 1-5: (mean |corrupted - clean|, mean pixel), on the 0-255 scale.
# A change to a corruption's parameters changes these; update them only with the results.
CORRUPTED_STATISTICS = {
    "contrast": [(19.85, 30.34), (29.78, 30.346), (34.722, 30.329), (39.686, 30.331),
                 (44.636, 30.318)],
    "gaussian_blur": [(6.81, 30.331), (14.076, 30.326), (19.991, 30.306), (24.71, 30.265),
                      (29.949, 30.13)],
    "gaussian_noise": [(11.269, 38.228), (21.94, 45.804), (32.511, 53.538), (42.53, 61.198),
                       (52.016, 68.354)],
    "impulse_noise": [(3.839, 33.135), (7.704, 36.224), (12.74, 40.06), (19.228, 44.965),
                      (28.454, 51.907)],
    "rotation": [(15.164, 30.34), (25.434, 30.338), (31.98, 30.34), (37.469, 30.332),
                 (40.384, 30.335)],
    "translation": [(28.818, 30.33), (43.179, 30.138), (46.449, 29.203), (47.326, 27.369),
                    (47.346, 24.506)],
    "zigzag": [(15.22, 45.561), (28.807, 59.148), (42.016, 72.357), (79.154, 109.495),
               (92.201, 122.541)],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
def test_the_corrupted_sets_are_those_of_the_committed_results(name, digits):
    images, _ = digits
    for severity, (distance, mean) in zip(shift.SEVERITIES, CORRUPTED_STATISTICS[name],
                                          strict=True):  # fmt: skip
        out = shift.corrupt(images, name, severity, seed=0).float()
        assert (out - images.float()).abs().mean().item() == pytest.approx(distance, abs=0.02)
        assert out.mean().item() == pytest.approx(mean, abs=0.02)

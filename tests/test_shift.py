"""Distribution shift: corruptions (identity at 0, monotone, deterministic), MNIST-C, the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tutorial_lib import shift
from tutorial_lib.data import load_split
from tutorial_lib.models import LeNet


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


def test_bad_arguments():
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="Unknown corruption"):
        shift.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        shift.corrupt(images, "contrast", 6)


def test_real_mnist_c_is_used_when_present(tmp_path):
    folder = tmp_path / "mnist_c" / "zigzag"
    folder.mkdir(parents=True)
    np.save(folder / "test_images.npy", np.full((3, 28, 28, 1), 7, dtype=np.uint8))
    np.save(folder / "test_labels.npy", np.array([1, 2, 3]))
    images, labels = shift.load_mnist_c("zigzag", root=tmp_path, mirror=None)
    assert (
        images.shape == (3, 28, 28) and int(images[0, 0, 0]) == 7 and labels.tolist() == [1, 2, 3]
    )
    assert shift.load_mnist_c("rotation", root=tmp_path, mirror=None) is None


def test_shift_report_on_a_small_subset(real_root):
    torch.manual_seed(0)
    rows = shift.evaluate_shift({"a": LeNet(), "b": LeNet()}, corruptions=("rotation", "contrast"),
                                severities=(0, 1, 5), root=real_root, subset=300)  # fmt: skip
    assert len(rows) == 2 * (1 + 2 * 2)
    assert {r["corruption"] for r in rows} == {"none", "rotation", "contrast"}
    assert all({"cls/Acc", "cls/NLL", "cal/ECE", "cal/GL"} <= set(r) for r in rows)
    summary = shift.summarize_shift(rows, "cls/Acc")
    assert set(summary) == {"a", "b"} and list(summary["a"]) == [0, 1, 5]
    fig = shift.plot_shift(rows)
    assert len(fig.axes) == 2

"""LeNet and PackedLeNet: sizes, costs, shapes, checkpoint format."""

import pytest
import torch

from tutorial_lib.metrics import complexity
from tutorial_lib.models import LeNet, PackedLeNet, lenet_from_state_dict


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet_size_cost_and_shapes():
    model = LeNet(1, 10)
    cost = complexity(model)
    assert cost["params"] == 44_426
    assert cost["flops_per_image"] == 563_280
    assert cost["flops_batch"] == 563_280 * 2048  # 1.15 GFLOPs, the reference's table
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    assert model.feats_forward(x).shape == (3, 84)
    torch.testing.assert_close(model.fc3(model.feats_forward(x)), model(x))


def test_packed_lenet_size_and_cost():
    cost = complexity(PackedLeNet(1, 10, alpha=2, num_estimators=4))
    assert cost["params"] == 45_672
    assert cost["flops_per_image"] == 737_760
    assert n_params(PackedLeNet(1, 10, alpha=4, num_estimators=4)) == 4 * 44_426 == 177_704


@pytest.mark.parametrize(
    ("alpha", "m", "gamma"), [(2, 4, 1), (1, 2, 1), (4, 4, 1), (2, 2, 2), (3, 3, 1)]
)
def test_packed_lenet_shapes(alpha, m, gamma):
    model = PackedLeNet(1, 10, alpha=alpha, num_estimators=m, gamma=gamma)
    x = torch.randn(5, 1, 28, 28)
    assert model(x).shape == (m * 5, 10)
    feats = model.feats_forward(x)
    assert feats.shape == (m * 5, int(84 * alpha) // m)
    model.eval()
    assert model(x).shape == (m * 5, 10)


def test_packed_lenet_invalid_alpha_says_what_to_do():
    with pytest.raises(ValueError, match="Try alpha="):
        PackedLeNet(1, 10, alpha=1.3, num_estimators=4)


def test_reference_checkpoint_format_loads_strictly():
    source = LeNet(1, 10)
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}
    model = lenet_from_state_dict(checkpoint["state_dict"])
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), source(x))
    assert set(checkpoint["state_dict"]) == {
        f"model.{layer}.{p}"
        for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
        for p in ("weight", "bias")
    }
    broken = dict(checkpoint["state_dict"])
    broken["model.fc1.weight"] = torch.zeros(100, 256)
    with pytest.raises(ValueError, match="not a LeNet"):
        lenet_from_state_dict(broken)

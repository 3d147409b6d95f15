"""LeNet, PackedLeNet, MC-Dropout and BatchEnsemble LeNets: sizes, costs, shapes, checkpoints."""

import pytest
import torch

from tutorial_lib.metrics import complexity
from tutorial_lib.models import (
    BatchEnsembleLeNet,
    LeNet,
    MCDropoutLeNet,
    PackedLeNet,
    lenet_from_state_dict,
)


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


def test_width_multiplies_every_hidden_layer_and_lets_gamma_2_build():
    wide = LeNet(1, 10, width=4)
    assert [wide.conv1.out_channels, wide.conv2.out_channels, wide.fc1.out_features,
            wide.fc2.out_features] == [24, 64, 480, 336]  # fmt: skip
    x = torch.randn(3, 1, 28, 28)
    assert wide(x).shape == (3, 10) and wide.feats_forward(x).shape == (3, 336)
    # the paper's setting (alpha 2, M 4, gamma 2) cannot be built on LeCun's widths
    with pytest.raises(ValueError, match="do not split"):
        PackedLeNet(1, 10, alpha=2, num_estimators=4, gamma=2)
    packed = PackedLeNet(1, 10, alpha=2, num_estimators=4, gamma=2, width=2)
    assert packed(x).shape == (12, 10) and packed.feats_forward(x).shape == (12, 84)
    # groups cut the hidden layers' weights by gamma: fewer parameters than gamma 1
    assert n_params(packed) < n_params(PackedLeNet(1, 10, alpha=2, num_estimators=4, width=2))
    for model in (MCDropoutLeNet(width=2), BatchEnsembleLeNet(num_estimators=2, width=2)):
        assert model.feats_forward(x).shape[-1] == 168  # 84 x 2
    with pytest.raises(ValueError, match="width must be >= 1"):
        LeNet(width=0)
    state = {f"model.{k}": v for k, v in wide.state_dict().items()}
    assert lenet_from_state_dict(state).width == 4  # a wide checkpoint loads as wide


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


def test_mc_dropout_trains_as_one_network_and_samples_at_test_time():
    torch.manual_seed(0)
    model = MCDropoutLeNet(1, 10, num_samples=5, p=0.5)
    assert n_params(model) == 44_426
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, 10)  # training: one pass
    model.eval()
    out = model(x)
    assert out.shape == (15, 10)  # eval: T = 5 passes, estimator-major
    samples = out.reshape(5, 3, 10)
    assert not torch.allclose(samples[0], samples[1])  # a fresh dropout mask per pass
    assert model.feats_forward(x).shape == (15, 84)
    plain = LeNet(1, 10)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(samples.mean(0), plain(x))  # dropout really acts at test time
    with pytest.raises(ValueError, match="num_samples"):
        MCDropoutLeNet(num_samples=1)
    with pytest.raises(ValueError, match="p must"):
        MCDropoutLeNet(p=1.0)


def test_batch_ensemble_lenet_shares_weights_and_repeats_the_batch():
    torch.manual_seed(0)
    model = BatchEnsembleLeNet(1, 10, num_estimators=4)
    # LeNet's weights once (44,190 without biases) + per member r, s and bias vectors (939)
    assert n_params(model) == 44_190 + 4 * 939
    x = torch.randn(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (12, 10) and model.feats_forward(x).shape == (12, 84)
    members = out.reshape(4, 3, 10)
    assert not torch.allclose(members[0], members[1])  # each member has its own fast weights
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.fc1, model.fc2, model.fc3):
            layer.r_group.fill_(1.0)
            layer.s_group.fill_(1.0)
            layer.bias.copy_(layer.bias[0].expand_as(layer.bias))
    members = model(x).reshape(4, 3, 10)
    torch.testing.assert_close(members[0], members[3])  # identical fast weights: one network


def test_batch_ensemble_blocked_computation_equals_the_layers_on_a_repeated_batch():
    torch.manual_seed(1)
    model = BatchEnsembleLeNet(1, 10, num_estimators=3)
    x = torch.randn(5, 1, 28, 28)
    h = x.repeat(3, 1, 1, 1)  # what the layers' estimator-major forward expects
    h = torch.relu(torch.nn.functional.max_pool2d(model.conv1(h), 2))
    h = torch.relu(torch.nn.functional.max_pool2d(model.conv2(h), 2)).flatten(1)
    feats = torch.relu(model.fc2(torch.relu(model.fc1(h))))
    torch.testing.assert_close(model.feats_forward(x), feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), model.fc3(feats), atol=1e-5, rtol=1e-5)
    model(x).sum().backward()  # gradients reach the shared weights and every member's vectors
    for layer in (model.conv1, model.fc3):
        assert layer.r_group.grad is not None and layer.s_group.grad.abs().sum() > 0


def test_predictions_do_not_depend_on_the_evaluation_batch_size():
    from tutorial_lib.data import TensorBatchLoader
    from tutorial_lib.routine import predict

    torch.manual_seed(0)
    images = torch.randint(0, 256, (2500, 28, 28), dtype=torch.uint8)
    images[:, :6] = 0  # black borders: ties in the pooling windows
    labels = torch.randint(0, 10, (2500,))
    for model in (LeNet(), PackedLeNet(1, 10, 2, 4)):
        with torch.inference_mode():
            kept = [predict(model, TensorBatchLoader(images, labels, size, shuffle=False))["probs"]
                    for size in (1024, 2048, 700)]  # fmt: skip
        assert torch.equal(kept[0], kept[1]) and torch.equal(kept[0], kept[2])

"""Deep ensembles, RepeatTarget, and fused (packed) training of M LeNets through fuse/unfuse."""

import pytest
import torch
from torch.nn import functional as F

from tutorial_lib.ensembles import DeepEnsemble, RepeatTarget, deep_ensembles, fuse, unfuse
from tutorial_lib.models import LeNet, PackedLeNet


def test_deep_ensembles_from_one_model_are_independent_copies():
    torch.manual_seed(0)
    base = LeNet()
    ensemble = deep_ensembles(base, num_estimators=3)
    assert ensemble.num_estimators == 3
    weights = [m.conv1.weight for m in ensemble.models]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(
        weights[0], base.conv1.weight
    )
    kept = deep_ensembles(base, num_estimators=2, reset_model_parameters=False)
    assert all(torch.equal(m.conv1.weight, base.conv1.weight) for m in kept.models)
    assert kept.models[0].conv1.weight is not base.conv1.weight


def test_deep_ensemble_output_is_estimator_major_in_train_and_eval():
    torch.manual_seed(0)
    members = [LeNet(), LeNet()]
    ensemble = deep_ensembles(members)
    x = torch.randn(4, 1, 28, 28)
    for mode in (True, False):
        ensemble.train(mode)
        out = ensemble(x)
        assert out.shape == (8, 10)
        torch.testing.assert_close(out[:4], members[0](x))
        torch.testing.assert_close(out[4:], members[1](x))
    assert ensemble.feats_forward(x).shape == (8, 84)


def test_deep_ensembles_errors():
    with pytest.raises(ValueError, match="num_estimators"):
        deep_ensembles(LeNet())
    with pytest.raises(ValueError, match="empty"):
        deep_ensembles([])
    with pytest.raises(ValueError, match="3 but 2"):
        deep_ensembles([LeNet(), LeNet()], num_estimators=3)
    with pytest.raises(ValueError):
        RepeatTarget(0)


def test_repeat_target_mean_loss_is_mean_of_member_losses():
    torch.manual_seed(0)
    ensemble = DeepEnsemble([LeNet(), LeNet(), LeNet()])
    x, y = torch.randn(5, 1, 28, 28), torch.randint(0, 10, (5,))
    x, tiled = RepeatTarget(3)((x, y))
    assert tiled.tolist() == y.tolist() * 3
    loss = F.cross_entropy(ensemble(x), tiled)
    members = torch.stack([F.cross_entropy(m(x), y) for m in ensemble.models])
    torch.testing.assert_close(loss, members.mean())


def test_fused_ensemble_outputs_equal_the_sequential_ensemble():
    torch.manual_seed(0)
    ensemble = deep_ensembles(LeNet(), num_estimators=4)
    lenets = list(ensemble.models)
    packed = fuse(ensemble)
    assert isinstance(packed, PackedLeNet) and packed.alpha == packed.num_estimators == 4
    assert sum(p.numel() for p in packed.parameters()) == 177_704
    x = torch.randn(6, 1, 28, 28)
    torch.testing.assert_close(packed(x), ensemble(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.feats_forward(x), ensemble.feats_forward(x),
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    for original, back in zip(lenets, unfuse(packed).models, strict=True):
        for (name, a), b in zip(
            original.state_dict().items(), back.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


def test_fused_gradients_equal_separate_training():
    torch.manual_seed(0)
    lenets = [LeNet() for _ in range(3)]
    packed = fuse(DeepEnsemble(lenets))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    F.cross_entropy(packed(x), RepeatTarget(3)((x, y))[1]).backward()
    for lenet in lenets:
        F.cross_entropy(lenet(x), y).backward()
    # the packed mean loss is (1/M) sum of member losses, so its gradient is 1/M of each member's
    for name in ("fc1", "fc3"):
        fused = getattr(packed, name).weight.grad.chunk(3)
        for m, lenet in enumerate(lenets):
            torch.testing.assert_close(fused[m] * 3, getattr(lenet, name).weight.grad,
                                       atol=1e-5, rtol=1e-4)  # fmt: skip
    fused = packed.conv2.weight.grad.chunk(3)
    for m, lenet in enumerate(lenets):
        torch.testing.assert_close(fused[m] * 3, lenet.conv2.weight.grad, atol=1e-5, rtol=1e-4)


def test_unfuse_refuses_a_true_packed_ensemble_and_fuse_refuses_other_members():
    with pytest.raises(ValueError, match="alpha = num_estimators"):
        unfuse(PackedLeNet(alpha=2, num_estimators=4))
    with pytest.raises(ValueError, match="DeepEnsemble of LeNets"):
        fuse(DeepEnsemble([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]))


def test_a_wide_deep_ensemble_fuses_and_unfuses():
    torch.manual_seed(0)
    ensemble = deep_ensembles(LeNet(width=2), num_estimators=2)
    packed = fuse(ensemble)
    assert packed.width == 2
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(packed(x), ensemble(x), atol=1e-5, rtol=1e-5)
    assert all(lenet.width == 2 for lenet in unfuse(packed).models)

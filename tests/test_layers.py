"""Packed layers: equal to their M independent small layers, block structure, errors."""

import pytest
import torch
from torch import nn

from tutorial_lib import layers
from tutorial_lib.layers import PackedConv2d, PackedLinear


@pytest.mark.parametrize(("alpha", "m", "gamma"), [(2, 2, 1), (4, 4, 1), (2, 4, 2), (3, 3, 1)])
def test_linear_blocks_are_small_linears(alpha, m, gamma):
    torch.manual_seed(0)
    layer = PackedLinear(24, 12, alpha=alpha, num_estimators=m, gamma=gamma)
    g = layer.groups
    assert g == m * gamma
    x = torch.randn(7, layer.ext_in)
    out = layer(x)
    assert out.shape == (7, layer.ext_out)
    in_g, out_g = layer.ext_in // g, layer.ext_out // g
    for i in range(g):
        small = nn.Linear(in_g, out_g)
        small.weight.data = layer.weight[i * out_g : (i + 1) * out_g]
        small.bias.data = layer.bias[i * out_g : (i + 1) * out_g]
        torch.testing.assert_close(
            out[:, i * out_g : (i + 1) * out_g], small(x[:, i * in_g : (i + 1) * in_g])
        )


@pytest.mark.parametrize(("alpha", "m", "gamma"), [(2, 4, 1), (1, 2, 2), (4, 4, 1)])
def test_conv_blocks_are_small_convs(alpha, m, gamma):
    torch.manual_seed(0)
    layer = PackedConv2d(8, 8, 3, alpha=alpha, num_estimators=m, gamma=gamma, padding=1)
    conv = layer.conv
    g = conv.groups
    x = torch.randn(2, conv.in_channels, 9, 9)
    out = layer(x)
    in_g, out_g = conv.in_channels // g, conv.out_channels // g
    for i in range(g):
        small = nn.Conv2d(in_g, out_g, 3, padding=1)
        small.weight.data = layer.weight[i * out_g : (i + 1) * out_g]
        small.bias.data = layer.bias[i * out_g : (i + 1) * out_g]
        torch.testing.assert_close(
            out[:, i * out_g : (i + 1) * out_g], small(x[:, i * in_g : (i + 1) * in_g]),
            atol=1e-5, rtol=1e-5,
        )  # fmt: skip


def test_first_layer_is_dense_and_last_is_estimator_major():
    first = PackedLinear(5, 8, alpha=2, num_estimators=4, first=True)
    assert (first.ext_in, first.ext_out, first.groups) == (5, 16, 1)
    last = PackedLinear(8, 3, alpha=2, num_estimators=4, last=True)
    assert (last.ext_in, last.ext_out, last.groups) == (16, 12, 4)
    x = torch.randn(6, 16)
    out = last(x)
    assert out.shape == (4 * 6, 3)
    for m in range(4):  # member m: its block of inputs through its block of weights
        w, b = last.weight[m * 3 : (m + 1) * 3], last.bias[m * 3 : (m + 1) * 3]
        expected = x[:, m * 4 : (m + 1) * 4] @ w.T + b
        torch.testing.assert_close(out[m * 6 : (m + 1) * 6], expected)
    conv = PackedConv2d(4, 2, 1, alpha=2, num_estimators=4, last=True)
    assert conv(torch.randn(5, 8, 4, 4)).shape == (20, 2, 4, 4)


def test_changing_one_member_changes_only_its_rows():
    torch.manual_seed(0)
    layer = PackedLinear(8, 3, alpha=2, num_estimators=4, last=True)
    x = torch.randn(5, 16)
    before = layer(x).detach()
    with torch.no_grad():
        layer.weight[3:6] += 1.0  # member 1's rows
    after = layer(x).detach()
    changed = (after - before).abs().amax(dim=1) > 0
    assert changed.tolist() == [False] * 5 + [True] * 5 + [False] * 10


def test_initialisation_uses_group_fan_in():
    torch.manual_seed(0)
    layer = PackedLinear(256, 120, alpha=2, num_estimators=4)
    bound = 1 / (layer.ext_in // layer.groups) ** 0.5  # kaiming_uniform(a=sqrt(5)) bound
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    assert layer.bias.abs().max() <= bound


def test_invalid_configurations_name_layer_widths_and_fix():
    with pytest.raises(ValueError) as info:
        PackedLinear(10, 7, alpha=3, num_estimators=4)
    message = str(info.value)
    assert "PackedLinear" in message and "30 -> 21" in message and "alpha=" in message
    with pytest.raises(ValueError, match=r"^PackedConv2d\(6 -> 16, .*Try"):
        PackedConv2d(6, 16, 5, alpha=1.5, num_estimators=4)
    for kwargs, words in (({"alpha": 0}, "alpha must be > 0, got 0"),
                          ({"num_estimators": 0}, "num_estimators must be a positive integer"),
                          ({"gamma": 0}, "gamma must be a positive integer")):  # fmt: skip
        params = {"alpha": 2, "num_estimators": 2, **kwargs}
        with pytest.raises(ValueError, match=words):
            PackedLinear(8, 8, **params)
    # gamma defaults to 1: 4 members, 4 groups
    assert PackedConv2d(6, 16, 5, alpha=2, num_estimators=4).conv.groups == 4


def test_batch_linear_rows_of_member_m_use_its_fast_weights():
    torch.manual_seed(0)
    layer = layers.BatchLinear(6, 4, num_estimators=3)
    x = torch.randn(3 * 5, 6)
    out = layer(x)
    assert out.shape == (15, 4)
    for m in range(3):
        rows = x[m * 5 : (m + 1) * 5]
        expected = (rows * layer.r_group[m]) @ layer.weight.T * layer.s_group[m] + layer.bias[m]
        torch.testing.assert_close(out[m * 5 : (m + 1) * 5], expected)
    # with unit fast weights and no bias it is the shared linear map
    with torch.no_grad():
        layer.r_group.fill_(1.0)
        layer.s_group.fill_(1.0)
        layer.bias.zero_()
    torch.testing.assert_close(layer(x), x @ layer.weight.T)


def test_batch_conv_rows_of_member_m_use_its_fast_weights():
    torch.manual_seed(0)
    layer = layers.BatchConv2d(2, 3, 3, num_estimators=2, padding=1)
    x = torch.randn(2 * 4, 2, 5, 5)
    out = layer(x)
    assert out.shape == (8, 3, 5, 5)
    for m in range(2):
        rows = x[m * 4 : (m + 1) * 4] * layer.r_group[m].view(1, 2, 1, 1)
        expected = layer.conv(rows) * layer.s_group[m].view(1, 3, 1, 1)
        expected = expected + layer.bias[m].view(1, 3, 1, 1)
        torch.testing.assert_close(out[m * 4 : (m + 1) * 4], expected)


def test_batch_layers_initialisation_and_errors():
    torch.manual_seed(0)
    layer = layers.BatchLinear(400, 300, num_estimators=4)
    for name in ("r_group", "s_group"):
        values = getattr(layer, name).detach()
        assert abs(float(values.mean()) - 1.0) < 0.05 and abs(float(values.std()) - 0.5) < 0.05
    assert layer.bias.abs().max() <= 1 / 400**0.5
    assert layer.weight.shape == (300, 400) and layer.bias.shape == (4, 300)
    with pytest.raises(ValueError, match="estimator-major"):
        layer(torch.randn(7, 400))
    with pytest.raises(ValueError, match="num_estimators"):
        layers.BatchConv2d(1, 2, 3, num_estimators=0)


def test_hints_name_the_nearest_alpha_and_a_gamma_that_work():
    def message(*args, **kwargs):
        with pytest.raises(ValueError) as info:
            PackedLinear(*args, **kwargs)
        return str(info.value)

    assert message(12, 12, alpha=1, num_estimators=4, gamma=2) == (
        "PackedLinear(12 -> 12, alpha=1, num_estimators=4, gamma=2): extended widths 12 -> 12 do "
        "not split into 8 equal groups. Try alpha=2 or gamma=1.")  # fmt: skip
    assert message(12, 12, alpha=1.3, num_estimators=4).endswith(
        "extended widths 15 -> 15 do not split into 4 equal groups. Try alpha=1.")  # fmt: skip
    assert message(6, 4, alpha=1, num_estimators=8).endswith("Try alpha=4.")
    # the nearest alpha that works (4), not the smallest (2)
    assert message(6, 16, alpha=3.6, num_estimators=4).endswith("Try alpha=4.")
    # no alpha up to 32 gives each of the 64 groups an output: no hint to give
    assert message(1, 1, alpha=2, num_estimators=64).endswith(
        "Try other alpha / num_estimators values.")  # fmt: skip
    PackedLinear(4, 4, alpha=1, num_estimators=1)  # one member is a plain layer: allowed
    PackedLinear(4, 4, alpha=0.5, num_estimators=2)  # a width factor below 1 is allowed


def test_first_packed_linear_is_a_plain_linear_and_bias_is_optional():
    torch.manual_seed(0)
    first = PackedLinear(6, 8, alpha=2, num_estimators=2, first=True)
    assert first.groups == 1
    x = torch.randn(5, 6)
    torch.testing.assert_close(first(x), x @ first.weight.T + first.bias)
    plain = PackedLinear(6, 8, alpha=2, num_estimators=2, first=True, bias=False)
    assert plain.bias is None
    torch.testing.assert_close(plain(x), x @ plain.weight.T)
    assert PackedLinear(8, 8, alpha=2, num_estimators=2, bias=False).bias is None
    conv = PackedConv2d(4, 4, 3, alpha=2, num_estimators=2, stride=2, dilation=2, bias=False)
    assert conv.bias is None and conv(torch.randn(1, 8, 13, 13)).shape == (1, 8, 5, 5)
    assert (conv.conv.stride, conv.conv.dilation) == ((2, 2), (2, 2))


def test_initial_weights_fill_their_kaiming_range_and_biases_are_centred():
    torch.manual_seed(0)
    for layer in (PackedLinear(256, 256, alpha=1, num_estimators=1),
                  layers.BatchLinear(256, 256, 2)):  # fmt: skip
        bound = 1 / 256**0.5  # kaiming_uniform with a = sqrt(5): U(-1/sqrt(fan_in), +...)
        weight = layer.weight.detach()
        assert weight.abs().max() <= bound and weight.abs().max() > 0.97 * bound
        bias = layer.bias.detach()
        assert bias.min() < -0.5 * bound and bias.max() > 0.5 * bound  # U(-b, b), not U(b, b)


def test_batch_layers_options():
    torch.manual_seed(0)
    linear = layers.BatchLinear(4, 3, 2, bias=False)
    assert linear.bias is None
    x = torch.randn(6, 4)
    assert linear(x).shape == (6, 3)
    conv = layers.BatchConv2d(1, 2, 3, 2, stride=2, bias=False)
    assert conv.bias is None and conv.conv.stride == (2, 2)
    assert conv(torch.randn(4, 1, 9, 9)).shape == (4, 2, 4, 4)
    with pytest.raises(ValueError) as info:
        conv(torch.randn(3, 1, 9, 9))
    assert str(info.value) == ("BatchEnsemble layers need estimator-major inputs (M*B, ...) with "
                               "M = 2, got 3 rows: repeat the batch M times first.")  # fmt: skip
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="num_estimators"):
            layers.BatchLinear(4, 3, bad)

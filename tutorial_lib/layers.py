"""Packed layers (Laurent et al., 2023) and BatchEnsemble layers (Wen et al., 2020).

**Packed layers** hold the same layer of ``M`` ensemble members side by side. The packed layer is
``alpha`` times as wide as the base layer (``int(width * alpha)`` channels or features), and each
member owns ``1/M`` of it, i.e. ``alpha/M`` of the base width (``alpha = M``: every member is a
full-width copy). Grouped weights keep the members independent:

- the **first** layer reads the shared input densely (``groups = 1``);
- every later layer is **block-diagonal** with ``M * gamma`` groups: member ``m`` owns the ``m``-th
  contiguous block of channels/features at every layer (``gamma > 1`` splits each member further);
- the **last** layer outputs ``M * C`` values per input, returned estimator-major as ``(M * B, C)``
  (rows ``m*B:(m+1)*B`` are member ``m``), the layout of the whole library.

So a hidden layer's weights cost ``alpha^2 / (M * gamma)`` times the base layer's: with
``alpha = 2, M = 4`` the whole network has about as many parameters as the base one.

**BatchEnsemble layers** share one weight matrix ``W`` between the ``M`` members; member ``m``
owns only two vectors ``r_m`` (input size) and ``s_m`` (output size) and a bias ``b_m``, so its
effective weight is the rank-1 modulation ``W * (s_m r_m^T)``. Inputs are estimator-major
``(M * B, ...)``: rows ``m*B:(m+1)*B`` belong to member ``m``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _check_hparams(alpha: float, num_estimators: int, gamma: int) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    if num_estimators < 1 or int(num_estimators) != num_estimators:
        raise ValueError(f"num_estimators must be a positive integer, got {num_estimators}.")
    if gamma < 1 or int(gamma) != gamma:
        raise ValueError(f"gamma must be a positive integer, got {gamma}.")


def _packed_widths(
    layer: str,
    in_width: int,
    out_width: int,
    alpha: float,
    num_estimators: int,
    gamma: int,
    groups: int,
    first: bool,
    last: bool,
) -> tuple[int, int, int]:
    """Extended input width, extended output width and number of groups of a packed layer.

    Raises:
        ValueError: the widths do not divide into the groups; the message names the layer, the
            widths, and an ``alpha`` (or ``gamma``) that would work.
    """
    _check_hparams(alpha, num_estimators, gamma)

    def widths(a: float, g: int) -> tuple[int, int, int]:
        ext_in = in_width if first else int(in_width * a)
        ext_out = out_width * num_estimators if last else int(out_width * a)
        n_groups = groups if first else num_estimators * g * groups
        return ext_in, ext_out, n_groups

    def valid(a: float, g: int) -> bool:
        ext_in, ext_out, n_groups = widths(a, g)
        n_in = groups if first else n_groups
        return ext_in % n_in == 0 and ext_out % n_groups == 0 and ext_out >= n_groups

    ext_in, ext_out, n_groups = widths(alpha, gamma)
    if not valid(alpha, gamma):
        hints = []
        alphas = sorted((k / 2 for k in range(1, 65)), key=lambda a: abs(a - alpha))
        good_alpha = next((a for a in alphas if valid(a, gamma)), None)
        if good_alpha is not None:
            hints.append(f"alpha={good_alpha:g}")
        good_gamma = next((g for g in range(1, 17) if g != gamma and valid(alpha, g)), None)
        if good_gamma is not None:
            hints.append(f"gamma={good_gamma}")
        hint = " or ".join(hints) if hints else "other alpha / num_estimators values"
        raise ValueError(
            f"{layer}({in_width} -> {out_width}, alpha={alpha:g}, num_estimators={num_estimators},"
            f" gamma={gamma}): extended widths {ext_in} -> {ext_out} do not split into "
            f"{n_groups} equal groups. Try {hint}."
        )
    return ext_in, ext_out, n_groups


def to_estimator_major(x: Tensor, num_estimators: int) -> Tensor:
    """(B, M*C, ...) member-blocked channels -> (M*B, C, ...) estimator-major rows."""
    b, mc = x.shape[:2]
    x = x.reshape(b, num_estimators, mc // num_estimators, *x.shape[2:])
    return x.transpose(0, 1).reshape(num_estimators * b, mc // num_estimators, *x.shape[3:])


class PackedLinear(nn.Module):
    """Linear layer of ``num_estimators`` members packed side by side (see the module docstring).

    ``ext_in = in_features`` if ``first`` else ``int(in_features * alpha)``; ``ext_out =
    out_features * M`` if ``last`` else ``int(out_features * alpha)``.

    Input ``(B, ext_in)``; output ``(B, ext_out)``, or ``(M*B, out_features)`` when ``last``.
    ``weight`` is ``(ext_out, ext_in / groups)``: group ``g`` maps input block ``g`` to output
    rows ``g*ext_out/groups:(g+1)*ext_out/groups``. Each group is initialised like an
    ``nn.Linear(ext_in / groups, ext_out / groups)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        alpha: float,
        num_estimators: int,
        gamma: int = 1,
        first: bool = False,
        last: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        ext_in, ext_out, groups = _packed_widths(
            "PackedLinear", in_features, out_features, alpha, num_estimators, gamma, 1, first, last
        )
        self.in_features, self.out_features = in_features, out_features
        self.num_estimators, self.last = num_estimators, last
        self.ext_in, self.ext_out, self.groups = ext_in, ext_out, groups
        self.weight = nn.Parameter(torch.empty(ext_out, ext_in // groups))
        self.bias = nn.Parameter(torch.empty(ext_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation, per group (fan-in = ext_in / groups)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(B, ext_in) -> (B, ext_out), or (M*B, out_features) estimator-major when ``last``."""
        if self.groups == 1:
            y = F.linear(x, self.weight, self.bias)
        else:  # one small linear map per group: a batched matrix product over the groups
            b, g = x.shape[0], self.groups
            xs = x.reshape(b, g, -1).transpose(0, 1)  # (G, B, ext_in / G)
            ws = self.weight.reshape(g, -1, self.weight.shape[1])  # (G, ext_out / G, ext_in / G)
            y = torch.bmm(xs, ws.transpose(1, 2)).transpose(0, 1).reshape(b, -1)  # (B, ext_out)
            if self.bias is not None:
                y = y + self.bias
        return to_estimator_major(y, self.num_estimators) if self.last else y

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}->{self.out_features}, extended {self.ext_in}->{self.ext_out}, "
            f"groups={self.groups}, last={self.last}"
        )


class PackedConv2d(nn.Module):
    """2-d convolution of ``num_estimators`` members packed side by side.

    Input ``(B, ext_in, H, W)``; output ``(B, ext_out, H', W')``, or ``(M*B, out_channels, H', W')``
    when ``last``. The convolution is an ``nn.Conv2d`` with ``groups = M * gamma * groups`` (1 for
    the first layer), so each group is initialised like the corresponding small convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        alpha: float,
        num_estimators: int,
        gamma: int = 1,
        groups: int = 1,
        first: bool = False,
        last: bool = False,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        ext_in, ext_out, n_groups = _packed_widths(
            "PackedConv2d", in_channels, out_channels, alpha, num_estimators, gamma, groups,
            first, last,
        )  # fmt: skip
        self.num_estimators, self.last = num_estimators, last
        self.conv = nn.Conv2d(
            ext_in, ext_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=n_groups, bias=bias,
        )  # fmt: skip

    @property
    def weight(self) -> Tensor:
        """(ext_out, ext_in / groups, kH, kW)."""
        return self.conv.weight

    @property
    def bias(self) -> Tensor | None:
        return self.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return to_estimator_major(y, self.num_estimators) if self.last else y


def _split_members(x: Tensor, num_estimators: int) -> Tensor:
    """(M*B, ...) estimator-major rows -> (M, B, ...); a ValueError if M does not divide M*B."""
    if x.shape[0] % num_estimators:
        raise ValueError(
            f"BatchEnsemble layers need estimator-major inputs (M*B, ...) with M = "
            f"{num_estimators}, got {x.shape[0]} rows: repeat the batch M times first."
        )
    return x.unflatten(0, (num_estimators, -1))


def _init_fast_weights(layer: nn.Module, fan_in: int) -> None:
    """r, s ~ N(1, 0.5) (the BatchEnsemble paper's random-sign-free variant); bias like
    ``nn.Linear``'s, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    nn.init.normal_(layer.r_group, mean=1.0, std=0.5)
    nn.init.normal_(layer.s_group, mean=1.0, std=0.5)
    if layer.bias is not None:
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(layer.bias, -bound, bound)


class BatchLinear(nn.Module):
    """BatchEnsemble linear layer: ``y = ((x * r_m) W^T) * s_m + b_m`` for member ``m``'s rows.

    Input ``(M*B, in_features)``, output ``(M*B, out_features)``, estimator-major. Parameters:
    ``weight`` (out, in), shared, initialised like ``nn.Linear``'s; ``r_group`` (M, in),
    ``s_group`` (M, out) and ``bias`` (M, out), one row per member.
    """

    def __init__(
        self, in_features: int, out_features: int, num_estimators: int, bias: bool = True
    ) -> None:
        super().__init__()
        _check_hparams(1.0, num_estimators, 1)
        self.in_features, self.out_features = in_features, out_features
        self.num_estimators = num_estimators
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.r_group = nn.Parameter(torch.empty(num_estimators, in_features))
        self.s_group = nn.Parameter(torch.empty(num_estimators, out_features))
        self.bias = nn.Parameter(torch.empty(num_estimators, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        _init_fast_weights(self, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        """(M*B, in_features) -> (M*B, out_features)."""
        xs = _split_members(x, self.num_estimators)  # (M, B, in)
        y = F.linear(xs * self.r_group[:, None], self.weight) * self.s_group[:, None]
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.flatten(0, 1)

    def extra_repr(self) -> str:
        return f"{self.in_features}->{self.out_features}, num_estimators={self.num_estimators}"


class BatchConv2d(nn.Module):
    """BatchEnsemble 2-d convolution: ``y = conv(x * r_m, W) * s_m + b_m`` per member, the
    vectors broadcast over the spatial dimensions.

    Input ``(M*B, C_in, H, W)``, output ``(M*B, C_out, H', W')``, estimator-major. ``conv`` is a
    bias-free ``nn.Conv2d`` shared by all members; ``r_group`` (M, C_in), ``s_group`` (M, C_out),
    ``bias`` (M, C_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        num_estimators: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_hparams(1.0, num_estimators, 1)
        self.num_estimators = num_estimators
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, bias=False)  # fmt: skip
        self.r_group = nn.Parameter(torch.empty(num_estimators, in_channels))
        self.s_group = nn.Parameter(torch.empty(num_estimators, out_channels))
        self.bias = nn.Parameter(torch.empty(num_estimators, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        fan_in = self.conv.weight[0].numel()
        _init_fast_weights(self, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        """(M*B, C_in, H, W) -> (M*B, C_out, H', W')."""
        m = self.num_estimators
        r = self.r_group[:, None, :, None, None]
        y = self.conv((_split_members(x, m) * r).flatten(0, 1)).unflatten(0, (m, -1))
        y = y * self.s_group[:, None, :, None, None]
        if self.bias is not None:
            y = y + self.bias[:, None, :, None, None]
        return y.flatten(0, 1)

"""The course's networks: LeNet and three ways to make an ensemble-like LeNet.

- :class:`LeNet`: LeCun's 5-layer network as the reference tutorial uses it (44,426 parameters
  for MNIST).
- :class:`PackedLeNet`: ``num_estimators`` LeNets packed into one network (Laurent et al., 2023):
  every layer ``alpha`` times as wide as LeNet's, each member ``alpha/M`` of LeNet's width.
- :class:`MCDropoutLeNet`: LeNet with dropout that stays on at test time (Gal & Ghahramani, 2016):
  ``T`` stochastic passes act as ``T`` members.
- :class:`BatchEnsembleLeNet`: ``M`` members sharing LeNet's weights, each with rank-1 fast weights
  (Wen et al., 2020).

Every network maps ``(B, in_channels, 28, 28)`` to logits; the ensemble-like ones return
``(M*B, C)`` estimator-major rows (member ``m`` in rows ``m*B:(m+1)*B``) at test time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tutorial_lib.layers import (
    BatchConv2d,
    BatchLinear,
    PackedConv2d,
    PackedLinear,
    to_estimator_major,
)


class LeNet(nn.Module):
    """conv(5x5, 6) - ReLU - pool - conv(5x5, 16) - ReLU - pool - fc 120 - fc 84 - fc classes.

    Parameter names (``conv1, conv2, fc1, fc2, fc3``) match the reference tutorial's checkpoints.

    Args:
        in_channels: 1 for MNIST.
        num_classes: 10 for MNIST.
        width: multiplies every hidden width (6, 16, 120, 84 channels and units): 1 is LeCun's.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 1) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}.")
        self.width = width
        self.conv1 = nn.Conv2d(in_channels, 6 * width, 5)
        self.conv2 = nn.Conv2d(6 * width, 16 * width, 5)
        self.fc1 = nn.Linear(256 * width, 120 * width)  # 16 channels x 4 x 4 after the pools
        self.fc2 = nn.Linear(120 * width, 84 * width)
        self.fc3 = nn.Linear(84 * width, num_classes)

    def _drop(self, x: Tensor) -> Tensor:
        return x  # no dropout (MCDropoutLeNet overrides this)

    def _features(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self._drop(torch.flatten(x, 1))
        x = self._drop(F.relu(self.fc1(x)))
        return F.relu(self.fc2(x))

    def feats_forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (B, 84 * width) penultimate features."""
        return self._features(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (B, num_classes) logits."""
        return self.fc3(self._drop(self._features(x)))


class MCDropoutLeNet(LeNet):
    """LeNet with dropout before each fully connected layer, kept on at test time.

    In training mode it is one network with dropout (outputs ``(B, C)``). In eval mode it runs
    ``num_samples`` stochastic passes at once (the batch repeated ``T`` times, a fresh dropout
    mask for every row) and returns them as ``T`` members, estimator-major ``(T*B, C)``.

    Args:
        in_channels, num_classes, width: as :class:`LeNet`.
        num_samples: stochastic passes at test time, ``T >= 2``.
        p: dropout probability.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        num_samples: int = 8,
        p: float = 0.25,
        width: int = 1,
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}.")
        if not 0 < p < 1:
            raise ValueError(f"p must be in (0, 1), got {p}.")
        self.num_estimators, self.p = num_samples, p

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=True)  # on in eval mode too: Monte Carlo dropout

    def _repeat(self, x: Tensor) -> Tensor:
        return x if self.training else x.repeat(self.num_estimators, *([1] * (x.ndim - 1)))

    def feats_forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> (B, 84 * width) in training, (T*B, 84 * width) estimator-major in eval
        mode."""
        return self._features(self._repeat(x))

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> (B, C) in training, (T*B, C) estimator-major in eval mode."""
        return self.fc3(self._drop(self._features(self._repeat(x))))


class PackedLeNet(nn.Module):
    """LeNet made of packed layers: ``num_estimators`` members in one network.

    Every layer is ``alpha`` times as wide as LeNet's; each member owns ``alpha/M`` of LeNet's
    width. ``forward`` returns ``(M*B, num_classes)`` logits, estimator-major. With ``alpha = M``
    and ``gamma = 1`` it is exactly a deep ensemble of ``M`` LeNets (see
    :func:`tutorial_lib.ensembles.fuse`).

    Args:
        in_channels: 1 for MNIST.
        num_classes: 10 for MNIST.
        alpha: width factor of every hidden layer.
        num_estimators: number of members ``M``.
        gamma: number of groups per member in the hidden layers.
        width: the backbone's width, as :class:`LeNet`'s (the members' is ``alpha/M`` of it).

    Raises:
        ValueError: widths that do not split into the groups (the message suggests values that
            work).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        alpha: float = 2,
        num_estimators: int = 4,
        gamma: int = 1,
        width: int = 1,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}.")
        self.num_estimators, self.alpha, self.gamma, self.width = (
            num_estimators,
            alpha,
            gamma,
            width,
        )
        common = {"alpha": alpha, "num_estimators": num_estimators, "gamma": gamma}
        w = width
        self.conv1 = PackedConv2d(in_channels, 6 * w, 5, first=True, **common)
        self.conv2 = PackedConv2d(6 * w, 16 * w, 5, **common)
        self.fc1 = PackedLinear(256 * w, 120 * w, **common)
        self.fc2 = PackedLinear(120 * w, 84 * w, **common)
        self.fc3 = PackedLinear(84 * w, num_classes, last=True, **common)

    def _hidden(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)  # member blocks stay contiguous: channel-major flattening
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def feats_forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (M*B, int(84*width*alpha)/M) per-member features."""
        return to_estimator_major(self._hidden(x), self.num_estimators)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (M*B, num_classes) logits, estimator-major."""
        return self.fc3(self._hidden(x))


class BatchEnsembleLeNet(nn.Module):
    """LeNet of BatchEnsemble layers: ``num_estimators`` members sharing one set of weights.

    The batch is repeated ``M`` times, estimator-major (rows ``m*B:(m+1)*B`` for member ``m``),
    and every layer applies member ``m``'s rank-1 modulation to member ``m``'s rows
    (:class:`~tutorial_lib.layers.BatchConv2d`, :class:`~tutorial_lib.layers.BatchLinear`): each
    member sees every input, in training and at test time. Outputs are ``(M*B, C)``.

    Args:
        in_channels, num_classes, width: as :class:`LeNet`.
        num_estimators: number of members ``M``.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, num_estimators: int = 4, width: int = 1
    ):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}.")
        self.num_estimators, self.width = num_estimators, width
        m, w = num_estimators, width
        self.conv1 = BatchConv2d(in_channels, 6 * w, 5, m)
        self.conv2 = BatchConv2d(6 * w, 16 * w, 5, m)
        self.fc1 = BatchLinear(256 * w, 120 * w, m)
        self.fc2 = BatchLinear(120 * w, 84 * w, m)
        self.fc3 = BatchLinear(84 * w, num_classes, m)

    def feats_forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (M*B, 84 * width) per-member features, estimator-major."""
        x = x.repeat(self.num_estimators, 1, 1, 1)  # (M*B, in_channels, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 28, 28) -> (M*B, num_classes) logits, estimator-major."""
        return self.fc3(self.feats_forward(x))


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str = "model.") -> dict[str, Tensor]:
    """Drop ``prefix`` from the keys that have it (Lightning checkpoints store ``model.conv1...``);
    a state dict without any prefixed key is returned as is."""
    if not any(k.startswith(prefix) for k in state_dict):
        return dict(state_dict)
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def lenet_from_state_dict(state_dict: Mapping[str, Tensor], num_classes: int = 10) -> LeNet:
    """A LeNet loaded (``strict=True``) from a state dict, with or without the ``model.`` prefix.

    Raises:
        ValueError: the keys or shapes are not LeNet's; the message lists the differences.
    """
    weights = strip_prefix(state_dict)
    conv1 = weights.get("conv1.weight")
    shaped = isinstance(conv1, Tensor) and conv1.ndim == 4
    in_channels = int(conv1.shape[1]) if shaped else 1
    width = max(1, int(conv1.shape[0]) // 6) if shaped else 1
    model = LeNet(in_channels, num_classes, width)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"These weights are not a LeNet({in_channels}, {num_classes}): {err}"
        ) from err
    return model

"""Deep ensembles: independent members, their estimator-major outputs, and fused training.

A deep ensemble of ``M`` members maps a batch ``(B, ...)`` to ``(M*B, C)`` logits, rows
``m*B:(m+1)*B`` belonging to member ``m`` (the library's estimator-major layout).
:class:`RepeatTarget` tiles the targets to match, so a mean cross-entropy over the ``M*B`` rows
is the mean of the members' losses.

Fused training: :func:`fuse` turns a :class:`DeepEnsemble` of ``M`` LeNets into one
``PackedLeNet(alpha=M, num_estimators=M)``, whose grouped layers run all members in one kernel
per layer with the same outputs (up to float rounding); :func:`unfuse` gives the ensemble back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tutorial_lib.models import LeNet, PackedLeNet


class DeepEnsemble(nn.Module):
    """Members run one after the other; outputs concatenated estimator-major ``(M*B, C)``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.num_estimators = len(self.models)

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> (M*B, C), the same in train and eval mode."""
        return torch.cat([model(x) for model in self.models], dim=0)

    def feats_forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> (M*B, F) the members' penultimate features, estimator-major."""
        return torch.cat([model.feats_forward(x) for model in self.models], dim=0)


def _reset(module: nn.Module) -> None:
    for layer in module.modules():
        if layer is not module and hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


def deep_ensembles(
    models: nn.Module | Sequence[nn.Module],
    num_estimators: int | None = None,
    reset_model_parameters: bool = True,
) -> DeepEnsemble:
    """Build a deep ensemble.

    Args:
        models: one module, copied ``num_estimators`` times, or a list of modules used as given.
        num_estimators: number of copies of a single module (must match a list's length if set).
        reset_model_parameters: re-initialise each copy of a single module, so that the members
            start from independent random weights (the point of a deep ensemble).

    Raises:
        ValueError: a single module without ``num_estimators``, an empty list, or a count that
            does not match the list.
    """
    if isinstance(models, nn.Module):
        if num_estimators is None or num_estimators < 1:
            raise ValueError(
                f"deep_ensembles needs num_estimators >= 1 to copy one model, got {num_estimators}."
            )
        members = [copy.deepcopy(models) for _ in range(num_estimators)]
        if reset_model_parameters:
            for member in members:
                _reset(member)
        return DeepEnsemble(members)
    members = list(models)
    if not members:
        raise ValueError("deep_ensembles got an empty list of models.")
    if num_estimators is not None and num_estimators != len(members):
        raise ValueError(f"num_estimators={num_estimators} but {len(members)} models were given.")
    return DeepEnsemble(members)


class RepeatTarget(nn.Module):
    """Tile targets ``(B,)`` to ``(M*B,)`` so they match estimator-major ensemble outputs."""

    def __init__(self, num_repeats: int) -> None:
        super().__init__()
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
        self.num_repeats = num_repeats

    def forward(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``(inputs (B, ...), targets (B,))`` -> ``(inputs, targets (M*B,))``."""
        inputs, targets = batch
        return inputs, targets.repeat(self.num_repeats)


def fuse(ensemble: DeepEnsemble) -> PackedLeNet:
    """One ``PackedLeNet(alpha=M, num_estimators=M, gamma=1)`` computing what the ensemble's ``M``
    LeNets compute: its output rows ``m*B:(m+1)*B`` equal member ``m``'s logits.

    Each layer of the packed network is filled, block by block, from the members' layer of the
    same name (their weights and biases concatenated along the output dimension). Training the
    fused network with a mean loss over its ``M*B`` rows trains each member on its own loss scaled
    by ``1/M``, in one kernel per layer.

    Raises:
        ValueError: a member that is not a :class:`LeNet`, or members of different shapes.
    """
    members = list(ensemble.models)
    if not all(type(m) is LeNet for m in members):
        raise ValueError("fuse needs a DeepEnsemble of LeNets (use deep_ensembles(LeNet(), M)).")
    first = members[0]
    m = len(members)
    packed = PackedLeNet(first.conv1.in_channels, first.fc3.out_features, alpha=m,
                         num_estimators=m, width=first.width)  # fmt: skip
    with torch.no_grad():
        for name, _ in first.named_children():
            target = getattr(packed, name)
            for param in ("weight", "bias"):
                getattr(target, param).copy_(
                    torch.cat([getattr(getattr(member, name), param) for member in members])
                )
    return packed


def unfuse(packed: PackedLeNet) -> DeepEnsemble:
    """Inverse of :func:`fuse`: the ``M`` LeNets of a ``PackedLeNet(alpha=M, M, gamma=1)``.

    Raises:
        ValueError: the packed network is not a deep ensemble (``alpha != M`` or ``gamma != 1``).
    """
    m = packed.num_estimators
    if packed.alpha != m or packed.gamma != 1:
        raise ValueError(
            "unfuse needs a PackedLeNet with alpha = num_estimators and gamma = 1, got "
            f"alpha={packed.alpha:g}, num_estimators={m}, gamma={packed.gamma}."
        )
    lenets = [LeNet(packed.conv1.conv.in_channels, packed.fc3.out_features, packed.width)
              for _ in range(m)]  # fmt: skip
    with torch.no_grad():
        for name, _ in lenets[0].named_children():
            source = getattr(packed, name)
            for param in ("weight", "bias"):
                chunks = getattr(source, param).chunk(m)
                for lenet, chunk in zip(lenets, chunks, strict=True):
                    getattr(getattr(lenet, name), param).copy_(chunk)
    return DeepEnsemble(lenets)

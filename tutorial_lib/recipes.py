"""Optimisation recipes: which optimiser, which learning-rate schedule.

A recipe is what :class:`~tutorial_lib.routine.ClassificationRoutine` needs to build its
optimiser. It can be given as

- a name: ``"default"`` (this course's recipe) or ``"reference"`` (the reference tutorial's);
- a callable ``recipe(model, total_steps) -> dict`` (``total_steps`` is the number of optimiser
  steps of the whole fit, known only once the trainer is attached);
- a dict already built, with Lightning's keys ``optimizer`` and ``lr_scheduler``.

**The reference's pitfall.** The reference tutorial returns ``{"optimizer": ..., "scheduler":
...}``. Lightning only reads the key ``lr_scheduler``: it warns ("Found unsupported keys in the
optimizer configuration") and drops ``scheduler``, so the reference's learning rate never
decays. :func:`normalize_recipe` accepts that key, applies the scheduler, and warns once that
Lightning would have ignored it.

**Learning-rate multiplier for ensembles.** An ensemble's loss is the mean cross-entropy over its
``M*B`` output rows, which is (1/M) x the sum of the members' own losses: each member's gradient
is 1/M of what it would get if trained alone. Plain SGD turns that into steps M times smaller, so
the reference multiplies SGD's learning rate by M (``lr_mult``). Adam normalises each parameter's
step by the running size of its gradient, so a constant factor on the gradient cancels: the
default recipe needs no multiplier, and ``lr_mult`` is left at 1 for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

Recipe = Callable[[nn.Module, int], dict[str, Any]]


DEFAULT_LR = 0.02
REFERENCE_LR = 0.05


def default_recipe(
    model: nn.Module, total_steps: int, lr_mult: float = 1.0, lr: float | None = None
) -> dict[str, Any]:
    """AdamW with no weight decay (so, in effect, Adam), one-cycle schedule per step: the learning
    rate rises to ``DEFAULT_LR`` and decays to ~0, while beta1 cycles the other way, 0.95 -> 0.85
    -> 0.95 (OneCycleLR's momentum cycling; beta2 stays 0.98).

    The one-cycle warm-up (first 25 % of the steps) lets Adam use a large learning rate without
    diverging, and the cosine decay to ~0 settles the weights. The peak learning rate was chosen
    on the validation split (never on a test set): ``benchmarks/RESULTS.md`` records the sweep
    (learning rates x seeds, validation NLL and accuracy).
    """
    lr = (DEFAULT_LR if lr is None else lr) * lr_mult
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 8), pct_start=0.25
    )  # (one-cycle needs >= 2 steps per phase; runs under 8 steps stop early in the cycle)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def reference_recipe(
    model: nn.Module, total_steps: int, lr_mult: float = 1.0, lr: float | None = None
) -> dict[str, Any]:
    """The reference tutorial's recipe: SGD at ``REFERENCE_LR`` x ``lr_mult``, cosine annealing over
    10 epochs (stepped per epoch), with the scheduler under Lightning's key, so that it applies."""
    lr = (REFERENCE_LR if lr is None else lr) * lr_mult
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    return {"optimizer": optimizer, "lr_scheduler": scheduler}


RECIPES: dict[str, Callable[..., dict[str, Any]]] = {
    "default": default_recipe,
    "reference": reference_recipe,
}

_warned_scheduler_key = False


def normalize_recipe(recipe: Mapping[str, Any] | torch.optim.Optimizer) -> dict[str, Any] | Any:
    """Return what Lightning's ``configure_optimizers`` accepts, honouring the key ``scheduler``.

    Raises:
        ValueError: a dict without an ``optimizer``, or with both ``scheduler`` and
            ``lr_scheduler``.
    """
    global _warned_scheduler_key
    if isinstance(recipe, torch.optim.Optimizer):
        return recipe
    recipe = dict(recipe)
    if "optimizer" not in recipe:
        raise ValueError(f"An optimisation recipe needs the key 'optimizer', got {sorted(recipe)}.")
    if "scheduler" in recipe:
        if "lr_scheduler" in recipe:
            raise ValueError("The recipe has both 'scheduler' and 'lr_scheduler': keep one.")
        recipe["lr_scheduler"] = recipe.pop("scheduler")
        if not _warned_scheduler_key:
            warnings.warn(
                "The optimisation recipe uses the key 'scheduler'; Lightning only reads "
                "'lr_scheduler': it would warn and drop the scheduler (the reference tutorial's "
                "learning rate never decays). It is applied here as 'lr_scheduler'.",
                UserWarning,
                stacklevel=2,
            )
            _warned_scheduler_key = True
    return recipe


def resolve_recipe(
    recipe: str | Recipe | Mapping[str, Any] | torch.optim.Optimizer | None,
    model: nn.Module,
    total_steps: int,
    lr_mult: float = 1.0,
    lr: float | None = None,
) -> dict[str, Any] | Any:
    """Build the optimiser configuration of ``recipe`` for ``model`` (see the module docstring).

    ``lr_mult`` and ``lr`` (the peak learning rate; ``None``: the recipe's own) apply to named
    recipes only.

    Raises:
        ValueError: an unknown recipe name.
    """
    if recipe is None:
        recipe = "default"
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"Unknown recipe {recipe!r}: choose one of {sorted(RECIPES)}.")
        return RECIPES[recipe](model, total_steps, lr_mult, lr)
    if callable(recipe):
        return normalize_recipe(recipe(model, total_steps))
    return normalize_recipe(recipe)

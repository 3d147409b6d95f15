"""Split conformal prediction: the coverage guarantee on real model outputs, the textbook THR sets,
APS/RAPS behaviour, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_lib import conformal, hub
from tutorial_lib.data import TensorBatchLoader, load_split
from tutorial_lib.routine import predict


@pytest.fixture(scope="module")
def outputs(real_root):
    """The shipped 8-member ensemble's probabilities on MNIST test (real model outputs)."""
    ensemble = hub.load_pretrained_ensemble("local")
    kept = predict(ensemble, TensorBatchLoader(*load_split("MNIST", False, real_root), 2048,
                                               shuffle=False))  # fmt: skip
    return kept["probs"], kept["targets"]


@pytest.mark.parametrize("method", conformal.METHODS)
@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_marginal_coverage_over_200_random_splits(outputs, method, alpha):
    probs, targets = outputs
    member = probs[:, 0]  # one network: errors enough for the sets to matter
    g = torch.Generator().manual_seed(0)
    covered = []
    for _ in range(200):
        order = torch.randperm(len(targets), generator=g)
        cal, test = order[:2000], order[2000:]
        sets = conformal.conformal_sets(member[cal], targets[cal], member[test], alpha, method,
                                        generator=g)  # fmt: skip
        covered.append(conformal.coverage(sets, targets[test]))
    mean = sum(covered) / len(covered)
    assert mean >= 1 - alpha - 0.01
    if method == "thr":  # tight, not trivially full: at most 1 - alpha + 1/(n+1) on average
        assert mean <= 1 - alpha + 0.01


def test_thr_sets_are_the_textbook_definition(outputs):
    probs, targets = outputs
    p = probs[:, 3].double()
    cal, test = slice(0, 500), slice(500, 700)
    alpha = 0.05
    scores = sorted(1 - float(p[i, targets[i]]) for i in range(500))
    q = scores[math.ceil(501 * (1 - alpha)) - 1]  # the ceil((n+1)(1-alpha))-th smallest
    expected = torch.tensor([[1 - float(p[i, c]) <= q for c in range(10)]
                             for i in range(500, 700)])  # fmt: skip
    sets = conformal.conformal_sets(p[cal], targets[cal], p[test], alpha, "thr")
    assert torch.equal(sets, expected)


def test_aps_and_raps_scores_follow_their_definitions():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    aps = conformal.class_scores(probs, "aps", generator=g)
    # class 2 of input 0: 0.5 + 0.3 ranked above it, plus u * 0.2
    assert float(aps[0, 2]) == pytest.approx(0.8 + float(u[0]) * 0.2)
    assert float(aps[1, 1]) == pytest.approx(float(u[1]) * 0.6)  # the top class: u * p
    raps = conformal.class_scores(probs, "raps", torch.Generator().manual_seed(0), lam=0.5,
                                  k_reg=1)  # fmt: skip
    assert float(raps[0, 2]) == pytest.approx(float(aps[0, 2]) + 0.5 * 2)  # rank 3: 2 over k_reg
    assert float(raps[0, 0]) == pytest.approx(float(aps[0, 0]))  # rank 1: no penalty


def test_sets_grow_as_alpha_shrinks_and_class_coverage(outputs):
    probs, targets = outputs
    member = probs[:, 0]
    sizes = [
        float(conformal.conformal_sets(member[:3000], targets[:3000], member[3000:], a, "aps",
                                       torch.Generator().manual_seed(1)).sum(1).float().mean())
        for a in (0.2, 0.05, 0.01)
    ]  # fmt: skip
    assert sizes[0] <= sizes[1] <= sizes[2]
    sets = conformal.conformal_sets(member[:3000], targets[:3000], member[3000:], 0.05)
    per_class = conformal.class_coverage(sets, targets[3000:])
    assert per_class.shape == (10,)
    counts = torch.bincount(targets[3000:], minlength=10).double()
    assert float((per_class * counts).sum() / counts.sum()) == pytest.approx(
        conformal.coverage(sets, targets[3000:]))  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\)"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\)"),
        ({"alpha": 0.001}, "too few for alpha"),
        ({"method": "lac"}, "method must be one of"),
    ],
)
def test_bad_input(kwargs, match):
    probs = torch.full((50, 4), 0.25)
    targets = torch.zeros(50, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        conformal.conformal_sets(probs, targets, probs, **({"alpha": 0.1} | kwargs))
    with pytest.raises(ValueError, match="sum to 1"):
        conformal.conformal_sets(probs * 2, targets, probs)
    with pytest.raises(ValueError, match="classes"):
        conformal.conformal_sets(probs, targets, torch.full((5, 5), 0.2))


@pytest.mark.parametrize(
    ("lam", "k_reg", "match"),
    [(math.nan, 2, "lam"), (-0.1, 2, "lam"), (0.01, -1, "k_reg"), (0.01, 1.5, "k_reg")],
)
def test_raps_refuses_a_penalty_that_would_empty_the_sets(lam, k_reg, match):
    probs = torch.full((20, 4), 0.25)
    targets = torch.zeros(20, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        conformal.conformal_sets(probs, targets, probs, method="raps", lam=lam, k_reg=k_reg)

"""Temperature scaling: recovers a known T, scales ensembles as a whole, rejects bad input."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_lib.calibration import apply_temperature, ensemble_logits, fit_temperature


def nll(logits, targets, t):
    return float(torch.nn.functional.cross_entropy(logits / t, targets))


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_recovers_a_known_temperature(true_t):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40_000, 10, generator=g, dtype=torch.float64) * 3
    targets = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    # labels drawn from softmax(base): the logits base * true_t are calibrated at T = true_t
    t = fit_temperature(base * true_t, targets)
    assert t == pytest.approx(true_t, rel=0.03)


def test_is_the_minimum_of_the_nll_to_1e3():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2000, 5, generator=g) * 4
    targets = torch.randint(0, 5, (2000,), generator=g)
    t = fit_temperature(logits, targets)
    grid = torch.linspace(0.5 * t, 1.5 * t, 2001)
    best = min(grid.tolist(), key=lambda v: nll(logits.double(), targets, v))
    assert abs(t - best) < 1e-3 * t
    assert nll(logits.double(), targets, t) <= nll(logits.double(), targets, t * 1.01)
    assert nll(logits.double(), targets, t) <= nll(logits.double(), targets, t * 0.99)


def test_ensembles_are_scaled_on_the_log_of_their_mean():
    g = torch.Generator().manual_seed(2)
    probs = torch.randn(50, 3, 4, generator=g).softmax(-1)
    logits = ensemble_logits(probs)
    torch.testing.assert_close(logits.exp(), probs.double().mean(1))
    scaled = apply_temperature(probs, 2.0)
    torch.testing.assert_close(scaled, (probs.double().mean(1).log() / 2).softmax(-1))
    assert torch.equal(scaled.argmax(-1), probs.mean(1).argmax(-1))  # accuracy never changes
    single = torch.randn(20, 4, generator=g)
    torch.testing.assert_close(apply_temperature(single.softmax(-1), 3.0),
                               (single.double() / 3).softmax(-1))  # fmt: skip


def test_all_right_predictions_sharpen_to_the_range_end():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (torch.tensor([[math.nan, 0.0]]), torch.tensor([0]), "finite"),
        (torch.tensor([[math.inf, 0.0]]), torch.tensor([0]), "finite"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), r"targets must be \(3,\)"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "N > 0"),
        (torch.zeros(3), torch.tensor([0, 1, 0]), "N > 0, C >= 2"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), "targets must lie in"),
    ],
)
def test_bad_input(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, targets)


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(torch.full((2, 2), 0.5), 0.0)


def test_probabilities_passed_as_logits_are_refused():
    torch.manual_seed(0)
    logits = torch.randn(500, 10) * 4
    targets = torch.distributions.Categorical(logits=logits / 2).sample()
    with pytest.raises(ValueError, match=r"got probabilities .* pass the logits"):
        fit_temperature(logits.softmax(-1), targets)  # silently a wrong T before
    assert fit_temperature(ensemble_logits(logits.softmax(-1)), targets) == pytest.approx(
        fit_temperature(logits, targets), rel=1e-3
    )  # the remedy the message names

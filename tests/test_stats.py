"""The verdict rule: its A/A error rate, its power, and the corner cases a results file has."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tutorial_lib import stats

ALPHA = 0.05


def _false_verdicts(seeds: int, spread_b: float, trials: int, rng) -> float:
    """The fraction of A/A comparisons (same mean) that say "better" or "worse"."""
    said = 0
    for _ in range(trials):
        a, b = rng.normal(0.9, 0.01, seeds), rng.normal(0.9, 0.01 * spread_b, seeds)
        said += stats.verdict(a, b, higher_is_better=True) != "not distinguishable"
    return said / trials


@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("spread_b", [1.0, 0.02, 50.0])  # equal and very unequal spreads
def test_a_a_false_verdicts_at_most_alpha(seeds, spread_b):
    trials = 3000
    rate = _false_verdicts(seeds, spread_b, trials, np.random.default_rng(seeds))
    # the simulation's own error: 3 standard errors of a rate of alpha
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials), rate


def test_the_old_rule_was_wrong_more_often_than_alpha():
    """|mean difference| > std_a + std_b, the rule this replaces, over 3 seeds with one spread
    near zero: about 22 % false verdicts, which the new rule brings to 5 %."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, (4000, 3)), rng.normal(0, 0.01, (4000, 3))
    old = np.abs(a.mean(1) - b.mean(1)) > a.std(1, ddof=1) + b.std(1, ddof=1)
    assert old.mean() > 0.15
    assert _false_verdicts(3, 0.01, 2000, rng) < 0.075


@pytest.mark.parametrize("seeds", [3, 5])
def test_detectable_difference_is_found_80_percent_of_the_time(seeds):
    delta = stats.detectable_difference(seeds)
    rng = np.random.default_rng(100 + seeds)
    trials = 3000
    found = sum(
        stats.verdict(rng.normal(delta, 1, seeds), rng.normal(0, 1, seeds),
                      higher_is_better=True) == "better"
        for _ in range(trials)
    )  # fmt: skip
    assert abs(found / trials - 0.8) < 3 * math.sqrt(0.8 * 0.2 / trials)
    # what the module's docstring says
    assert round(stats.detectable_difference(3), 1) == 3.5
    assert round(stats.detectable_difference(5), 1) == 2.1


def test_the_paired_detectable_difference_is_found_80_percent_of_the_time():
    delta = stats.detectable_difference(5, paired=True)  # independent pairs: the worst case
    rng = np.random.default_rng(7)
    trials = 3000
    found = sum(
        stats.verdict(rng.normal(delta, 1, 5), rng.normal(0, 1, 5), higher_is_better=True,
                      paired=True) == "better"
        for _ in range(trials)
    )  # fmt: skip
    assert abs(found / trials - 0.8) < 3 * math.sqrt(0.8 * 0.2 / trials)
    assert delta > stats.detectable_difference(5)  # 4 degrees of freedom instead of about 8


def test_directions_and_corner_cases():
    high, low = [0.99, 0.98, 0.99, 0.985], [0.90, 0.91, 0.905, 0.90]
    assert stats.verdict(high, low, higher_is_better=True) == "better"
    assert stats.verdict(high, low, higher_is_better=False) == "worse"
    assert stats.verdict(low, high, higher_is_better=True) == "worse"
    # identical constants: nothing to tell apart; different constants: an exact difference
    assert stats.verdict([1.0] * 3, [1.0] * 3, higher_is_better=True) == "not distinguishable"
    assert stats.verdict([2.0] * 3, [1.0] * 3, higher_is_better=False) == "worse"
    # the 3-seed example: overlapping seeds are not distinguishable
    assert stats.verdict([0.98, 0.99, 0.97], [0.975, 0.985, 0.98],
                         higher_is_better=True) == "not distinguishable"  # fmt: skip
    with pytest.raises(ValueError, match="one seed: no verdict, run --seeds N"):
        stats.verdict([0.9], [0.8, 0.85], higher_is_better=True)
    with pytest.raises(ValueError, match="NaN"):
        stats.verdict([0.9, math.nan], [0.8, 0.85], higher_is_better=True)
    with pytest.raises(ValueError, match="alpha"):
        stats.verdict(high, low, higher_is_better=True, alpha=0)


def test_p_value_is_welchs():
    from scipy.stats import ttest_ind

    a, b = [0.91, 0.93, 0.92, 0.95], [0.90, 0.905, 0.91]
    assert stats.p_value(a, b) == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    summary = (np.mean(a), np.std(a, ddof=1), 4, np.mean(b), np.std(b, ddof=1), 3)
    assert stats.summary_p_value(*summary) == pytest.approx(stats.p_value(a, b))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.summary_p_value(0.9, 0.0, 1, 0.9, 0.1, 3)


def test_holm_steps_down_and_stops():
    p = {"a": 0.01, "b": 0.015, "c": 0.04, "d": 0.3}
    # 0.01 < 0.05/4, 0.015 < 0.05/3, 0.04 >= 0.05/2: stop there
    assert stats.holm(p) == {"a": True, "b": True, "c": False, "d": False}
    assert stats.holm({"a": 0.0126, "b": 0.001}) == {"a": True, "b": True}
    assert stats.holm({"a": 0.06, "b": 0.03, "c": 0.0}) == {"a": False, "b": False, "c": True}


def test_holm_keeps_the_family_wise_rate_of_a_line():
    """Four metrics, two identical models: the chance that any of the four says "better" or
    "worse" stays at most alpha (uncorrected, it would be about 1 - 0.95^4 = 19 %)."""
    rng = np.random.default_rng(3)
    trials, any_said = 1500, 0
    for _ in range(trials):
        pairs = {k: (rng.normal(0, 1, 5), rng.normal(0, 1, 5), True) for k in "abcd"}
        any_said += any(v != "not distinguishable" for v in stats.verdicts(pairs).values())
    assert any_said / trials <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
    clear = {"acc": ([0.99, 0.98, 0.99], [0.90, 0.91, 0.90], True),
             "nll": ([0.5, 0.6, 0.55], [0.5, 0.6, 0.55], False)}  # fmt: skip
    assert stats.verdicts(clear) == {"acc": "better", "nll": "not distinguishable"}


def test_the_paired_test_keeps_its_error_rate_and_gains_power():
    """A/A pairs that share each seed's luck (correlation 0.9): at most alpha false verdicts;
    a real difference of half a seed-to-seed spread is found far more often than unpaired."""
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(5)
    trials, said, found_paired, found_welch = 3000, 0, 0, 0
    for _ in range(trials):
        luck = rng.normal(0, 1, 5)  # each seed's network, shared by its two values
        a, b = luck + rng.normal(0, 0.45, 5), luck + rng.normal(0, 0.45, 5)
        said += stats.verdict(a, b, higher_is_better=True, paired=True) != "not distinguishable"
        found_paired += stats.verdict(a + 0.5, b, higher_is_better=True, paired=True) == "better"
        found_welch += stats.verdict(a + 0.5, b, higher_is_better=True) == "better"
    assert said / trials <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
    assert found_paired > 2 * found_welch
    a, b = [0.91, 0.93, 0.92, 0.95], [0.90, 0.905, 0.91, 0.93]
    assert stats.paired_p_value(a, b) == pytest.approx(ttest_rel(a, b).pvalue)
    assert stats.paired_p_value([1.0, 2.0], [0.5, 1.5]) == 0.0  # the same difference every time
    assert stats.paired_p_value([1.0, 2.0], [1.0, 2.0]) == 1.0
    with pytest.raises(ValueError, match="one b per a"):
        stats.paired_p_value([1.0, 2.0, 3.0], [1.0, 2.0])
    pairs = {"x": (a, b, True), "y": (b, b, False)}
    assert stats.verdicts(pairs, paired=True) == {"x": "better", "y": "not distinguishable"}


def test_difference_interval_is_welchs_and_covers_the_true_difference_95_percent_of_the_time():
    a, b = [1.0, 2.0, 4.0], [0.0, 0.5, 1.0, 0.5]
    low, high = stats.difference_interval(a, b)
    # at its ends the difference is exactly on the edge of Welch's test at 5 %
    assert stats.p_value([x - low for x in a], b) == pytest.approx(0.05, abs=1e-9)
    assert stats.p_value([x - high for x in a], b) == pytest.approx(0.05, abs=1e-9)
    assert low < (7 / 3 - 0.5) < high
    assert stats.difference_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5)  # no spread: exact
    with pytest.raises(ValueError, match="level must be in"):
        stats.difference_interval(a, b, level=95)
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(4000):  # 3 seeds against 3, very unequal spreads, a true difference of 1
        x, y = rng.normal(1.0, 0.2, 3), rng.normal(0.0, 1.0, 3)
        low, high = stats.difference_interval(x, y)
        covered += low <= 1.0 <= high
    assert 0.94 <= covered / 4000 <= 0.97  # Welch is nearly exact here (about 95 %)

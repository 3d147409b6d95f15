"""Is one model better than another? A test over seeds whose error rate is stated.

Each model was trained with several seeds; a metric gives one value per seed, ``a`` for the
candidate and ``b`` for the baseline. :func:`verdict` runs **Welch's t-test** on the two
samples: it compares the means, lets the two models have different spreads, and does not need
the models to share seeds. It says ``"better"`` or ``"worse"`` when the two-sided p-value is below
``alpha``, and ``"not distinguishable"`` otherwise.

What the words mean:

- When two models are in fact the same (an A/A comparison), :func:`verdict` says "better" or
  "worse" in at most ``alpha`` of comparisons (5 % by default); ``tests/test_stats.py``
  simulates this for 3 and 5 seeds, with equal and very unequal spreads.
- "not distinguishable" is **not** "equal": the difference may be real but too small for this
  many seeds to see. :func:`detectable_difference` gives the size of difference the test finds
  80 % of the time: about 3.5 standard deviations (of one model's seed-to-seed spread) with 3
  seeds, about 2.1 with 5.
- The seeds are the only source of noise weighed: each model is scored on the same test images,
  and the sampling noise of those 10,000 images is not included (no bootstrap over images).
- Each call is one test. A line that weighs several metrics must correct for them:
  :func:`holm` keeps the chance of any false "better/worse" in the line at most ``alpha``.
- :func:`difference_interval` gives the differences the seeds cannot rule out (Welch's
  confidence interval): what "not distinguishable" leaves open.

**Paired comparisons.** When ``a[i]`` and ``b[i]`` come from the same trained network (one
model scored on two sets, or by two scores), the seeds pair them: ``paired=True`` runs the
paired t-test on the differences ``a[i] - b[i]`` instead (Student's t with n - 1 degrees of
freedom). It has the same error rate, and more power when the network's luck moves both values
together.

The t-test assumes the per-seed values are roughly normal; with 3 to 5 seeds nobody can check
that, which is one more reason to read "not distinguishable" as "no evidence", nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _scipy

VERDICTS = ("better", "worse", "not distinguishable")


def _sample(values: Sequence[float], name: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"{name} has {len(values)} value(s): a verdict needs at least 2 seeds "
                         "per model (one seed: no verdict, run --seeds N).")  # fmt: skip
    if any(math.isnan(v) for v in values):
        raise ValueError(f"{name} has a NaN value: no verdict.")
    return values


def p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean.

    Two samples with no spread at all: 1.0 if their means are equal, 0.0 if not (their
    difference is then exact).

    Raises:
        ValueError: fewer than 2 values in a sample, or a NaN.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    return summary_p_value(*_summary(a), *_summary(b))


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that ``a[i] - b[i]`` has mean 0 (``a[i]`` and
    ``b[i]`` measured on the same seed's network).

    Differences with no spread at all: 1.0 if they are all 0, 0.0 if not.

    Raises:
        ValueError: fewer than 2 pairs, samples of different lengths, or a NaN.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a paired test needs one b per a, got {len(a)} and {len(b)} values.")
    mean, std, n = _summary([x - y for x, y in zip(a, b, strict=True)])
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * _scipy.t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))


def _summary(values: list[float]) -> tuple[float, float, int]:
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (len(values) - 1))
    return mean, std, len(values)


def summary_p_value(
    mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int
) -> float:
    """:func:`p_value` from each sample's mean, sample standard deviation (ddof 1) and size: for
    results that kept only those (e.g. ``data/results/pareto.json``)."""
    if min(n_a, n_b) < 2:
        raise ValueError("a verdict needs at least 2 seeds per model (one seed: no verdict, run "
                         "--seeds N).")  # fmt: skip
    se, df = _welch(std_a, n_a, std_b, n_b)
    if se == 0:
        return 1.0 if mean_a == mean_b else 0.0
    return float(2 * _scipy.t.sf(abs(mean_a - mean_b) / se, df))


def _welch(std_a: float, n_a: int, std_b: float, n_b: int) -> tuple[float, float]:
    """The standard error of ``mean(a) - mean(b)`` and its Welch-Satterthwaite degrees of
    freedom (NaN when the standard error is 0)."""
    se2_a, se2_b = std_a**2 / n_a, std_b**2 / n_b
    if se2_a + se2_b == 0:
        return 0.0, math.nan
    df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    return math.sqrt(se2_a + se2_b), df


def difference_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float]:
    """Welch's confidence interval for ``mean(a) - mean(b)``: the differences that
    :func:`p_value` would not reject at ``1 - level``.

    "Not distinguishable" says a difference was not found; this says how large a difference the
    seeds cannot rule out. With 3 seeds it is wide. One interval for one metric: a line that
    weighs several metrics would need a wider one for each.

    Raises:
        ValueError: fewer than 2 values in a sample, a NaN, or ``level`` outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    mean_a, std_a, n_a = _summary(_sample(a, "a"))
    mean_b, std_b, n_b = _summary(_sample(b, "b"))
    se, df = _welch(std_a, n_a, std_b, n_b)
    half = float(_scipy.t.ppf(0.5 + level / 2, df)) * se if se else 0.0
    return mean_a - mean_b - half, mean_a - mean_b + half


def _direction(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> str:
    ahead = math.fsum(a) / len(a) > math.fsum(b) / len(b)
    return "better" if ahead == higher_is_better else "worse"


def verdict(
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    paired: bool = False,
) -> str:
    """``"better"``, ``"worse"`` (``a`` against ``b``) or ``"not distinguishable"``.

    Args:
        a, b: one metric's per-seed values for the candidate and the baseline (at least 2 each).
        higher_is_better: the metric's direction.
        alpha: the test's level: the chance of "better" or "worse" when the two are the same.
        paired: ``a[i]`` and ``b[i]`` come from the same seed's network: the paired t-test.

    Raises:
        ValueError: fewer than 2 values in a sample, a NaN, or ``alpha`` not in (0, 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if (paired_p_value(a, b) if paired else p_value(a, b)) >= alpha:
        return "not distinguishable"
    return _direction(a, b, higher_is_better)


def holm(p_values: Mapping[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down correction: ``{name: rejected}``, with a family-wise error rate (the
    chance of rejecting any true null hypothesis) at most ``alpha``.

    The k-th smallest of m p-values is compared with alpha / (m - k + 1); the first that fails
    stops the procedure, and it and every larger one is kept."""
    ordered = sorted(p_values, key=lambda name: p_values[name])
    rejected = dict.fromkeys(p_values, False)
    for k, name in enumerate(ordered):
        if p_values[name] >= alpha / (len(ordered) - k):
            break
        rejected[name] = True
    return rejected


def verdicts(
    pairs: Mapping[str, tuple[Sequence[float], Sequence[float], bool]],
    alpha: float = 0.05,
    paired: bool = False,
) -> dict[str, str]:
    """Verdicts on several metrics at once, Holm-corrected: ``{key: verdict}``.

    Args:
        pairs: ``{key: (a, b, higher_is_better)}``.
        alpha: the family-wise level: the chance that any of the verdicts says "better" or
            "worse" when the two models are the same on every metric.
        paired: every ``a[i]``, ``b[i]`` come from the same seed's network (see :func:`verdict`).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    test = paired_p_value if paired else p_value
    rejected = holm({key: test(a, b) for key, (a, b, _) in pairs.items()}, alpha)
    return {
        key: _direction(a, b, better) if rejected[key] else "not distinguishable"
        for key, (a, b, better) in pairs.items()
    }


def _paired_p_values(differences: np.ndarray) -> np.ndarray:
    """:func:`paired_p_value` of many samples of differences at once: (S, n) -> (S,)."""
    n = differences.shape[1]
    t = differences.mean(1) / (differences.std(1, ddof=1) / np.sqrt(n))
    return 2 * _scipy.t.sf(np.abs(t), n - 1)


def _welch_p_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`p_value` of many pairs of samples at once: a (S, n), b (S, n') -> (S,)."""
    se2_a, se2_b = a.var(1, ddof=1) / a.shape[1], b.var(1, ddof=1) / b.shape[1]
    t = (a.mean(1) - b.mean(1)) / np.sqrt(se2_a + se2_b)
    df = (se2_a + se2_b) ** 2 / (se2_a**2 / (a.shape[1] - 1) + se2_b**2 / (b.shape[1] - 1))
    return 2 * _scipy.t.sf(np.abs(t), df)


def detectable_difference(
    seeds: int,
    alpha: float = 0.05,
    power: float = 0.8,
    simulations: int = 20_000,
    paired: bool = False,
) -> float:
    """The difference of means, in units of the seed-to-seed standard deviation (the same for
    both models), that :func:`verdict` detects with probability ``power`` when each model has
    ``seeds`` seeds.

    Found by simulating the test itself on normal samples (fixed random numbers, so the answer
    is the same every call, to about 1 %): a closed form would assume the pooled t-test, whose
    degrees of freedom Welch's test does not have. With ``paired``, the paired test on pairs
    whose two values are independent: its worst case (a seed's luck shared by both values makes
    the difference easier to find).
    """
    if seeds < 2:
        raise ValueError(f"seeds must be at least 2, got {seeds}.")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((simulations, seeds)), rng.standard_normal((simulations, seeds))
    low, high = 0.0, 20.0
    for _ in range(40):  # bisection: the power grows with the difference
        middle = (low + high) / 2
        p = _paired_p_values(a + middle - b) if paired else _welch_p_values(a + middle, b)
        found = np.mean(p < alpha)
        low, high = (middle, high) if found < power else (low, middle)
    return high

"""The exercises' checker: a right answer passes, a wrong one says what differs, a stub lets the
chapter go on with the library's version."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_lib import exercises

# --- solutions as a student would write them (from the formulas, not from the library) ---------


def ece(conf, correct, n_bins=15):
    index = torch.clamp((conf * n_bins).floor().long(), max=n_bins)  # 1.0: a bin of its own
    total = 0.0
    for b in range(n_bins + 1):
        inside = index == b
        if inside.any():
            total += inside.sum() * (correct[inside].mean() - conf[inside].mean()).abs()
    return float(total / len(conf))


def nll(probs, targets):
    return float(-probs[torch.arange(len(targets)), targets].log().mean())


def brier(probs, targets):
    onehot = torch.nn.functional.one_hot(targets, probs.shape[1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(1).mean())


def entropy(p):
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def mutual_information(member_probs):
    return entropy(member_probs.mean(1)) - entropy(member_probs).mean(1)


def disagreement(member_probs):
    votes = member_probs.argmax(-1)  # (N, M)
    m = votes.shape[1]
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    return torch.stack([(votes[:, i] != votes[:, j]).double() for i, j in pairs]).mean(0)


def packed_linear(x, weight, bias, groups):
    blocks = weight.reshape(groups, -1, weight.shape[1])  # one (out / G, in / G) block per group
    return x @ torch.block_diag(*blocks).T + bias


def risk_coverage(conf, errors):
    order = torch.sort(conf, descending=True, stable=True).indices
    k = torch.arange(1, len(conf) + 1, dtype=torch.float64)
    return k / len(conf), errors[order].double().cumsum(0) / k


def aurc(conf, errors):
    coverage, risk = risk_coverage(conf, errors)
    return float(torch.trapezoid(risk, coverage) / (1 - 1 / len(conf)))


def fit_temperature(logits, targets):
    grid = torch.linspace(math.log(0.01), math.log(100), 4001, dtype=torch.float64)
    losses = [torch.nn.functional.cross_entropy(logits / t.exp(), targets) for t in grid]
    best = int(torch.stack(losses).argmin())
    return float(grid[best].exp())


def conformal_quantile(scores, alpha):
    rank = math.ceil((len(scores) + 1) * (1 - alpha))
    return float(scores.sort().values[rank - 1])


def thr_sets(cal_probs, cal_targets, test_probs, alpha):
    scores = 1 - cal_probs[torch.arange(len(cal_targets)), cal_targets]
    return 1 - test_probs <= conformal_quantile(scores, alpha)


def fpr95(id_conf, ood_conf):
    # flag inputs below a confidence threshold; the highest one that catches 95 % of OOD inputs
    for threshold in (-torch.cat([id_conf, ood_conf]).double()).unique().flip(0):  # high to low
        caught = (-ood_conf.double() >= threshold).double().mean()
        if caught >= 0.95:
            return float((-id_conf.double() >= threshold).double().mean())
    return 1.0


def contrast(images, severity):
    factor = (1, 0.6, 0.4, 0.3, 0.2, 0.1)[severity]
    x = images.double() / 255
    mean = x.mean(dim=(1, 2), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


def energy(logits):
    return logits.mean(1).logsumexp(-1)


def packed_params(in_features, out_features, alpha, members, gamma):
    wide_in, wide_out = int(in_features * alpha), int(out_features * alpha)
    groups = members * gamma  # block-diagonal: each group sees 1/groups of the inputs
    return wide_out * (wide_in // groups) + wide_out


def brier_decomposition(conf, correct, q):
    levels, group = conf.unique(return_inverse=True)
    c = torch.stack([correct[group == k].mean() for k in range(len(levels))])[group]  # E[Y | S]
    return tuple(float((2 * (a - b) ** 2).mean()) for a, b in ((conf, c), (c, q), (q, correct)))


def expected_entropy(member_probs):
    return entropy(member_probs).mean(1)


def blend(first, second, weight):
    return (weight * first.double() + (1 - weight) * second.double()).round().to(torch.uint8)


SOLUTIONS = {name: globals()[name] for name in exercises.EXERCISES}


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_a_right_answer_passes_and_is_returned(name, capsys):
    assert exercises.check(name, SOLUTIONS[name]) is SOLUTIONS[name]
    assert capsys.readouterr().out.startswith(f"{name}: right on all")


def test_there_are_at_least_twelve_in_at_least_six_chapters():
    assert len(exercises.EXERCISES) >= 12
    assert len({e.chapter for e in exercises.EXERCISES.values()}) >= 7


@pytest.mark.parametrize(
    ("name", "wrong", "message"),
    [
        ("ece", lambda c, k, n=15: ece(c, k, 10), r"ece, on 500 random confidences: .*expected"),
        ("ece", lambda c, k, n=15: ece(c.clamp(max=0.999), k, n), r"exactly 1.0"),  # 1.0 merged
        ("mutual_information", lambda p: mutual_information(p)[:, None], r"shape \(100, 1\)"),
        ("disagreement", lambda p: disagreement(p) * 2, r"at index \(\d+,\)"),
        (
            "packed_linear",
            lambda x, w, b, g: x @ w.T + b if g == 1 else (x @ w.repeat(1, g).T + b),
            r"2 group\(s\)",
        ),  # a dense layer: the blocks off the diagonal are not zero
        ("aurc", lambda c, e: float(risk_coverage(c, e)[1].mean()), r"aurc, on .*expected"),
        ("conformal_quantile", lambda s, a: float(s.quantile(1 - a)), r"999 scores, alpha 0.1"),
        ("thr_sets", lambda cp, ct, tp, a: thr_sets(cp, ct, tp, a)[:, :-1], r"shape \(100, 9\)"),
        ("energy", lambda z: z.logsumexp(-1).mean(1), r"energy, on 50 inputs"),  # mean of members
        ("expected_entropy", lambda p: entropy(p.mean(1)), r"expected_entropy, on 100 inputs"),
        (  # C taken over every input, not per confidence level
            "brier_decomposition",
            lambda s, y, q: tuple(
                float((2 * (a - b) ** 2).mean()) for a, b in ((s, y.mean()), (y.mean(), q), (q, y))
            ),
            r"brier_decomposition, on two confidence levels",
        ),
        (  # 0 log 0 taken as NaN
            "expected_entropy",
            lambda p: -(p * p.log()).sum(-1).mean(1),
            r"two one-hot members that disagree: .*nan",
        ),
        # uint8 + uint8 wraps round past 255
        ("blend", lambda a, b, w: ((a + b) / 2).round().byte(), r"4 random pairs, half and half"),
        ("contrast", lambda x, s: contrast(x, max(s - 1, 1)), r"severity 3: at index"),
        (
            "packed_params",
            lambda i, o, a, m, g: packed_params(i, o, a, m, 1),  # gamma forgotten
            r"packed_params, on in 120, out 84, alpha 2, M 4, gamma 2: 10248, expected 5208",
        ),
    ],
)
def test_a_wrong_answer_says_what_differs(name, wrong, message, capsys):
    with pytest.raises(AssertionError, match=message):
        exercises.check(name, wrong)
    assert "right on all" not in capsys.readouterr().out


def test_a_stub_lets_the_chapter_go_on_with_the_library(capsys):
    def stub(*args):
        raise NotImplementedError

    fallback = exercises.check("aurc", stub)
    assert "not done yet" in capsys.readouterr().out
    conf, errors = torch.tensor([0.9, 0.1]), torch.tensor([0.0, 1.0])
    assert fallback(conf, errors) == pytest.approx(aurc(conf, errors))
    with pytest.raises(KeyError, match="No exercise 'ecee'"):
        exercises.check("ecee", stub)


def test_a_function_that_changes_its_input_cannot_fool_the_check():
    def sorts_in_place(conf, errors):
        conf.copy_(conf.sort(descending=True).values)  # mutates what it was given
        return aurc(conf, errors)

    with pytest.raises(AssertionError):
        exercises.check("aurc", sorts_in_place)

"""Exercises students write, checked against the library.

Each exercise is one idea of a chapter in 5-20 lines: the calibration error with its bins, the
mutual-information decomposition, a packed (block-diagonal) layer, the risk-coverage curve, the
temperature fit, the conformal quantile... A chapter asks for a function, then calls
:func:`check`::

    def ece(conf, correct, n_bins=15):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    ece = check("ece", ece)

:func:`check` runs the student's function and the library's on the same inputs, random ones and
edge cases (a confidence of exactly 1, one sample, ties, ...). A wrong function raises an
``AssertionError`` that says what differs: the shape, or the value on which input. A right one
prints a pass line. An unfinished one (``raise NotImplementedError``, the stub of the student
edition) prints that it is not done yet; ``check`` then returns the library's function, so that
the chapter runs on.

:data:`EXERCISES` lists them, with the chapter each belongs to and its signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

Case = tuple[str, tuple[Any, ...]]  # (what the input is, the arguments)


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it is, what to write, the library's answer and the inputs it is
    checked on."""

    chapter: str
    signature: str
    reference: Callable[..., Any]
    cases: Callable[[torch.Generator], Iterator[Case]]
    rtol: float = 1e-5
    atol: float = 1e-6


# --- the library's answers ---------------------------------------------------------------------


def _ece(conf: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    from tutorial_lib.metrics.calibration import calibration_bins

    counts, acc, avg = calibration_bins(conf.double(), correct.double(), n_bins)
    return float((counts * (acc - avg).abs()).sum() / counts.sum())


def _nll(probs: Tensor, targets: Tensor) -> float:
    from tutorial_lib.metrics.classification import NegativeLogLikelihood

    metric = NegativeLogLikelihood()
    metric.update(probs.double(), targets)
    return float(metric.compute())


def _brier(probs: Tensor, targets: Tensor) -> float:
    from tutorial_lib.metrics.classification import BrierScore

    metric = BrierScore()
    metric.update(probs.double(), targets)
    return float(metric.compute())


def _mutual_information(member_probs: Tensor) -> Tensor:
    from tutorial_lib.metrics.classification import entropy

    probs = member_probs.double()
    return entropy(probs.mean(1)) - entropy(probs).mean(1)


def _disagreement(member_probs: Tensor) -> Tensor:
    from tutorial_lib.metrics.diversity import disagreement

    return disagreement(member_probs)


def _packed_linear(x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    from tutorial_lib.layers import PackedLinear

    ext_in, ext_out = weight.shape[1] * groups, weight.shape[0]
    # a PackedLinear with these widths: alpha = 1, `groups` members of one group each
    layer = PackedLinear(ext_in, ext_out, alpha=1, num_estimators=groups)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        return layer(x)


def _risk_coverage(conf: Tensor, errors: Tensor) -> tuple[Tensor, Tensor]:
    from tutorial_lib.metrics.selective import risk_coverage_curve

    return risk_coverage_curve(conf, errors)


def _aurc(conf: Tensor, errors: Tensor) -> float:
    from tutorial_lib.metrics.selective import aurc, risk_coverage_curve

    return aurc(*risk_coverage_curve(conf, errors))


def _fit_temperature(logits: Tensor, targets: Tensor) -> float:
    from tutorial_lib.calibration import fit_temperature

    return fit_temperature(logits, targets)


def _conformal_quantile(scores: Tensor, alpha: float) -> float:
    from tutorial_lib.conformal import conformal_quantile

    return conformal_quantile(scores, alpha)


def _thr_sets(cal_probs: Tensor, cal_targets: Tensor, test_probs: Tensor, alpha: float) -> Tensor:
    from tutorial_lib.conformal import conformal_sets

    return conformal_sets(cal_probs, cal_targets, test_probs, alpha, method="thr")


def _fpr95(id_conf: Tensor, ood_conf: Tensor) -> float:
    from tutorial_lib.metrics.ood import fpr_at_recall

    scores = -torch.cat([id_conf, ood_conf]).double()  # higher = more OOD, the positive class
    is_ood = torch.cat([torch.zeros(len(id_conf)), torch.ones(len(ood_conf))]).bool()
    return fpr_at_recall(scores, is_ood, 0.95)


def _contrast(images: Tensor, severity: int) -> Tensor:
    from tutorial_lib.corruptions import contrast

    return contrast(images, severity, torch.Generator())


def _packed_params(in_features: int, out_features: int, alpha: float, members: int,
                   gamma: int) -> int:  # fmt: skip
    from tutorial_lib.layers import PackedLinear

    layer = PackedLinear(in_features, out_features, alpha, members, gamma)  # a hidden layer
    return sum(p.numel() for p in layer.parameters())


def _energy(logits: Tensor) -> Tensor:
    from tutorial_lib.metrics.ood import ood_scores

    return ood_scores(logits)["energy"]


def _brier_decomposition(conf: Tensor, correct: Tensor, q: Tensor) -> tuple[float, ...]:
    from tutorial_lib.metrics.grouping import brier_decomposition

    return tuple(brier_decomposition(conf, correct, q).values())


def _expected_entropy(member_probs: Tensor) -> Tensor:
    from tutorial_lib.metrics.classification import entropy

    return entropy(member_probs.double()).mean(1)


def _blend(first: Tensor, second: Tensor, weight: float) -> Tensor:
    from tutorial_lib.data import blend

    return blend(first, second, weight)


# --- the inputs they are checked on -----------------------------------------------------------


def _probs(g: torch.Generator, *shape: int, sharp: float = 3.0) -> Tensor:
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * sharp).softmax(-1)


def _labels(g: torch.Generator, n: int, c: int = 10) -> Tensor:
    return torch.randint(0, c, (n,), generator=g)


def _ece_cases(g: torch.Generator) -> Iterator[Case]:
    conf = torch.rand(500, generator=g, dtype=torch.float64) * 0.9 + 0.1
    correct = (torch.rand(500, generator=g, dtype=torch.float64) < conf).double()
    yield "500 random confidences", (conf, correct)
    yield "the same with 10 bins", (conf, correct, 10)
    yield "confidences of exactly 1.0 (a bin of their own)", (
        torch.tensor([1.0, 1.0, 0.95, 0.5], dtype=torch.float64),
        torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))  # fmt: skip
    yield "one sample", (torch.tensor([0.7], dtype=torch.float64),
                         torch.tensor([1.0], dtype=torch.float64))  # fmt: skip
    yield "a confidence on a bin edge (0.2)", (
        torch.tensor([0.2, 0.2, 0.4], dtype=torch.float64),
        torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))  # fmt: skip


def _probs_targets_cases(g: torch.Generator) -> Iterator[Case]:
    yield "200 random predictions, 10 classes", (_probs(g, 200, 10), _labels(g, 200))
    yield "one-hot right predictions (loss 0)", (F.one_hot(torch.arange(5), 5).double(),
                                                 torch.arange(5))  # fmt: skip
    yield "uniform predictions, 3 classes", (torch.full((4, 3), 1 / 3, dtype=torch.float64),
                                             torch.tensor([0, 1, 2, 0]))  # fmt: skip


def _members_cases(g: torch.Generator) -> Iterator[Case]:
    yield "100 inputs, 4 members, 10 classes", (_probs(g, 100, 4, 10),)
    yield "members that agree exactly", (_probs(g, 6, 1, 5).expand(6, 3, 5).clone(),)
    yield "two one-hot members that disagree", (
        torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64),)  # fmt: skip


def _packed_cases(g: torch.Generator) -> Iterator[Case]:
    for groups, ext_in, ext_out in ((1, 6, 4), (2, 8, 6), (4, 16, 8)):
        yield (
            f"{groups} group(s), {ext_in} -> {ext_out}",
            (
                torch.randn(5, ext_in, generator=g),
                torch.randn(ext_out, ext_in // groups, generator=g),
                torch.randn(ext_out, generator=g),
                groups,
            ),
        )


def _selective_cases(g: torch.Generator) -> Iterator[Case]:
    conf = torch.rand(300, generator=g, dtype=torch.float64)
    errors = (torch.rand(300, generator=g, dtype=torch.float64) > conf).double()
    yield "300 random confidences", (conf, errors)
    yield "no error at all", (conf, torch.zeros(300, dtype=torch.float64))
    yield "every error the most confident", (
        torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64),
        torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))  # fmt: skip


def _temperature_cases(g: torch.Generator) -> Iterator[Case]:
    for true_t in (0.5, 2.0):
        logits = torch.randn(2000, 10, generator=g, dtype=torch.float64) * 3
        targets = torch.multinomial((logits / true_t).softmax(-1), 1, generator=g).squeeze(1)
        yield f"2,000 samples drawn at T = {true_t}", (logits, targets)


def _quantile_cases(g: torch.Generator) -> Iterator[Case]:
    scores = torch.rand(999, generator=g, dtype=torch.float64)
    yield "999 scores, alpha 0.1", (scores, 0.1)
    yield "999 scores, alpha 0.05", (scores, 0.05)
    yield "19 scores, alpha 0.05 (the largest score)", (scores[:19], 0.05)


def _sets_cases(g: torch.Generator) -> Iterator[Case]:
    yield "500 calibration, 100 test inputs, alpha 0.1", (
        _probs(g, 500, 10), _labels(g, 500), _probs(g, 100, 10), 0.1)  # fmt: skip
    yield "the same at alpha 0.3", (_probs(g, 500, 10), _labels(g, 500), _probs(g, 100, 10), 0.3)


def _fpr_cases(g: torch.Generator) -> Iterator[Case]:
    yield "500 ID and 400 OOD confidences", (
        torch.rand(500, generator=g, dtype=torch.float64) * 0.5 + 0.5,
        torch.rand(400, generator=g, dtype=torch.float64))  # fmt: skip
    yield "perfectly separated", (torch.tensor([0.9, 0.8]), torch.tensor([0.3, 0.2]))
    yield "ties between ID and OOD", (torch.tensor([0.9, 0.5, 0.5]), torch.tensor([0.5, 0.1]))


def _image_cases(g: torch.Generator) -> Iterator[Case]:
    images = torch.randint(0, 256, (6, 28, 28), generator=g, dtype=torch.uint8)
    for severity in (1, 3, 5):
        yield f"6 random images at severity {severity}", (images, severity)
    yield "a blank image (nothing to scale)", (torch.zeros(1, 28, 28, dtype=torch.uint8), 5)


def _decomposition_cases(g: torch.Generator) -> Iterator[Case]:
    n = 2000
    feature = torch.randn(n, generator=g, dtype=torch.float64)
    q = torch.where(feature > 0, 1.0, 0.5).double()
    correct = (torch.rand(n, generator=g, dtype=torch.float64) < q).double()
    yield (
        "one confidence level (0.75) for every input",
        (torch.full((n,), 0.75).double(), correct, q),
    )
    conf = torch.where(feature > 1, 0.9, 0.6).double()  # two levels, each mixing both groups
    yield "two confidence levels", (conf, correct, q)
    yield "a predictor that knows Q", (q.clone(), correct, q)


def _blend_cases(g: torch.Generator) -> Iterator[Case]:
    a, b = (torch.randint(0, 256, (4, 28, 28), generator=g, dtype=torch.uint8) for _ in "ab")
    yield "4 random pairs, half and half", (a, b, 0.5)
    yield "the same pairs, 0.8 of the first", (a, b, 0.8)
    white, black = torch.full((1, 28, 28), 255, dtype=torch.uint8), torch.zeros(1, 28, 28).byte()
    yield "white over black, 0.3 of white (no overflow of uint8)", (white, black, 0.3)


def _packed_params_cases(g: torch.Generator) -> Iterator[Case]:
    for args in ((120, 84, 2.0, 4, 1), (120, 84, 2.0, 4, 2), (480, 336, 2.0, 4, 2),
                 (400, 120, 1.0, 2, 1), (16, 16, 4.0, 4, 1), (240, 168, 2.0, 4, 3)):  # fmt: skip
        yield f"in {args[0]}, out {args[1]}, alpha {args[2]:g}, M {args[3]}, gamma {args[4]}", args


def _logits_cases(g: torch.Generator) -> Iterator[Case]:
    yield "50 inputs, 3 members, 10 classes", (torch.randn(50, 3, 10, generator=g) * 4,)
    yield "one member", (torch.randn(8, 1, 4, generator=g),)
    yield "large logits (logsumexp must not overflow)", (
        torch.tensor([[[1000.0, 999.0, 0.0]]], dtype=torch.float64),)  # fmt: skip


EXERCISES: dict[str, Exercise] = {
    "ece": Exercise("01", "ece(conf (N,), correct (N,), n_bins=15) -> float", _ece, _ece_cases),
    "nll": Exercise("01", "nll(probs (N, C), targets (N,)) -> float", _nll, _probs_targets_cases),
    "brier": Exercise(
        "01", "brier(probs (N, C), targets (N,)) -> float", _brier, _probs_targets_cases
    ),  # fmt: skip
    "mutual_information": Exercise(
        "02",
        "mutual_information(member_probs (N, M, C)) -> (N,)",
        _mutual_information,
        _members_cases,
    ),  # fmt: skip
    "disagreement": Exercise(
        "02", "disagreement(member_probs (N, M, C)) -> (N,)", _disagreement, _members_cases
    ),  # fmt: skip
    "packed_linear": Exercise(
        "03",
        "packed_linear(x (B, in), weight (out, in / G), bias (out,), groups G) -> (B, out)",
        _packed_linear,
        _packed_cases,
        rtol=1e-4,
        atol=1e-5,
    ),  # fmt: skip
    "risk_coverage": Exercise(
        "04",
        "risk_coverage(conf (N,), errors (N,)) -> (coverage, risk)",
        _risk_coverage,
        _selective_cases,
    ),  # fmt: skip
    "aurc": Exercise("04", "aurc(conf (N,), errors (N,)) -> float", _aurc, _selective_cases),
    "fit_temperature": Exercise(
        "07",
        "fit_temperature(logits (N, C), targets (N,)) -> float",
        _fit_temperature,
        _temperature_cases,
        rtol=1e-3,
    ),  # fmt: skip
    "conformal_quantile": Exercise(
        "07",
        "conformal_quantile(scores (n,), alpha) -> float",
        _conformal_quantile,
        _quantile_cases,
    ),  # fmt: skip
    "thr_sets": Exercise(
        "07",
        "thr_sets(cal_probs (n, C), cal_targets (n,), test_probs (N, C), alpha) -> (N, C) bool",
        _thr_sets,
        _sets_cases,
    ),  # fmt: skip
    "fpr95": Exercise("01", "fpr95(id_conf (N,), ood_conf (N',)) -> float", _fpr95, _fpr_cases),
    "contrast": Exercise(
        "06",
        "contrast(images (N, 28, 28) uint8, severity 1-5) -> uint8 images",
        _contrast,
        _image_cases,
        rtol=0.0,
        atol=1.0,  # one grey level: a rounding may differ
    ),
    "packed_params": Exercise(
        "09",
        "packed_params(in_features, out_features, alpha, M, gamma) -> int: a hidden packed "
        "linear layer's weights and biases",
        _packed_params,
        _packed_params_cases,
        rtol=0.0,
        atol=0.0,
    ),
    "brier_decomposition": Exercise(
        "05",
        "brier_decomposition(conf (N,), correct (N,), q (N,)) -> (calibration, grouping, "
        "irreducible) on the two-class Brier scale",
        _brier_decomposition,
        _decomposition_cases,
    ),  # fmt: skip
    "expected_entropy": Exercise(
        "10",
        "expected_entropy(member_probs (N, M, C)) -> (N,): the mean of the members' entropies",
        _expected_entropy,
        _members_cases,
    ),  # fmt: skip
    "blend": Exercise(
        "10",
        "blend(first (N, 28, 28) uint8, second (N, 28, 28) uint8, weight) -> (N, 28, 28) uint8",
        _blend,
        _blend_cases,
        rtol=0.0,
        atol=1.0,  # one grey level: a rounding may differ
    ),
    "energy": Exercise(
        "08",
        "energy(logits (N, M, C)) -> (N,): logsumexp of the mean logits",
        _energy,
        _logits_cases,
    ),  # fmt: skip
}


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value


def _compare(name: str, what: str, expected: Any, got: Any, exercise: Exercise) -> None:
    """Raise AssertionError saying what differs between ``got`` and ``expected``."""
    where = f"{name}, on {what}"
    if isinstance(expected, tuple):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            raise AssertionError(f"{where}: expected a tuple of {len(expected)}, got "
                                 f"{type(got).__name__}.")  # fmt: skip
        for i, (e, o) in enumerate(zip(expected, got, strict=True)):
            _compare(name, f"{what} (item {i})", e, o, exercise)
        return
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            raise AssertionError(f"{where}: expected a tensor, got {type(got).__name__}.")
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"{where}: shape {tuple(got.shape)}, expected "
                                 f"{tuple(expected.shape)}.")  # fmt: skip
        if expected.dtype == torch.bool:
            wrong = (got.bool() != expected).nonzero()
            if len(wrong):
                raise AssertionError(f"{where}: {len(wrong)} entries differ, first at index "
                                     f"{tuple(wrong[0].tolist())}.")  # fmt: skip
            return
        close = torch.isclose(got.double(), expected.double(), exercise.rtol, exercise.atol)
        if not bool(close.all()):
            at = tuple((~close).nonzero()[0].tolist())
            raise AssertionError(f"{where}: at index {at}, {float(got.double()[at]):.6g}, "
                                 f"expected {float(expected.double()[at]):.6g}.")  # fmt: skip
        return
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise AssertionError(f"{where}: expected a number, got {type(got).__name__}.") from None
    if not math.isclose(value, float(expected), rel_tol=exercise.rtol, abs_tol=exercise.atol):
        raise AssertionError(f"{where}: {value:.6g}, expected {float(expected):.6g}.")


def check(name: str, fn: Callable[..., Any], seed: int = 0) -> Callable[..., Any]:
    """Check the student's ``fn`` for exercise ``name`` against the library.

    Returns:
        ``fn`` when it matches the library on every input; the library's function when ``fn`` is
        not written yet (it raises ``NotImplementedError``), so that the chapter goes on.

    Raises:
        KeyError: no such exercise.
        AssertionError: ``fn`` differs from the library: the message names the input and what
            differs (shape, or the first value that is off).
    """
    if name not in EXERCISES:
        raise KeyError(f"No exercise {name!r}: choose among {', '.join(EXERCISES)}.")
    exercise = EXERCISES[name]
    g = torch.Generator().manual_seed(seed)
    cases = list(exercise.cases(g))
    for what, args in cases:
        expected = exercise.reference(*map(_copy, args))
        try:
            got = fn(*map(_copy, args))
        except NotImplementedError:
            print(f"{name}: not done yet, the chapter goes on with the library's version.")
            return exercise.reference
        _compare(name, what, expected, got, exercise)
    print(f"{name}: right on all {len(cases)} inputs (random ones and edge cases).")
    return fn

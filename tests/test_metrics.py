"""Metrics: hand-computed cases, an independent NumPy computation of every definition, properties
and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tutorial_lib.metrics import UncertaintyMetrics, evaluate_predictions, grouping_loss
from tutorial_lib.metrics.calibration import adaptive_calibration_error
from tutorial_lib.metrics.ood import fpr_at_recall
from tutorial_lib.metrics.selective import risk_coverage_curve


def random_fixture(seed: int, members: int, n: int = 600, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, members, classes, generator=g) * 2
    logits[torch.arange(n), :, targets] += 2.0
    ood = torch.randn(n // 2, members, classes, generator=g)
    return logits.softmax(-1), targets, ood.softmax(-1)


# --- an independent NumPy reading of the definitions (issue 4) --------------------------------


def np_entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def np_ece(conf, correct, n_bins=15, norm="l1"):
    bins = np.minimum(np.floor(conf * n_bins).astype(int), n_bins)  # conf == 1.0: own bin
    gaps, weights = [], []
    for b in range(n_bins + 1):
        mask = bins == b
        if mask.any():
            gaps.append(abs(correct[mask].mean() - conf[mask].mean()))
            weights.append(mask.mean())
    gaps, weights = np.array(gaps), np.array(weights)
    return np.max(gaps) if norm == "max" else np.sum(gaps * weights)


def np_aece(conf, correct, n_bins=15):
    order = np.argsort(conf, kind="stable")
    conf, correct = conf[order], correct[order]
    n = len(conf)
    sizes = [n // n_bins + (1 if b < n % n_bins else 0) for b in range(n_bins)]
    total, start = 0.0, 0
    for size in sizes:
        if size:
            total += (
                size
                / n
                * abs(correct[start : start + size].mean() - conf[start : start + size].mean())
            )
        start += size
    return total


def np_selective(conf, errors):
    order = np.argsort(-conf, kind="stable")
    e = errors[order]
    n = len(e)
    k = np.arange(1, n + 1)
    risk, cov = np.cumsum(e) / k, k / n
    trap = lambda y: np.sum((y[1:] + y[:-1]) / 2 * np.diff(cov)) / (1 - 1 / n)  # noqa: E731
    ok5, ok1 = np.nonzero(risk <= 0.05)[0], np.nonzero(risk <= 0.01)[0]
    return {
        "sc/AURC": trap(risk),
        "sc/E-AURC": trap(risk) - trap(np.cumsum(np.sort(e)) / k),
        "sc/AUGRC": trap(cov * risk),
        "sc/Cov@5Risk": cov[ok5[-1]] if len(ok5) else math.nan,
        "sc/Cov@1Risk": cov[ok1[-1]] if len(ok1) else math.nan,
        "sc/Risk@80Cov": risk[math.ceil(0.8 * n) - 1],
    }


def np_ood(id_conf, ood_conf):
    scores = np.concatenate([-id_conf, -ood_conf])
    pos = np.concatenate([np.zeros(len(id_conf)), np.ones(len(ood_conf))]).astype(bool)
    # AUROC: probability that a random OOD sample scores above a random ID one (ties: 1/2)
    diff = (-ood_conf)[:, None] - (-id_conf)[None, :]
    auroc = np.mean((diff > 0) + 0.5 * (diff == 0))
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], pos[order]
    ends = np.r_[np.nonzero(s[1:] != s[:-1])[0], len(s) - 1]
    tp, fp = np.cumsum(y)[ends], ends + 1 - np.cumsum(y)[ends]
    precision, recall = tp / (tp + fp), tp / pos.sum()
    ap = np.sum(np.diff(np.r_[0, recall]) * precision)
    fpr95 = fp[np.nonzero(recall >= 0.95)[0][0]] / (~pos).sum()
    return {"ood/AUROC": auroc, "ood/AUPR": ap, "ood/FPR95": fpr95}


def np_diversity(p):
    n, m, c = p.shape
    preds = p.argmax(-1)
    counts = np.stack([(preds == k).sum(1) for k in range(c)], 1)
    dis = 1 - (counts * (counts - 1) / 2).sum(1) / (m * (m - 1) / 2)
    expected = np_entropy(p).mean(1)
    return dis.mean(), expected.mean(), (np_entropy(p.mean(1)) - expected).mean()


def np_all(probs, targets, ood):
    p, y, po = probs.double().numpy(), targets.numpy(), ood.double().numpy()
    mean, ood_mean = p.mean(1), po.mean(1)
    conf, pred = mean.max(1), mean.argmax(1)
    correct = (pred == y).astype(float)
    one_hot = np.eye(mean.shape[1])[y]
    out = {
        "cls/Acc": correct.mean(),
        "cls/Brier": ((mean - one_hot) ** 2).sum(1).mean(),
        "cls/NLL": -np.log(mean[np.arange(len(y)), y]).mean(),
        "cls/Entropy": np_entropy(mean).mean(),
        "cal/ECE": np_ece(conf, correct),
        "cal/MCE": np_ece(conf, correct, norm="max"),
        "cal/aECE": np_aece(conf, correct),
        "ood/Entropy": np_entropy(ood_mean).mean(),
    }
    out |= np_selective(conf, 1 - correct)
    out |= np_ood(conf, ood_mean.max(1))
    if p.shape[1] > 1:
        for prefix, arr in (("ens/", p), ("ood/ens_", po)):
            d, e, mi = np_diversity(arr)
            out |= {prefix + "Disagreement": d, prefix + "Entropy": e, prefix + "MI": mi}
    return out


@pytest.mark.parametrize(("seed", "members"), [(0, 1), (1, 4), (2, 2), (3, 8)])
def test_every_metric_matches_numpy(seed, members):
    probs, targets, ood = random_fixture(seed, members)
    ours = evaluate_predictions(probs, targets, ood)
    expected = np_all(probs, targets, ood)
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_keys_depend_on_members_and_ood():
    probs, targets, ood = random_fixture(0, 1, n=50)
    single = evaluate_predictions(probs[:, 0], targets)  # (N, C) works as one model
    assert not any(k.startswith(("ens/", "ood/")) for k in single)
    assert "cls/Acc" in single and "sc/AURC" in single
    ens = evaluate_predictions(random_fixture(0, 3, n=50)[0], targets, None)
    assert {"ens/Disagreement", "ens/Entropy", "ens/MI"} <= set(ens)
    assert not any(k.startswith("ood/") for k in ens)


# --- hand-computed cases ---------------------------------------------------------------------


def test_hand_computed_classification_and_calibration():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    targets = torch.tensor([0, 1, 1, 0])
    r = evaluate_predictions(probs, targets)
    assert r["cls/Acc"] == pytest.approx(0.75)
    brier = [(0.1**2 + 0.1**2), (0.6**2 + 0.6**2), (0.3**2 + 0.3**2), (0.2**2 + 0.2**2)]
    assert r["cls/Brier"] == pytest.approx(sum(brier) / 4)
    assert r["cls/NLL"] == pytest.approx(
        -(math.log(0.9) + math.log(0.4) + math.log(0.7) + math.log(0.8)) / 4
    )
    # confidences 0.9, 0.6, 0.7, 0.8 fall in 4 different bins of width 1/15
    assert r["cal/ECE"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4, abs=1e-6)
    assert r["cal/MCE"] == pytest.approx(0.6, abs=1e-6)


def test_hand_computed_selective():
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6])
    errors = torch.tensor([0.0, 1.0, 0.0, 1.0])
    coverage, risk = risk_coverage_curve(conf, errors)
    assert risk.tolist() == pytest.approx([0, 0.5, 1 / 3, 0.5])
    probs = torch.stack([conf, 1 - conf], 1)
    targets = torch.tensor([0, 1, 0, 1])
    r = evaluate_predictions(probs, targets)
    area = (0 + 0.5) / 2 * 0.25 + (0.5 + 1 / 3) / 2 * 0.25 + (1 / 3 + 0.5) / 2 * 0.25
    assert r["sc/AURC"] == pytest.approx(area / 0.75)
    assert r["sc/Cov@5Risk"] == pytest.approx(0.25)
    assert r["sc/Risk@80Cov"] == pytest.approx(0.5)  # k = ceil(3.2) = 4


def test_hand_computed_fpr_with_ties():
    scores = torch.tensor([0.9, 0.8, 0.8, 0.5, 0.4])
    is_ood = torch.tensor([1, 1, 0, 0, 1]).bool()
    # 95 % of 3 OOD needs all 3: threshold 0.4 flags both ID samples
    assert fpr_at_recall(scores, is_ood, 0.95) == 1.0
    # 2/3 recall is reached at the end of the tie group {0.8, 0.8}: one ID sample flagged
    assert fpr_at_recall(scores, is_ood, 0.6) == 0.5


def test_hand_computed_diversity():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    r = evaluate_predictions(probs, torch.tensor([0, 0]))
    assert r["ens/Disagreement"] == pytest.approx(0.5)  # first sample: the 2 members disagree
    assert r["ens/Entropy"] == pytest.approx(math.log(2) / 2)  # expected entropy
    assert r["ens/MI"] == pytest.approx(math.log(2) / 2)  # first: log 2 - 0; second: 0


# --- properties ---------------------------------------------------------------------------------


def test_ece_of_calibrated_predictor_tends_to_zero():
    g = torch.Generator().manual_seed(0)
    values = []
    for n in (1_000, 100_000):
        conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
        correct = torch.rand(n, generator=g, dtype=torch.float64) < conf
        targets = torch.where(correct, 0, 1)
        probs = torch.stack([conf, 1 - conf], 1)
        values.append(evaluate_predictions(probs, targets)["cal/ECE"])
    assert values[1] < values[0] and values[1] < 0.01


def test_aurc_of_perfect_ranking_is_minimal():
    probs, targets, _ = random_fixture(5, 1, n=300)
    mean = probs[:, 0]
    correct = mean.argmax(-1) == targets
    # same predictions, confidence re-ordered so every right answer outranks every wrong one
    conf = torch.where(correct, 0.99, 0.5) - 1e-4 * torch.rand(300, dtype=torch.float64)
    perfect = torch.zeros_like(mean, dtype=torch.float64)
    perfect[torch.arange(300), mean.argmax(-1)] = conf
    perfect += ((1 - conf) / 9)[:, None] * (perfect == 0)
    r_perfect = evaluate_predictions(perfect, targets)
    r_model = evaluate_predictions(mean, targets)
    assert r_perfect["cls/Acc"] == pytest.approx(r_model["cls/Acc"])
    assert r_perfect["sc/AURC"] < r_model["sc/AURC"]
    e = 1 - r_model["cls/Acc"]  # AURC of the oracle, in closed form for this definition
    n = 300
    risks = np.maximum(0, np.arange(1, n + 1) - round((1 - e) * n)) / np.arange(1, n + 1)
    oracle = np.sum((risks[1:] + risks[:-1]) / 2) / n / (1 - 1 / n)
    assert r_perfect["sc/AURC"] == pytest.approx(oracle)


def test_diversity_bounds_and_batching_invariance():
    probs, targets, ood = random_fixture(7, 5, n=1000)
    whole = evaluate_predictions(probs, targets, ood)
    assert 0 <= whole["ens/Disagreement"] <= 1 and whole["ens/MI"] >= 0
    assert whole["ood/ens_MI"] >= 0
    streamed = UncertaintyMetrics(10, ensemble=True, ood=True)
    for chunk in range(0, 1000, 128):
        streamed.update(probs[chunk : chunk + 128], targets[chunk : chunk + 128])
    for chunk in range(0, 500, 77):
        streamed.update_ood(ood[chunk : chunk + 77])
    batched = streamed.compute()
    for key, value in whole.items():
        assert batched[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    streamed.reset()
    streamed.update(probs[:10], targets[:10])
    streamed.update_ood(ood[:10])
    assert (
        streamed.compute()["cls/Acc"] == evaluate_predictions(probs[:10], targets[:10])["cls/Acc"]
    )


def test_aece_splits_like_tensor_split():
    conf = torch.linspace(0.1, 1.0, 17, dtype=torch.float64)
    correct = (torch.arange(17) % 3 == 0).double()
    assert float(adaptive_calibration_error(conf, correct, 15)) == pytest.approx(
        np_aece(conf.numpy(), correct.numpy())
    )


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "targets", "match"),
    [
        (torch.tensor([[0.5, float("nan")]]), torch.tensor([0]), "NaN or inf"),
        (torch.tensor([[1.5, -0.5]]), torch.tensor([0]), "negative"),
        (torch.tensor([[0.6, 0.6]]), torch.tensor([0]), "sum to 1"),
        (torch.tensor([[2.0, 1.0]]), torch.tensor([0]), "softmax"),
        (torch.empty(0, 3), torch.tensor([], dtype=torch.long), "empty"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0]), "shape"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), "targets must be"),
        (torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 2]), "lie in"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0]), "N >= 2"),
    ],
)
def test_bad_inputs_raise_value_errors(probs, targets, match):
    with pytest.raises(ValueError, match=match):
        evaluate_predictions(probs, targets)


def test_bad_ood_inputs():
    probs, targets, _ = random_fixture(0, 2, n=20)
    with pytest.raises(ValueError, match="M >= 2"):
        evaluate_predictions(probs, targets, torch.full((5, 10), 0.1))
    with pytest.raises(ValueError, match="classes"):
        evaluate_predictions(probs, targets, torch.full((5, 2, 5), 0.2))


# --- grouping loss --------------------------------------------------------------------------------


def grouping_fixture(n=4000, seed=0):
    """A calibrated-on-average predictor whose errors depend on a hidden feature: confidence 0.75
    everywhere, but right 100 % of the time when feature > 0 and 50 % otherwise."""
    g = torch.Generator().manual_seed(seed)
    feature = torch.randn(n, 3, generator=g)
    right = torch.where(
        feature[:, 0] > 0, torch.ones(n), (torch.rand(n, generator=g) < 0.5).float()
    )
    targets = torch.where(right.bool(), 0, 1)
    probs = torch.tensor([0.75, 0.25]).expand(n, 2)
    return probs, targets, feature


def test_grouping_loss_sees_hidden_heterogeneity_and_is_deterministic():
    probs, targets, feature = grouping_fixture()
    ece = evaluate_predictions(probs, targets)["cal/ECE"]
    gl = grouping_loss(probs, targets, feature, random_state=0)
    assert set(gl) == {"GL", "GL_uncorrected", "GL_bias", "GL_induced"}
    assert ece < 0.03  # calibrated on average...
    # ...but not within groups: the true posterior Q is 1 or 0.5 around the confidence 0.75.
    # GLest uses the two-class Brier score, 2 (p - y)^2, so GL = 2 E[(Q - 0.75)^2] = 0.125
    assert gl["GL"] == pytest.approx(0.125, abs=0.02)
    assert gl["GL"] == pytest.approx(gl["GL_uncorrected"] - gl["GL_bias"] - gl["GL_induced"])
    assert grouping_loss(probs, targets, feature, random_state=0) == gl
    noise = torch.randn_like(feature)
    assert abs(grouping_loss(probs, targets, noise, random_state=0)["GL"]) < 0.01


def test_grouping_loss_for_ensembles_and_errors():
    probs, targets, _ = random_fixture(1, 3, n=800)
    feats = torch.randn(800, 3, 6)
    gl = grouping_loss(probs, targets, feats, random_state=1)
    assert gl == grouping_loss(probs, targets, feats, random_state=1)
    with pytest.raises(ValueError, match="features"):
        grouping_loss(probs, targets, torch.randn(10, 6))
    right = probs.mean(1).argmax(-1)
    with pytest.raises(ValueError, match="right and wrong"):
        grouping_loss(probs, right, feats)


def test_threshold_for_risk_on_held_out_data():
    from tutorial_lib.metrics.selective import threshold_for_risk

    conf = torch.tensor([0.99, 0.95, 0.95, 0.9, 0.8, 0.7])
    errors = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    # accepted sets: {0.99}: 0 -> {0.99, 0.95, 0.95}: 1/3 -> {.., 0.9}: 1/4 -> ...: 2/5, 3/6
    assert threshold_for_risk(conf, errors, 0.25) == pytest.approx(0.9)
    assert threshold_for_risk(conf, errors, 0.1) == pytest.approx(0.99)  # a tie is never split
    assert threshold_for_risk(conf, torch.ones(6), 0.1) == math.inf


# --- edge cases: layouts, low precision, empty and out-of-range input --------------------------


def test_id_and_ood_must_share_one_layout():
    probs, targets, ood = random_fixture(0, 4, n=50)
    with pytest.raises(ValueError, match="must be \\(N, M >= 2, C\\), got M = 1"):
        evaluate_predictions(probs, targets, ood[:, 0])
    with pytest.raises(ValueError, match="M = 2 members"):
        evaluate_predictions(probs, targets, ood[:, :2])
    single = probs[:, 0]
    with pytest.raises(ValueError, match="M = 4 members, earlier updates had M = 1"):
        evaluate_predictions(single, targets, ood)
    stream = UncertaintyMetrics(10, ensemble=True)
    stream.update(probs[:25], targets[:25])
    with pytest.raises(ValueError, match="M = 2 members, earlier updates had M = 4"):
        stream.update(probs[25:, :2], targets[25:])
    stream.reset()
    stream.update(probs[:25, :2], targets[:25])  # after a reset any layout may start again


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_probabilities_are_accepted_and_computed_in_float64(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=g) * 3
    targets = torch.randint(0, 10, (500,), generator=g)
    exact = evaluate_predictions(logits.softmax(-1), targets)
    low = evaluate_predictions(logits.softmax(-1).to(dtype), targets)
    assert math.isfinite(low["cls/NLL"])
    tolerance = 0.02 if dtype == torch.bfloat16 else 0.002
    for key in ("cls/Acc", "cls/NLL", "cls/Brier", "cal/ECE"):
        assert low[key] == pytest.approx(exact[key], abs=tolerance), key


def test_infinite_nll_is_reported_with_a_warning():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with pytest.warns(RuntimeWarning, match="NLL is infinite"):
        result = evaluate_predictions(probs, torch.tensor([1, 1]))
    assert result["cls/NLL"] == math.inf


def test_helpers_reject_empty_and_out_of_range_input():
    from tutorial_lib.metrics import complexity
    from tutorial_lib.metrics.calibration import calibration_bins
    from tutorial_lib.metrics.diversity import disagreement
    from tutorial_lib.metrics.selective import threshold_for_risk

    scores, is_ood = torch.tensor([0.1, 0.9]), torch.tensor([False, True])
    for level in (1.5, 0.0, -0.1):
        with pytest.raises(ValueError, match="recall_level"):
            fpr_at_recall(scores, is_ood, recall_level=level)
    with pytest.raises(ValueError, match="both ID and OOD"):
        fpr_at_recall(scores, torch.tensor([True, True]))
    with pytest.raises(ValueError, match="non-empty"):
        threshold_for_risk(torch.tensor([]), torch.tensor([]), 0.1)
    with pytest.raises(ValueError, match="target_risk"):
        threshold_for_risk(torch.tensor([0.5]), torch.tensor([0.0]), 1.5)
    with pytest.raises(ValueError, match="M >= 2"):
        disagreement(torch.full((3, 1, 2), 0.5))
    with pytest.raises(ValueError, match="non-empty"):
        adaptive_calibration_error(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="non-empty"):
        calibration_bins(torch.tensor([]), torch.tensor([]))
    cost = complexity(torch.nn.Flatten())  # no parameters: counted on the CPU, not a crash
    assert cost["params"] == 0 and cost["flops_per_image"] == 0
    probs, targets, _ = random_fixture(0, 1, n=10)
    with pytest.raises(ValueError, match="at least 20 samples"):
        grouping_loss(probs, targets, torch.randn(10, 4))


def test_calibration_bins_are_the_ece_of_the_tables():
    from tutorial_lib.metrics.calibration import calibration_bins

    probs, targets, _ = random_fixture(3, 3, n=2000)
    mean = probs.double().mean(1)
    mean[:7] = torch.nn.functional.one_hot(targets[:7], 10).double()  # confidence exactly 1.0
    conf, pred = mean.max(-1)
    counts, acc, avg = calibration_bins(conf, pred == targets)
    assert counts.shape == (16,) and counts[-1] == 7 and counts.sum() == 2000
    ece = float((counts * (acc - avg).abs()).sum() / counts.sum())
    assert ece == pytest.approx(evaluate_predictions(mean, targets)["cal/ECE"], abs=1e-12)
    assert counts[0] == int((conf < 1 / 15).sum())  # bin 0 holds [0, 1/15)


def test_tie_group_ends_and_roc_curve():
    from tutorial_lib.metrics.ood import roc_curve
    from tutorial_lib.metrics.ranking import tie_group_ends

    assert tie_group_ends(torch.tensor([3, 3, 2, 1, 1, 1])).tolist() == [1, 2, 5]
    with pytest.raises(ValueError):
        tie_group_ends(torch.tensor([]))
    scores = torch.tensor([0.9, 0.8, 0.8, 0.3, 0.1])
    is_ood = torch.tensor([True, False, True, False, False])
    fpr, tpr = roc_curve(scores, is_ood)
    # thresholds after 0.9, after the 0.8 tie, after 0.3, after 0.1
    assert fpr.tolist() == [0, 0, 1 / 3, 2 / 3, 1] and tpr.tolist() == [0, 0.5, 1, 1, 1]
    from torchmetrics.functional.classification import binary_auroc

    auroc = float(binary_auroc(scores, is_ood.long()))
    assert float(torch.trapezoid(tpr, fpr)) == pytest.approx(auroc)  # the ROC behind AUROC


def test_throughput_times_inference_and_restores_the_mode():
    from tutorial_lib.metrics import throughput
    from tutorial_lib.models import LeNet

    calls = []
    model = LeNet().train()
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    rate = throughput(model, torch.zeros(10, 1, 28, 28), batch_size=4, repeats=2)
    assert rate > 0 and model.training  # measured in eval mode, the mode restored
    assert calls == [4, 4, 2] * 3  # one warm-up pass and two timed passes, in batches of 4
    with pytest.raises(ValueError, match="repeats"):
        throughput(model, torch.zeros(1, 1, 28, 28), repeats=0)


def test_complexity_counts_per_image_and_per_batch_and_restores_the_mode():
    from tutorial_lib.metrics import complexity

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    model.train()
    cost = complexity(model, input_size=(4, 1, 28, 28), batch_size=16)
    per_image = 2 * 784 * 10  # one matrix product: 2 x multiply-adds, divided by the probe's B=4
    assert cost == {"params": 7850, "flops_per_image": per_image, "flops_batch": 16 * per_image,
                    "batch_size": 16}  # fmt: skip
    assert model.training


def test_boundaries_one_bin_full_recall_and_absent_classes():
    from tutorial_lib.metrics.calibration import AdaptiveCalibrationError, CalibrationError
    from tutorial_lib.metrics.classification import BrierScore
    from tutorial_lib.metrics.diversity import disagreement
    from tutorial_lib.metrics.ood import OODDetection

    probs = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]], dtype=torch.float64)
    targets = torch.tensor([0, 0, 1])  # class 2 never occurs, nor is it ever predicted
    # one bin is allowed: the ECE is then |mean confidence - accuracy| = |0.667 - 1/3|
    for metric in (CalibrationError(n_bins=1), AdaptiveCalibrationError(n_bins=1)):
        metric.update(probs, targets)
        assert float(metric.compute()) == pytest.approx(2 / 3 - 1 / 3)
    brier = BrierScore()
    brier.update(probs, targets)  # one-hot over all 3 columns, not over the classes seen
    expected = ((0.1**2 + 0.1**2) + (0.7**2 + 0.6**2 + 0.1**2) + (0.5**2 + 0.6**2 + 0.1**2)) / 3
    assert float(brier.compute()) == pytest.approx(expected)
    members = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]], [[0.6, 0.4, 0.0], [0.7, 0.3, 0.0]]])
    assert disagreement(members).tolist() == [1.0, 0.0]  # class 2 is never anyone's argmax
    scores, is_ood = torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([False, False, True, True])
    assert fpr_at_recall(scores, is_ood, recall_level=1.0) == 0.0  # full recall is allowed
    detection = OODDetection(recall_level=1.0)
    detection.update(1 - scores, is_ood)  # it scores 1 - confidence
    assert detection.compute()["FPR100"] == 0.0
    for level in (0.0, 1.01):
        with pytest.raises(ValueError, match="recall_level"):
            OODDetection(recall_level=level)


def test_input_errors_say_exactly_what_is_wrong():
    from tutorial_lib.metrics.ranking import tie_group_ends
    from tutorial_lib.metrics.validation import check_probs, check_targets, sum_tolerance

    def message(fn, *args):
        with pytest.raises(ValueError) as info:
            fn(*args)
        return str(info.value)

    assert message(check_probs, torch.tensor([[0.5, math.inf], [0.5, math.nan]])) == (
        "probs contains NaN or inf (2 values).")  # fmt: skip
    assert message(check_probs, torch.empty(2, 0)) == (
        "probs is empty (shape (2, 0)): nothing to evaluate.")  # fmt: skip
    assert message(check_probs, torch.tensor([[0.7, 0.7]]), "ood_probs") == (
        "ood_probs rows must sum to 1 (tolerance 0.001), worst is off by 0.4: apply a softmax "
        "over the classes first.")  # fmt: skip
    assert check_probs([[0.25, 0.75]]).tolist() == [[[0.25, 0.75]]]  # a list is accepted
    assert message(check_targets, torch.tensor([0.0, 1.0]), 2, 3) == (
        "targets must be integer class labels, not floats.")  # fmt: skip
    assert message(check_targets, torch.tensor([0, 5]), 2, 3) == (
        "targets must lie in [0, 3), got values in [0, 5].")  # fmt: skip
    assert sum_tolerance(torch.float32) == 1e-3 and sum_tolerance(torch.int64) == 1e-3
    assert sum_tolerance(torch.float16) == 4 * torch.finfo(torch.float16).eps
    assert sum_tolerance(torch.bfloat16) == 4 * torch.finfo(torch.bfloat16).eps
    assert message(tie_group_ends, torch.tensor([])) == "tie_group_ends needs at least one value."
    probs, targets, _ = random_fixture(1, 2, n=40)
    right, wrong = probs.mean(1).argmax(-1), (probs.mean(1).argmax(-1) + 1) % 10
    feats = torch.randn(40, 4)
    assert message(grouping_loss, probs, right, feats) == (
        "The grouping loss needs both right and wrong predictions; all 40 are right. Use more (or "
        "harder) samples.")  # fmt: skip
    assert message(grouping_loss, probs, wrong, feats).endswith("all 40 are wrong. Use more (or "
                                                                "harder) samples.")  # fmt: skip


def test_ood_scores_by_hand():
    from tutorial_lib.metrics import ood_scores

    # two members on one input: logits (0, 0) and (ln 3, 0), i.e. p = (1/2, 1/2) and (3/4, 1/4)
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])
    scores = ood_scores(logits)
    h = lambda *p: -sum(q * math.log(q) for q in p)  # noqa: E731
    total, expected = h(0.625, 0.375), (h(0.5, 0.5) + h(0.75, 0.25)) / 2
    by_hand = {"msp": 0.625, "max_logit": math.log(3) / 2,
               "energy": math.log(math.sqrt(3) + 1), "entropy": -total,
               "mutual_information": -(total - expected)}  # fmt: skip
    assert set(scores) == set(by_hand)
    for name, value in by_hand.items():
        assert scores[name].shape == (1,) and float(scores[name]) == pytest.approx(value), name
    one = ood_scores(torch.tensor([[2.0, 0.0, -1.0]]))  # (N, C): one member, no disagreement
    assert float(one["mutual_information"]) == 0.0
    assert float(one["msp"]) == pytest.approx(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
    with pytest.raises(ValueError, match=r"\(N, M, C\) or \(N, C\)"):
        ood_scores(torch.zeros(3))


def test_detection_with_an_in_distribution_score():
    from tutorial_lib.metrics import detection

    found = detection(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1.0, 0.0]))
    # OOD below ID in 5 of 6 pairs, one tie counted 1/2; catching both OOD flags 1 of 3 ID
    assert found["AUROC"] == pytest.approx(5.5 / 6) and found["FPR95"] == pytest.approx(1 / 3)
    # average precision, OOD (the positive class) ranked most OOD first: the OOD 0.0 alone
    # (precision 1 at recall 1/2), then the OOD 1.0 tied with an ID 1.0 (precision 2/3 at 1)
    assert found["AUPR"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    perfect = detection(torch.tensor([5.0, 4.0]), torch.tensor([1.0, 0.0]))
    assert perfect == {"AUROC": 1.0, "AUPR": 1.0, "FPR95": 0.0}
    # scores far outside [0, 1] (energies): the ranking alone counts
    assert detection(torch.tensor([90.0, 80.0]), torch.tensor([70.0, 60.0]))["AUPR"] == 1.0
    # with the MSP it is the course's OOD metric
    from tutorial_lib.metrics import ood_scores

    g = torch.Generator().manual_seed(0)
    id_logits, ood_logits = (
        torch.randn(200, 3, 10, generator=g) * 3,
        torch.randn(150, 3, 10, generator=g),
    )
    found = detection(ood_scores(id_logits)["msp"], ood_scores(ood_logits)["msp"])
    course = evaluate_predictions(id_logits.softmax(-1), torch.zeros(200, dtype=torch.long),
                                  ood_logits.softmax(-1))  # fmt: skip
    assert found["AUROC"] == pytest.approx(course["ood/AUROC"], abs=1e-6)
    assert found["FPR95"] == pytest.approx(course["ood/FPR95"])
    assert found["AUPR"] == pytest.approx(course["ood/AUPR"], abs=1e-6)


def test_brier_decomposition_by_hand():
    from tutorial_lib.metrics import brier_decomposition

    # one confidence level 0.75; C = accuracy 0.5; Q = 1 and 0.5; Y = 1 and 0
    parts = brier_decomposition(torch.tensor([0.75, 0.75]), torch.tensor([1.0, 0.0]),
                                torch.tensor([1.0, 0.5]))  # fmt: skip
    assert parts == pytest.approx({"calibration": 2 * 0.25**2, "grouping": 2 * 0.5**2 / 2,
                                   "irreducible": 2 * 0.5**2 / 2})  # fmt: skip
    brier = 2 * ((0.75 - 1) ** 2 + 0.75**2) / 2
    assert sum(parts.values()) == pytest.approx(brier)  # exact on this sample
    # each level has its own C: a predictor that knows Q has no calibration or grouping loss
    q = torch.tensor([0.5, 0.5, 1.0, 1.0])
    parts = brier_decomposition(q, torch.tensor([1.0, 0.0, 1.0, 1.0]), q)
    assert parts == pytest.approx({"calibration": 0.0, "grouping": 0.0, "irreducible": 0.25})

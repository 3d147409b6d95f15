"""Compare :func:`tutorial_lib.metrics.evaluate_predictions` with torch-uncertainty's metrics.

Needs the reference library (``pip install torch-uncertainty==0.13.0 einops seaborn``), which is
not a dependency of the course. Prints, for each metric key, the largest absolute difference
over several random fixtures (1 and 4 members, 2,000 ID + 2,000 OOD samples, 10 classes).

    python tools/reference_crosscheck.py
"""

from __future__ import annotations

import torch
from torch_uncertainty.metrics import (
    AUGRC,
    AURC,
    FPR95,
    AdaptiveCalibrationError,
    BrierScore,
    CalibrationError,
    CategoricalNLL,
    CovAt5Risk,
    Disagreement,
    Entropy,
    MutualInformation,
    RiskAt80Cov,
)
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision, MulticlassAccuracy

from tutorial_lib.metrics import evaluate_predictions


def reference(probs: torch.Tensor, targets: torch.Tensor, ood: torch.Tensor) -> dict[str, float]:
    """The reference library's values, fed as its classification routine feeds them."""
    mean, ood_mean = probs.mean(1), ood.mean(1)
    out = {}
    for key, metric in {
        "cls/Acc": MulticlassAccuracy(10, average="micro"),
        "cls/Brier": BrierScore(10),
        "cls/NLL": CategoricalNLL(),
        "cal/ECE": CalibrationError(task="multiclass", num_classes=10, num_bins=15),
        "cal/MCE": CalibrationError(task="multiclass", num_classes=10, num_bins=15, norm="max"),
        "cal/aECE": AdaptiveCalibrationError(task="multiclass", num_classes=10, num_bins=15),
        "sc/AURC": AURC(),
        "sc/AUGRC": AUGRC(),
        "sc/Cov@5Risk": CovAt5Risk(),
        "sc/Risk@80Cov": RiskAt80Cov(),
    }.items():
        metric.update(mean, targets)
        out[key] = float(metric.compute())
    out["cls/Entropy"] = float(Entropy()(mean))
    out["ood/Entropy"] = float(Entropy()(ood_mean))
    scores = torch.cat([-mean.max(-1).values, -ood_mean.max(-1).values])
    labels = torch.cat([torch.zeros(len(mean)), torch.ones(len(ood_mean))]).long()
    out["ood/AUROC"] = float(BinaryAUROC()(scores, labels))
    out["ood/AUPR"] = float(BinaryAveragePrecision()(scores, labels))
    out["ood/FPR95"] = float(FPR95(pos_label=1)(scores, labels))
    if probs.shape[1] > 1:
        for prefix, p in (("ens/", probs), ("ood/ens_", ood)):
            out[prefix + "Disagreement"] = float(Disagreement()(p))
            out[prefix + "Entropy"] = float(Entropy()(p))
            out[prefix + "MI"] = float(MutualInformation()(p))
    return out


def fixture(seed: int, members: int, n: int = 2000) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 10, (n,), generator=g)
    logits = torch.randn(n, members, 10, generator=g) * (1 + seed % 3)
    logits[torch.arange(n), :, targets] += 2.5 + seed % 2  # mostly right, with errors
    ood = torch.randn(n, members, 10, generator=g) * 1.5
    return logits.softmax(-1), targets, ood.softmax(-1)


def main() -> None:
    worst: dict[str, float] = {}
    for seed in range(6):
        for members in (1, 4):
            probs, targets, ood = fixture(seed, members)
            ours = evaluate_predictions(probs, targets, ood)
            theirs = reference(probs, targets, ood)
            assert set(theirs) == set(ours), set(ours) ^ set(theirs)
            for key, value in theirs.items():
                worst[key] = max(worst.get(key, 0.0), abs(ours[key] - value))
    for key, diff in sorted(worst.items()):
        print(f"{key:22s} max |ours - reference| = {diff:.2e}")
    print(f"overall: {max(worst.values()):.2e} (tolerance 1e-5)")


if __name__ == "__main__":
    main()

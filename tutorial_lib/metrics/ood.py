"""Out-of-distribution detection: ID test set vs OOD set, scored by s = -confidence.

OOD is the positive class. AUROC and average precision come from torchmetrics
(``BinaryAUROC``, ``BinaryAveragePrecision``); FPR at 95 % recall is written here.

:func:`ood_scores` gives the other common scores (max logit, energy, entropy, mutual
information) beside the maximum softmax probability, and :func:`detection` their AUROC and FPR95.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from torchmetrics.utilities.data import dim_zero_cat

from tutorial_lib.metrics.classification import entropy
from tutorial_lib.metrics.ranking import tie_group_ends


def roc_curve(scores: Tensor, is_ood: Tensor) -> tuple[Tensor, Tensor]:
    """The ROC curve of OOD detection, one point per distinct threshold, from (0, 0) to (1, 1).

    Args:
        scores: (N,) OOD scores, higher = more OOD.
        is_ood: (N,) bool, True for OOD samples (the positive class).

    Returns:
        ``fpr`` (fraction of ID samples flagged) and ``tpr`` (fraction of OOD samples caught),
        both (G + 1,) float64, G the number of distinct scores.
    """
    true_pos, false_pos, n_pos, n_neg = _counts_at_thresholds(scores, is_ood)
    zero = torch.zeros(1, dtype=torch.float64, device=scores.device)
    return (torch.cat([zero, false_pos.double() / n_neg]),
            torch.cat([zero, true_pos.double() / n_pos]))  # fmt: skip


def _counts_at_thresholds(scores: Tensor, is_ood: Tensor) -> tuple[Tensor, Tensor, int, int]:
    """True and false positives at each distinct threshold, scanning scores in descending order."""
    is_ood = is_ood.bool()
    n_pos, n_neg = int(is_ood.sum()), int((~is_ood).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"OOD detection needs both ID and OOD samples, got {n_neg} ID and "
                         f"{n_pos} OOD.")  # fmt: skip
    order = torch.sort(scores, descending=True, stable=True).indices
    ends = tie_group_ends(scores[order])
    true_pos = is_ood[order].cumsum(0)[ends]
    return true_pos, ends + 1 - true_pos, n_pos, n_neg


def fpr_at_recall(scores: Tensor, is_ood: Tensor, recall_level: float = 0.95) -> float:
    """Fraction of ID samples flagged at the first threshold that detects ``recall_level`` of OOD.

    Scores are scanned in descending order; thresholds sit only at the ends of groups of tied
    scores (a threshold cannot split a tie).

    Args:
        scores: (N,) OOD scores, higher = more OOD.
        is_ood: (N,) bool, True for OOD samples.
    """
    if not 0 < recall_level <= 1:
        raise ValueError(f"recall_level must be in (0, 1], got {recall_level}.")
    true_pos, false_pos, n_pos, n_neg = _counts_at_thresholds(scores, is_ood)
    first = torch.nonzero(true_pos / n_pos >= recall_level).flatten()[0]
    return float(false_pos[first]) / n_neg


class OODDetection(Metric):
    """Streaming AUROC, AUPR (average precision) and FPR95 of ID vs OOD.

    ``update(conf, is_ood)`` takes top-label confidences (N,) of either set; the score is
    ``-conf``. AUROC and AUPR use torchmetrics' exact (threshold-free) binary implementations.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, recall_level: float = 0.95, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < recall_level <= 1:
            raise ValueError(f"recall_level must be in (0, 1], got {recall_level}.")
        self.recall_level = recall_level
        self.add_state("conf", [], dist_reduce_fx="cat")
        self.add_state("is_ood", [], dist_reduce_fx="cat")

    def update(self, conf: Tensor, is_ood: bool | Tensor) -> None:
        self.conf.append(conf.double())
        flags = torch.as_tensor(is_ood, device=conf.device).bool().expand(conf.shape[0])
        self.is_ood.append(flags.long())

    def compute(self) -> dict[str, float]:
        conf, is_ood = dim_zero_cat(self.conf), dim_zero_cat(self.is_ood)
        # 1 - conf is in [0, 1] (torchmetrics would squash other scores through a sigmoid) and,
        # in float64, exact for float32 confidences: it ranks exactly as -conf
        scores = 1 - conf
        name = f"FPR{round(self.recall_level * 100):d}"
        return {
            "AUROC": float(binary_auroc(scores, is_ood)),
            "AUPR": float(binary_average_precision(scores, is_ood)),
            name: fpr_at_recall(scores, is_ood, self.recall_level),
        }


def ood_scores(logits: Tensor) -> dict[str, Tensor]:
    """How in-distribution each input looks, by five scores; higher = more in-distribution.

    Args:
        logits: (N, M, C) logits of M members (or (N, C): one member).

    Returns:
        ``{name: (N,) float64}``: ``msp``, the maximum of the mean probability (Hendrycks &
        Gimpel, 2017); ``max_logit``, the maximum of the mean logits; ``energy``, the logsumexp
        of the mean logits (Liu et al., 2020: minus the energy); ``entropy``, minus the entropy
        of the mean probability; ``mutual_information``, minus the members' mutual information
        (0 for one member).
    """
    if logits.ndim == 2:
        logits = logits[:, None]
    if logits.ndim != 3 or logits.shape[-1] < 2:
        raise ValueError(f"logits must be (N, M, C) or (N, C) with C >= 2, got "
                         f"{tuple(logits.shape)}.")  # fmt: skip
    logits = logits.double()
    probs = logits.softmax(-1)  # (N, M, C)
    mean_probs, mean_logits = probs.mean(1), logits.mean(1)  # (N, C) each
    total, expected = entropy(mean_probs), entropy(probs).mean(1)  # (N,) each
    return {
        "msp": mean_probs.max(-1).values,
        "max_logit": mean_logits.max(-1).values,
        "energy": mean_logits.logsumexp(-1),
        "entropy": -total,
        "mutual_information": -(total - expected).clamp_min(0.0),
    }


def detection(id_score: Tensor, ood_score: Tensor, recall_level: float = 0.95) -> dict[str, float]:
    """AUROC, AUPR and FPR at ``recall_level`` of telling the OOD set from the ID set with a
    score where higher means more in-distribution (one of :func:`ood_scores`): id_score (N,),
    ood_score (N',). Ties count one half in the AUROC, as in the Mann-Whitney statistic."""
    scores = -torch.cat([id_score, ood_score]).double()  # higher = more OOD, the positive class
    is_ood = torch.cat([torch.zeros(len(id_score)), torch.ones(len(ood_score))]).bool()
    fpr, tpr = roc_curve(scores, is_ood)
    # ranks in [0, 1): the same order and ties, and no sigmoid squashing by torchmetrics
    ranks = torch.unique(scores, return_inverse=True)[1].double() / len(scores)
    name = f"FPR{round(recall_level * 100):d}"
    return {"AUROC": float(torch.trapezoid(tpr, fpr)),
            "AUPR": float(binary_average_precision(ranks, is_ood.long())),
            name: fpr_at_recall(scores, is_ood, recall_level)}  # fmt: skip

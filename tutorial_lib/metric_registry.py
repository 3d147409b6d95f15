r"""Every metric of the course, one entry each: its key, label, direction, format and glossary text.

The tables (:mod:`tutorial_lib.report`), the directions the metrics are judged by
(:data:`tutorial_lib.metrics.evaluate.HIGHER_IS_BETTER`) and the book's glossary
(:mod:`tutorial_lib.book`) all read this module; adding a metric is adding its entry here (and
its test). It imports nothing heavy, so the book builds without torch.

A key ``ts/<key>`` is the metric ``<key>`` recomputed after temperature scaling (a metric of the
probabilities, :data:`SCALABLE`): it has no entry of its own (:func:`lookup` derives it, labelled
``"T-scaled <label>"``) and sits in the section of ``ts/T``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

CALIBRATED = "ts/"  # prefix of the metrics after temperature scaling

Direction = Literal["higher", "lower", "descriptive"]
Format = Literal["percent", "integer", "seconds", "decimal"]
UNITS: dict[str, str] = {"percent": "%", "seconds": "s"}  # the unit a label shows, per format


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        key: as :func:`~tutorial_lib.metrics.evaluate_predictions` or the comparison returns it
            (``"cls/Acc"``).
        label: the row's name in a table and a verdict, without arrow or unit (``"Acc"``).
        direction: ``"higher"`` or ``"lower"`` is better, or ``"descriptive"``: neither, so it
            gets no arrow, no best value and never enters a verdict.
        format: how a value shows: ``"percent"`` (a fraction shown x 100 with ``%``),
            ``"integer"`` (thousands separated), ``"seconds"`` or ``"decimal"``.
        glossary: its definition on the glossary page (Markdown; TeX between ``$``).
        name: the long name the glossary adds after the label (``"accuracy"``), if any.
        digits: decimals of a ``"decimal"`` value.
    """

    key: str
    label: str
    direction: Direction
    format: Format
    glossary: str
    name: str = ""
    digits: int = 5

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower", "descriptive"):
            raise ValueError(f"{self.key}: direction must be higher, lower or descriptive.")
        if self.format not in ("percent", "integer", "seconds", "decimal"):
            raise ValueError(f"{self.key}: format must be percent, integer, seconds or decimal.")

    @property
    def higher_is_better(self) -> bool | None:
        """True if higher is better, False if lower is better, None if descriptive."""
        return {"higher": True, "lower": False}.get(self.direction)

    @property
    def unit(self) -> str:
        """The unit its label shows (``"%"``, ``"s"``), or ``""``."""
        return UNITS.get(self.format, "")


@dataclass(frozen=True)
class Section:
    """A family of metrics: a section of the tables and of the glossary.

    Attributes:
        title: the section's heading in a table.
        heading: its heading on the glossary page.
        metrics: its entries, in the order of the rows.
        intro: glossary text before the entries (notation shared by them).
        notes: glossary text after the entries: terms that have no row in a table.
        scaled: its metrics are computed from the probabilities, so they can be recomputed after
            temperature scaling (keys ``ts/<key>``); not so for the cost, or the temperature.
    """

    title: str
    heading: str
    metrics: tuple[Metric, ...]
    intro: str = ""
    notes: str = ""
    scaled: bool = True


SECTIONS: tuple[Section, ...] = (
    Section("Classification", "Classification", (
        Metric("cls/Acc", "Acc", "higher", "percent", name="accuracy",
               glossary=r"the fraction of inputs with $\hat y = y$."),
        Metric("cls/Brier", "Brier", "lower", "decimal", name="Brier score",
               glossary=r"$\frac{1}{N}\sum_i \sum_c (\bar p_{ic} - 1[c = y_i])^2$, summed over "
                        "classes."),
        Metric("cls/NLL", "NLL", "lower", "decimal", name="negative log-likelihood",
               glossary=r"$\frac{1}{N}\sum_i -\log \bar p_{i, y_i}$."),
        Metric("cls/Entropy", "predictive entropy", "descriptive", "decimal",
               glossary=r"the mean of $H(\bar p) = -\sum_c \bar p_c \log \bar p_c$ on the test "
                        "set; how spread the predictions are (the total uncertainty)."),
    )),
    Section("Calibration", "Calibration", (
        Metric("cal/ECE", "ECE", "lower", "percent", name="expected calibration error",
               glossary=r"15 equal-width confidence bins; $\sum_b \frac{n_b}{N} |\mathrm{acc}_b "
                        r"- \mathrm{conf}_b|$."),
        Metric("cal/aECE", "aECE", "lower", "percent", name="adaptive ECE",
               glossary="the same with 15 bins of equal counts."),
        Metric("cal/MCE", "MCE", "lower", "percent", name="maximum calibration error",
               glossary=r"the largest $|\mathrm{acc}_b - \mathrm{conf}_b|$ over non-empty bins."),
        Metric("cal/GL", "GL", "lower", "decimal", name="grouping loss",
               glossary="how much the true probability of being right varies among inputs that "
                        "share a confidence level (Perez-Lebel et al., 2023), estimated with "
                        "GLest on the Brier scale."),
    )),
    Section("OOD Detection", "Out-of-distribution detection", (
        Metric("ood/AUROC", "AUROC", "higher", "percent",
               glossary="area under the ROC curve: the probability that a random OOD input scores "
                        "above a random ID input."),
        Metric("ood/AUPR", "AUPR", "higher", "percent",
               glossary=r"average precision, $\sum_n (R_n - R_{n-1}) P_n$."),
        Metric("ood/FPR95", "FPR95", "lower", "percent",
               glossary="the fraction of ID inputs flagged at the first threshold that catches "
                        "95 % of the OOD inputs (OOD is the positive class here; some papers "
                        "define it the other way round)."),
        Metric("ood/Entropy", "OOD predictive entropy", "descriptive", "decimal",
               glossary=r"the mean entropy of $\bar p$ on the OOD set. A model unsure of every "
                        "input scores high too: what tells OOD inputs apart is the AUROC."),
        Metric("near/AUROC", "near-OOD AUROC", "higher", "percent",
               glossary="the AUROC against the near-OOD set: with --classes, the test images of "
                        "the classes left out of training (same data set, unseen classes)."),
        Metric("near/FPR95", "near-OOD FPR95", "lower", "percent",
               glossary="the FPR95 against the near-OOD set."),
    ), intro="MNIST test is the in-distribution set, FashionMNIST test the OOD set; OOD is the "
             "positive class, and the score is the maximum softmax probability unless "
             "--ood-score names another (tutorial_lib.metrics.ood_scores)."),
    Section("Selective Classification", "Selective classification", (
        Metric("sc/AURC", "AURC", "lower", "percent",
               glossary="trapezoidal area under $r_k$ over coverage $k/N$, divided by $1 - 1/N$."),
        Metric("sc/E-AURC", "E-AURC", "lower", "percent",
               glossary="the AURC minus the AURC of an oracle that ranks every error last: what "
                        "is left once the error rate is taken out, the ranking alone."),
        Metric("sc/AUGRC", "AUGRC", "lower", "percent",
               glossary=r"the same for the generalised risk $(k/N)\, r_k$."),
        Metric("sc/Cov@5Risk", "Cov@5Risk", "higher", "percent",
               glossary=r"the largest coverage with $r_k \le 5\%$. Uninformative when every "
                        "model's overall error rate is already below 5 %."),
        Metric("sc/Cov@1Risk", "Cov@1Risk", "higher", "percent",
               glossary=r"the largest coverage with $r_k \le 1\%$. Uninformative when every "
                        "model's overall error rate is already below 1 %."),
        Metric("sc/Risk@80Cov", "Risk@80Cov", "lower", "percent",
               glossary=r"$r_k$ at $k = \lceil 0.8 N \rceil$."),
    ), intro="Sort by confidence, most confident first; $r_k$ is the error rate among the $k$ "
             "most confident."),
    Section("Ensemble Diversity", "Ensemble diversity", (
        Metric("ens/Disagreement", "Disagreement", "descriptive", "decimal",
               glossary="the fraction of member pairs whose predicted classes differ."),
        Metric("ens/Entropy", "expected entropy", "descriptive", "decimal",
               glossary=r"$\frac{1}{M}\sum_m H(p_m)$, the members' mean entropy: the aleatoric "
                        "part of the predictive entropy, on inputs like the training data (far "
                        "from them, a member is also unsure for lack of knowledge)."),
        Metric("ens/MI", "MI", "descriptive", "decimal", name="mutual information",
               glossary=r"$H(\bar p) - \frac{1}{M}\sum_m H(p_m)$, the epistemic part."),
        Metric("ood/ens_Disagreement", "OOD Disagreement", "descriptive", "decimal",
               glossary="the disagreement on the OOD set."),
        Metric("ood/ens_Entropy", "OOD expected entropy", "descriptive", "decimal",
               glossary="the expected entropy on the OOD set."),
        Metric("ood/ens_MI", "OOD MI", "higher", "decimal",
               glossary="the mutual information on the OOD set: how much the members disagree "
                        "on inputs unlike their training data."),
    ), intro="For ensembles ($M \\ge 2$), on the ID test set and on the OOD set."),
    Section("After temperature scaling (T fitted on validation)",
            "Post-hoc calibration and conformal prediction", (
        Metric("ts/T", "temperature T", "descriptive", "decimal", digits=3,
               glossary=r"the number dividing the logits (for an ensemble, $\log \bar p$) before "
                        "the softmax, fitted by minimising the NLL on the validation split. "
                        "$T < 1$ sharpens an under-confident model, $T > 1$ softens an "
                        "over-confident one; the accuracy never changes. The rows *T-scaled …* "
                        "are the metrics recomputed on the scaled probabilities."),
    ), notes=r"""- **Conformal set**: the classes whose non-conformity score is at most the
  $\lceil (n+1)(1-\alpha) \rceil$-th smallest of $n$ calibration scores. THR scores a class by
  $1 - p_c$, APS by the probability mass ranked above it (plus a random share of its own), RAPS
  adds a penalty on low ranks.
- **Coverage**: the fraction of inputs whose set contains the true class; at least $1 - \alpha$ on
  average when calibration and test inputs are exchangeable. **Set size**: the mean number of
  classes per set (0 for an empty set: "I don't know").""", scaled=False),
    Section("Cost", "Cost", (
        Metric("cplx/params", "params", "lower", "integer",
               glossary="the number of trainable parameters."),
        Metric("cplx/flops_per_image", "FLOPs per image", "lower", "integer",
               glossary="2 x the multiply-adds of convolutions and matrix products per image at "
                        "test time (MC-Dropout's T passes included), as "
                        "`torch.utils.flop_counter` counts them."),
        Metric("cplx/flops_batch", "FLOPs per batch", "lower", "integer",
               glossary="the same for one batch (2,048 images unless stated)."),
        Metric("cplx/fit_s", "training time", "lower", "seconds",
               glossary="seconds spent training, mean over seeds: each run's CPU seconds on a "
                        "CPU (all its threads, one run at a time or side by side), wall-clock "
                        "seconds on a GPU; the table's title says which."),
        Metric("cplx/images_per_s", "inference images/s", "higher", "integer",
               glossary="inference throughput measured on a given machine (chapter 8)."),
    ), intro="Shown with an arrow, but never counted among a verdict's better or worse metrics: "
             "cost gets a sentence of its own.", scaled=False),
)  # fmt: skip

METRICS: dict[str, Metric] = {m.key: m for section in SECTIONS for m in section.metrics}
if len(METRICS) != sum(len(s.metrics) for s in SECTIONS):
    raise ValueError("A metric key is registered twice.")
SECTION_OF: dict[str, Section] = {m.key: s for s in SECTIONS for m in s.metrics}
# the metrics that temperature scaling can change: a key ts/<key> is one of them, recomputed
SCALABLE: tuple[str, ...] = tuple(m.key for s in SECTIONS if s.scaled for m in s.metrics)


def lookup(key: str) -> Metric | None:
    """The entry of ``key``; for ``ts/<key>``, the entry of ``<key>`` after temperature scaling
    (label ``"T-scaled <label>"``); None for a key that has no entry."""
    if key in METRICS:
        return METRICS[key]
    name = key.removeprefix(CALIBRATED) if key.startswith(CALIBRATED) else None
    if name not in SCALABLE:
        return None
    base = METRICS[name]
    return replace(base, key=key, label=f"T-scaled {base.label}",
                   glossary=f"{base.label} after temperature scaling.")  # fmt: skip


def glossary_entry(metric: Metric) -> str:
    """The glossary's bullet for one metric: label, long name, definition and direction."""
    name = f" ({metric.name})" if metric.name else ""
    better = {
        "higher": "Higher is better.",
        "lower": "Lower is better.",
        "descriptive": "Descriptive (no better direction): never in a verdict.",
    }[metric.direction]
    return f"- **{metric.label}**{name}: {metric.glossary} {better}"

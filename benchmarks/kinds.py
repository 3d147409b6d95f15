"""What kind of uncertainty: ambiguous vs unfamiliar inputs, near vs far OOD (chapter 10's study).

Every model trains on MNIST digits 0-4 only (``--classes``), then meets four sets:

- **ID**: the test images of digits 0-4;
- **ambiguous**: blends half-and-half of two ID test digits of different classes
  (:func:`tutorial_lib.data.blend_pairs`): familiar strokes, no single right answer;
- **near OOD**: the test images of digits 5-9, unseen classes of the same data set;
- **far OOD**: FashionMNIST's test set.

For each model and seed it measures, on each set, the mean total predictive entropy and its two
parts, expected entropy and mutual information (nats, on the raw logits), and, for each OOD score
of :func:`tutorial_lib.metrics.ood_scores`, the AUROC and FPR95 of telling near and far OOD from
ID. The ambiguous set records how often the top label is one of the blend's two digits, how
often the top two labels are the blend's two digits, and the mean probability on those two; and,
input by input, the AUROC with which each part (total, expected entropy, MI) tells near and far
OOD inputs from the blends.

Writes ``data/results/kinds.json``: per model, the per-seed values of all of it (the chapter
judges them with :func:`tutorial_lib.stats.verdict`), and for the deep ensemble's first seed a
sample of (expected entropy, MI) points per set for the figure. Every trained run goes to the run
cache, so a stopped study resumes. About 4 minutes on 2 quiet CPU cores with the defaults
(20 runs side by side).

    python benchmarks/kinds.py [--seeds 5] [--epochs 3] [--cache auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import begin_study, machine, study_options

MODELS = ("lenet", "mc-dropout", "deep-ensemble-4", "packed-2-4")
CLASSES = (0, 1, 2, 3, 4)
SETS = ("id", "ambiguous", "near", "far")
# the parts of the total entropy, from ood_scores' scores (higher = more in-distribution)
PARTS = {
    "total": lambda scores: -scores["entropy"],
    "expected": lambda scores: scores["mutual_information"] - scores["entropy"],
    "mi": lambda scores: -scores["mutual_information"],
}
POINTS = 300  # (expected entropy, MI) pairs kept per set for the figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--blends", type=int, default=5000, help="ambiguous inputs made")
    study_options(parser, "kinds")
    args = parser.parse_args()
    say = begin_study()
    import torch

    from tutorial_lib.compare import run_comparison
    from tutorial_lib.config import OOD_SCORES, ExperimentConfig
    from tutorial_lib.data import TensorBatchLoader, blend_pairs
    from tutorial_lib.files import write_json
    from tutorial_lib.metrics import detection, ood_scores
    from tutorial_lib.routine import predict

    start = time.perf_counter()
    say(f"expected: about {args.seeds * args.epochs / 4:.0f} min on 2 quiet CPU cores (less for "
        "runs already in the cache)")  # fmt: skip
    config = ExperimentConfig.create(
        "full", models=MODELS, classes=CLASSES, seeds=args.seeds, epochs=args.epochs,
        calibrate="temperature", cache=args.cache, out=args.out,
    )  # fmt: skip
    comparison = run_comparison(config, progress=say)
    data = comparison.data
    say("measuring the four sets")

    # the ambiguous set, from the ID test images (labels 0..4 after relabelling)
    from tutorial_lib.compare import make_data

    module = make_data(config)
    module.prepare_data()
    module.setup()
    images, labels = module.splits["test"]
    blends, first, second = blend_pairs(images, labels, args.blends, seed=0)
    blend_loader = TensorBatchLoader(blends, first, 1024, shuffle=False, mean=module.mean,
                                     std=module.std)  # fmt: skip

    study = {
        "complete": False, "command": "python " + " ".join(sys.argv), "machine": machine(),
        "config": config.as_dict(), "data": data, "classes": list(CLASSES),
        "sets": {"id": f"MNIST test, digits {CLASSES[0]}-{CLASSES[-1]}",
                 "ambiguous": f"{args.blends} blends 50/50 of two ID test digits of different "
                              "classes", "near": "MNIST test, digits 5-9",
                 "far": "FashionMNIST test"},
        "models": {}, "points": {},
    }  # fmt: skip
    for name, runs in comparison.runs.items():
        entry = {
            "slug": runs[0].spec.slug,
            "params": runs[0].metrics["cplx/params"],
            "cls/Acc_seeds": [r.metrics["cls/Acc"] for r in runs],
            "cls/NLL_seeds": [r.metrics["cls/NLL"] for r in runs],
            "ambiguous_hit_seeds": [],
            "ambiguous_top2_seeds": [],
            "ambiguous_mass_seeds": [],
            "uncertainty": {s: {"total_seeds": [], "expected_seeds": [], "mi_seeds": []}
                            for s in SETS},
            "detection": {s: {score: {"AUROC_seeds": [], "FPR95_seeds": []}
                              for score in OOD_SCORES} for s in ("near", "far")},
            "separation": {s: {part: [] for part in PARTS} for s in ("near", "far")},
        }  # fmt: skip
        for run in runs:
            p = run.predictions
            torch.manual_seed(run.seed)  # MC-Dropout's passes
            ambiguous = predict(run.model, blend_loader)["logits"]
            logits = {"id": p["logits"], "ambiguous": ambiguous, "near": p["near_logits"],
                      "far": p["ood_logits"]}  # fmt: skip
            scores = {s: ood_scores(v) for s, v in logits.items()}
            for s in SETS:
                for part, values in PARTS.items():
                    entry["uncertainty"][s][f"{part}_seeds"].append(float(values(scores[s]).mean()))
            mean_probs = ambiguous.softmax(-1).mean(1)  # (count, C)
            top = mean_probs.argmax(-1)
            entry["ambiguous_hit_seeds"].append(float(((top == first) | (top == second))
                                                      .double().mean()))  # fmt: skip
            top2 = mean_probs.topk(2, dim=-1).indices.sort(-1).values
            pair = torch.stack([first, second], -1).sort(-1).values
            entry["ambiguous_top2_seeds"].append(float((top2 == pair).all(-1).double().mean()))
            rows = torch.arange(len(first))
            mass = mean_probs[rows, first] + mean_probs[rows, second]
            entry["ambiguous_mass_seeds"].append(float(mass.mean()))
            # per input: how well each part tells an unfamiliar input from an ambiguous one
            for s in ("near", "far"):
                for part, values in PARTS.items():
                    found = detection(-values(scores["ambiguous"]), -values(scores[s]))
                    entry["separation"][s][part].append(found["AUROC"])
            for s in ("near", "far"):
                for score in OOD_SCORES:
                    found = detection(scores["id"][score], scores[s][score])
                    entry["detection"][s][score]["AUROC_seeds"].append(found["AUROC"])
                    entry["detection"][s][score]["FPR95_seeds"].append(found["FPR95"])
            if run is runs[0] and runs[0].spec.kind == "deep-ensemble":
                for s in SETS:
                    expected, mi = (PARTS[k](scores[s])[:POINTS] for k in ("expected", "mi"))
                    study["points"][s] = [[round(float(e), 5), round(float(m), 5)]
                                          for e, m in zip(expected, mi, strict=True)]  # fmt: skip
        study["models"][name] = entry
        u = entry["uncertainty"]
        say(f"   {name:40s} expected entropy id {u['id']['expected_seeds'][0]:.3f} ambiguous "
            f"{u['ambiguous']['expected_seeds'][0]:.3f}; MI id {u['id']['mi_seeds'][0]:.3f} "
            f"near {u['near']['mi_seeds'][0]:.3f} far {u['far']['mi_seeds'][0]:.3f} (seed "
            f"{runs[0].seed})")  # fmt: skip
    study["total_min"] = (time.perf_counter() - start) / 60
    write_json(Path(args.results), study | {"complete": True})
    say(f"wrote {args.results} ({study['total_min']:.1f} min)")


if __name__ == "__main__":
    main()

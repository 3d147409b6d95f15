"""The cost of uncertainty: every method of the course on one Pareto front (chapter 8's study).

Trains single LeNet, MC-Dropout, BatchEnsemble (M=4), Packed-Ensembles (alpha in {1, 2, 4},
M in {2, 4}; alpha=1, M=4 cannot be built: LeNet's 6 channels do not split into 4 groups) and
deep ensembles (M in {2, 4}) with 5 seeds on MNIST and FashionMNIST (3 epochs, the default recipe),
fits a temperature on the validation split for every model (MC-Dropout included: its T passes are
averaged like members), then measures each trained model's inference throughput on the CPU (test
set, batch 2048, eval mode, median of 3 passes after a warm-up). Writes
``data/results/pareto.json`` (the seeds, epochs and calibration it ran with; per model:
parameters, training time (median over seeds), images/s (median over seeds, and the smallest and
largest of the seeds' measurements), accuracy, NLL, ECE, OOD AUROC: mean, std and per-seed values,
raw and after temperature scaling (``ts/...``)) and ``benchmarks/pareto_{mnist,fashion}.png``;
prints the table. Run it with nothing else on the machine: it takes about 40 minutes on 2 CPU
cores; trained runs go to the run cache, so a stopped study resumes where it stopped.

    python benchmarks/pareto.py [--seeds 5] [--datasets mnist fashion] [--out outputs/pareto]
                                [--cache auto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import machine, study_point

from tutorial_lib.speed import share_cpu_fairly

MODELS = ("lenet", "mc-dropout", "batch-ensemble-4", "packed-1-2", "packed-2-2", "packed-2-4",
          "packed-4-2", "packed-4-4", "deep-ensemble-2", "deep-ensemble-4")  # fmt: skip
KEYS = ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC")
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion"])
    parser.add_argument("--out", default="outputs/pareto")
    parser.add_argument(
        "--cache", default="auto", help="run cache (tutorial_lib.runcache): a stopped study resumes"
    )
    parser.add_argument("--results", default=str(ROOT / "data" / "results" / "pareto.json"))
    args = parser.parse_args()
    share_cpu_fairly()
    import matplotlib

    matplotlib.use("Agg")
    from tutorial_lib.compare import run_comparison
    from tutorial_lib.config import ExperimentConfig
    from tutorial_lib.data import STATS, load_split, normalize
    from tutorial_lib.files import write_json
    from tutorial_lib.metrics import throughput
    from tutorial_lib.plots import pareto_plot

    print(f"machine: {machine()}", flush=True)
    study = {"complete": False, "command": "python " + " ".join(sys.argv), "machine": machine(),
             "seeds": args.seeds, "datasets": {}}  # fmt: skip
    for dataset in args.datasets:
        config = ExperimentConfig.create("full", dataset=dataset, models=MODELS, seeds=args.seeds,
                                         calibrate="temperature", cache=args.cache,
                                         out=f"{args.out}/{dataset}")  # fmt: skip
        study |= {"epochs": config.epochs, "calibrate": config.calibrate}
        comparison = run_comparison(config, progress=lambda line: print(line, flush=True))
        name = comparison.data["id"]
        test_images = load_split(name, False, config.data_dir, config.mirror)[0]
        points = {}
        batch = normalize(test_images, *STATS[name])  # (N, 1, 28, 28), as the model sees it
        for model_name, runs in comparison.runs.items():
            speed = [throughput(r.model.cpu(), batch) for r in runs]
            points[model_name] = study_point(comparison.summary(model_name), speed, KEYS)
        study["datasets"][dataset] = {"data": comparison.data, "points": points}
        print(f"\n{dataset}: {'model':34s} {'params':>8s} {'fit s':>6s} {'img/s':>8s} "
              + " ".join(f"{k.split('/')[1]:>14s}" for k in KEYS))  # fmt: skip
        for model_name, p in points.items():
            cells = " ".join(f"{100 * p[k]:6.2f}±{100 * p[k + '_std']:5.2f}" if k != "cls/NLL"
                             else f"{p[k]:6.4f}±{p[k + '_std']:6.4f}" for k in KEYS)  # fmt: skip
            print(f"{'':8s}{model_name:34s} {p['params']:8,.0f} {p['fit_s']:6.1f} "
                  f"{p['images_per_s']:8,.0f} {cells}", flush=True)  # fmt: skip
        fig = pareto_plot(points, title=comparison.data["id"])
        fig.savefig(ROOT / "benchmarks" / f"pareto_{dataset}.png", dpi=90, bbox_inches="tight")
    write_json(Path(args.results), study | {"complete": True})
    print(f"\nwrote {args.results}")
    print(json.dumps({d: len(v["points"]) for d, v in study["datasets"].items()}))


if __name__ == "__main__":
    main()

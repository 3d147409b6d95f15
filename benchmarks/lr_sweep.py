"""Choose the default recipe's peak learning rate on the validation split (never on a test set).

Trains LeNet with the default recipe (AdamW, one-cycle, batch 512, RandomCrop, 3 epochs) at each
learning rate and seed, on the training images minus the 5,000 validation images, and prints the
validation NLL and accuracy (mean ± std over seeds) of each learning rate, per data set.

    python benchmarks/lr_sweep.py [--lrs 0.003 0.01 0.02 0.03 0.05] [--seeds 3]
                                  [--datasets mnist fashion]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine

from tutorial_lib.speed import share_cpu_fairly


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.02, 0.03, 0.05])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion"])
    parser.add_argument("--models", nargs="+", default=["lenet"])
    args = parser.parse_args()
    share_cpu_fairly()
    from tutorial_lib.compare import fit_and_test, make_data
    from tutorial_lib.config import ExperimentConfig
    from tutorial_lib.metrics import evaluate_predictions

    print(f"machine: {machine()}")
    for dataset in args.datasets:
        base = ExperimentConfig.create("full", dataset=dataset)
        data = make_data(base)
        data.prepare_data()
        data.setup()
        for spec in base.with_values(models=tuple(args.models)).specs:
            print(f"\n{dataset}, {spec.name}: validation split ({data.sizes()['val']} images)")
            print(f"{'lr':>7s} {'val NLL':>17s} {'val acc (%)':>15s} {'fit s':>6s}")
            for lr in args.lrs:
                config = base.with_values(lr=lr)
                nll, acc, fit = [], [], []
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    result = fit_and_test(spec, data, config, seed)
                    fit.append(time.perf_counter() - start)
                    p = result.predictions
                    val = evaluate_predictions(p["val_probs"], p["val_targets"])
                    nll.append(val["cls/NLL"])
                    acc.append(100 * val["cls/Acc"])
                print(f"{lr:7.3f} {statistics.fmean(nll):8.4f} ± {statistics.stdev(nll):6.4f} "
                      f"{statistics.fmean(acc):7.2f} ± {statistics.stdev(acc):4.2f} "
                      f"{statistics.fmean(fit):6.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

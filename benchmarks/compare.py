"""Wall-clock time of the main job: LeNet, deep ensemble of 2 and PackedLeNet(alpha=2, M=4),
3 epochs each on the full MNIST training set, each tested on MNIST test + FashionMNIST test.

Timed from the start of the first fit to the end of the last test, data preparation included
(the data module prepares the data inside the first fit). Prints the total, and per model the fit
and test times, the training throughput and the test accuracy.

    python benchmarks/compare.py [--accelerator gpu] [--out /tmp/bench-compare]
"""

from __future__ import annotations

import argparse
import tempfile

from common import machine

from tutorial_lib.experiment import CompareConfig, run_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    out = args.out or tempfile.mkdtemp(prefix="bench-compare-")
    config = CompareConfig(out=out, accelerator=args.accelerator,
                           extra={"enable_progress_bar": False})  # fmt: skip
    results = run_comparison(config)
    print(f"{'model':34s} {'fit s':>7s} {'test s':>7s} {'images/s':>10s} {'test acc':>9s}")
    for name, r in results["models"].items():
        print(f"{name:34s} {r['fit_s']:7.1f} {r['test_s']:7.1f} {r['train_images_per_s']:10,.0f} "
              f"{100 * r['metrics']['cls/Acc']:8.2f}%")  # fmt: skip
    print(
        f"total (first fit start -> last test end): {results['total_s']:.1f} s "
        "(targets: <= 40 s on a 2-core CPU, <= 4 s on one H100/H200)"
    )


if __name__ == "__main__":
    main()

"""Speed on a shared CPU: the same work quiet and beside N busy processes (N = the CPU count).

Two pieces of work, each in a fresh process started the way the library starts (its
``share_cpu_fairly``: passive OpenMP waits, threads = usable CPUs), timed inside the process
(imports excluded):

- one augmented epoch of the tensor loader (55,000 images, batch 512; the mean of 5 epochs);
- a one-epoch LeNet fit (the default recipe, validation every epoch).

Each is timed quiet, then while N processes keep every core busy, and the ratio printed, for
several OpenMP wait settings: the library's (whatever ``share_cpu_fairly`` sets: a spin of
1,000), torch's default (nothing set: libgomp spins up to 300,000 times at each barrier, then
sleeps), passive waits (``OMP_WAIT_POLICY=PASSIVE``: never spin) and other bounded spins
(``GOMP_SPINCOUNT=N``). Targets on 2 cores with 2 busy processes: loader epoch <= 3x quiet,
one-epoch fit <= 2.3x quiet (the fair share is 2x), without slowing the quiet case.

    python benchmarks/contention.py [--busy N] [--repeats 3] [--variants library default ...]
                                    [--work "loader epoch" "one-epoch LeNet fit"]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import textwrap

from common import machine

WORK = {
    "loader epoch": """
        import time
        from tutorial_lib.speed import share_cpu_fairly
        share_cpu_fairly()  # keeps what the variant's environment set
        from tutorial_lib.data import MNISTDataModule
        data = MNISTDataModule(val_size=5000)
        data.setup()
        loader = data.train_dataloader()
        for _ in loader:  # warm-up epoch
            pass
        start = time.perf_counter()
        for _ in range(5):  # one epoch is ~0.1 s: too short to time beside busy processes
            for _ in loader:
                pass
        print((time.perf_counter() - start) / 5)
    """,
    "one-epoch LeNet fit": """
        import time
        from tutorial_lib.speed import share_cpu_fairly
        share_cpu_fairly()
        from tutorial_lib.compare import fit_and_test, make_data
        from tutorial_lib.config import ExperimentConfig
        config = ExperimentConfig.create("full", models=("lenet",), epochs=1)
        data = make_data(config)
        data.prepare_data()
        data.setup()
        spec = config.specs[0]
        fit_and_test(spec, data, config.with_values(train_subset=2048), 0)  # warm-up
        print(fit_and_test(spec, data, config, 0).fit_s)
    """,
}


def spin() -> None:
    """A CPU hog: what another notebook, a browser tab or a neighbour's job does to a core."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def variant_environment(name: str) -> dict[str, str]:
    """The OpenMP variables of a variant: ``library``, ``default``, ``passive``, ``active`` or
    ``spin-N`` (``GOMP_SPINCOUNT=N``)."""
    from tutorial_lib.speed import fair_share_environment

    threads = {"OMP_NUM_THREADS": fair_share_environment()["OMP_NUM_THREADS"]}
    if name == "library":
        return fair_share_environment()
    if name in ("passive", "active"):
        return threads | {"OMP_WAIT_POLICY": name.upper()}
    if name.startswith("spin-"):
        return threads | {"GOMP_SPINCOUNT": name[5:]}
    if name == "default":
        return threads  # as torch alone
    raise SystemExit(f"unknown variant {name!r}")


def measure(code: str, variables: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env |= {k: v for k, v in variables.items() if v}
    env["TUTORIAL_SPEED_OFF"] = "spin"  # share_cpu_fairly: the variant's spin settings only
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--busy", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["library", "default", "passive",
                                                          "spin-5000"])  # fmt: skip
    parser.add_argument("--work", nargs="+", default=list(WORK), choices=list(WORK))
    args = parser.parse_args()
    print(f"machine: {machine()}; busy processes: {args.busy}; median of {args.repeats}")
    print(f"{'work':22s} {'waits':14s} {'quiet s':>8s} {'busy s':>8s} {'ratio':>6s}")
    for name in args.work:
        code = WORK[name]
        for label in args.variants:
            variables = variant_environment(label)
            quiet = statistics.median(measure(code, variables) for _ in range(args.repeats))
            hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
            for hog in hogs:
                hog.start()
            try:
                busy = statistics.median(measure(code, variables) for _ in range(args.repeats))
            finally:
                for hog in hogs:
                    hog.terminate()
                    hog.join()
            print(f"{name:22s} {label:14s} {quiet:8.2f} {busy:8.2f} {busy / quiet:6.1f}x",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

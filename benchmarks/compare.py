"""The main job end to end: ``tutorial-lib compare`` timed from process start to exit.

Runs ``tutorial-lib compare`` (LeNet, deep ensemble of 2, Packed-Ensemble (2, 4), 3 epochs, the
reference's settings) as a fresh process, ``--runs`` times, and prints each wall-clock time and
the job's own breakdown (fit and test per model). With ``--reference CMD`` it also times the
reference tutorial's code in the same run, alternating with ours, and prints the ratio. Nothing
else may run on the machine meanwhile.

The reference is not part of this project (its licence and its network needs): to time it, get
the tutorial's script ``tutorial_from_de_to_pe.py`` from the ``torch-uncertainty`` repository,
install ``torch-uncertainty`` beside the project, make it run offline on a CPU (``--reference``
is run by the shell: point it at your copy), for example
``--reference "python /path/to/reference_offline.py"``.

With ``--one-at-a-time`` each run also times ``tutorial-lib compare --workers 1`` (the runs one
after another with every thread, as before runs went side by side) and prints that median too.

With ``--switches`` each run also times the same command with each machine-tuning switch of
:mod:`tutorial_lib.speed` turned off (``TUTORIAL_SPEED_OFF=<switch>``, then ``all``), alternating
with the default, and prints what each switch saves: a switch stays only if it saves at least
10 % of the main job.

With ``--seeds N`` it then times one ``tutorial-lib compare --seeds N`` and prints how many times
the one-seed median it takes (data are prepared and libraries imported once: at most 3.2x for
3 seeds is the target).

    python benchmarks/compare.py [--runs 3] [--accelerator gpu] [--reference CMD]
        [--one-at-a-time] [--switches] [--seeds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import machine


def timed_process(
    command: list[str] | str, shell: bool = False, env: dict[str, str] | None = None
) -> tuple[float, str]:
    """Wall-clock seconds of a process from start to exit, and its output."""
    start = time.perf_counter()
    done = subprocess.run(command, shell=shell, capture_output=True, text=True,
                          env=None if env is None else os.environ | env)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def compare_command(out: str, accelerator: str, *extra: str) -> list[str]:
    """``tutorial-lib compare`` (with its defaults) as a fresh Python process."""
    return [sys.executable, "-m", "tutorial_lib", "compare", "--out", out,
            "--accelerator", accelerator, *extra]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--reference", default=None, help="shell command running the reference")
    parser.add_argument("--seeds", type=int, default=None, help="also time one --seeds N run")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="also time each run with --workers 1")  # fmt: skip
    parser.add_argument("--switches", action="store_true",
                        help="also time each run with each speed switch off")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    ours, theirs, serial = [], [], []
    from tutorial_lib.speed import SWITCHES

    variants = [name for name in SWITCHES if name != "spin"] + ["all"] if args.switches else []
    without: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(1, args.runs + 1):
        out = tempfile.mkdtemp(prefix="bench-compare-")
        seconds, printed = timed_process(compare_command(out, args.accelerator))
        ours.append(seconds)
        lines = [line for line in printed.splitlines() if line.startswith(("[", "Total"))]
        print(f"run {run}: tutorial-lib compare {seconds:.1f} s end to end; "
              + "; ".join(lines), flush=True)  # fmt: skip
        if args.one_at_a_time:
            out = tempfile.mkdtemp(prefix="bench-compare-serial-")
            seconds, printed = timed_process(compare_command(out, args.accelerator,
                                                             "--workers", "1"))  # fmt: skip
            serial.append(seconds)
            lines = [line for line in printed.splitlines() if line.startswith(("[", "Total"))]
            print(f"run {run}: tutorial-lib compare --workers 1 {seconds:.1f} s end to end; "
                  + "; ".join(lines), flush=True)  # fmt: skip
        for name in variants:
            out = tempfile.mkdtemp(prefix=f"bench-compare-{name}-")
            seconds, _ = timed_process(compare_command(out, args.accelerator),
                                       env={"TUTORIAL_SPEED_OFF": name})  # fmt: skip
            without[name].append(seconds)
            print(f"run {run}: TUTORIAL_SPEED_OFF={name} {seconds:.1f} s end to end", flush=True)
        if args.reference:
            seconds, _ = timed_process(args.reference, shell=True)
            theirs.append(seconds)
            print(f"run {run}: reference {seconds:.1f} s end to end", flush=True)
    print(f"tutorial-lib compare, end to end: median {statistics.median(ours):.1f} s "
          f"(min {min(ours):.1f}, max {max(ours):.1f}) over {len(ours)} runs")  # fmt: skip
    if serial:
        print(f"tutorial-lib compare --workers 1, end to end: median "
              f"{statistics.median(serial):.1f} s (min {min(serial):.1f}, max {max(serial):.1f}); "
              f"side by side is {statistics.median(serial) / statistics.median(ours):.2f}x "
              "faster (medians of the same run)")  # fmt: skip
    for name, times in without.items():
        off, on = statistics.median(times), statistics.median(ours)
        print(f"without {name}: median {off:.1f} s (min {min(times):.1f}, max {max(times):.1f});"
              f" the switch saves {100 * (1 - on / off):.1f} % of the job (medians)")  # fmt: skip
    if theirs:
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"reference, end to end: median {statistics.median(theirs):.1f} s; "
              f"ours is {ratio:.1f}x faster (medians of the same run)")  # fmt: skip
    if args.seeds:
        out = tempfile.mkdtemp(prefix="bench-compare-seeds-")
        seconds, _ = timed_process(compare_command(out, args.accelerator, "--seeds",
                                                   str(args.seeds)))  # fmt: skip
        print(f"tutorial-lib compare --seeds {args.seeds}: {seconds:.1f} s end to end, "
              f"{seconds / statistics.median(ours):.2f}x the one-seed median")  # fmt: skip
    print(f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} in this process)")


if __name__ == "__main__":
    main()

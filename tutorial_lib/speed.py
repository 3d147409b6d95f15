"""Every machine-specific switch of the course, in one place, applied by the trainer and the CLI.

The code students read (models, layers, ensembles, metrics, calibration, conformal) holds only the
ideas; what makes it run well on a given machine lives here. Each switch is kept because a figure
in ``benchmarks/RESULTS.md`` ("Machine tuning") shows it pays, and each is off where it would
change numbers or break on a platform.

- :func:`share_cpu_fairly` (the CLI, before torch is imported): OpenMP threads that barely spin
  while they wait, as many as the CPUs this process may use. PyTorch's OpenMP threads spin at
  every barrier by default, which is fastest on an idle machine and ruinous on a shared one (two
  notebooks, a browser, Binder): spinning threads burn the time slices the working ones need.
  ``GOMP_SPINCOUNT`` (GNU OpenMP, the Linux wheels') and ``KMP_BLOCKTIME`` (Intel's and LLVM's)
  are read once, when OpenMP loads, so they must be set before ``import torch``; a notebook's
  set-up cell calls it first. The spins change no number a run computes (the thread count
  changes the last bits of a convolution's sums).
- :func:`cpu_tuning_callback` (the trainer, on the CPU): channels-last convolution weights,
  oneDNN's fast layout for LeNet's small convolutions. CPU-only (a GPU keeps PyTorch's default
  layout); it changes the order of a convolution's sums (last bits, as between two machines).

Measured and left out, because they saved less than 10 % of the main job: a glibc allocator
tuning (``mallopt``), pausing the garbage collector during the imports, and ending the command
with ``os._exit`` (``benchmarks/RESULTS.md``).

``TUTORIAL_SPEED_OFF`` (a comma-separated list of :data:`SWITCHES`, or ``all``) turns switches off:
``benchmarks/compare.py --switches`` measures what each one saves that way.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tutorial_lib.runtime import usable_cpus

SWITCHES = ("spin", "channels_last")
SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}  # chosen by benchmarks/contention.py


def enabled(switch: str) -> bool:
    """Whether ``switch`` (one of :data:`SWITCHES`) is on: not named in ``$TUTORIAL_SPEED_OFF``."""
    if switch not in SWITCHES:
        raise ValueError(f"unknown speed switch {switch!r}; choose one of {', '.join(SWITCHES)}.")
    off = {name.strip() for name in os.environ.get("TUTORIAL_SPEED_OFF", "").split(",")}
    return not ({switch, "all"} & off)


def fair_share_environment(threads: int | None = None) -> dict[str, str]:
    """The OpenMP variables :func:`share_cpu_fairly` sets (where the user has not)."""
    spin = SPIN if enabled("spin") else {}
    return spin | {
        "OMP_NUM_THREADS": str(threads or int(os.environ.get("OMP_NUM_THREADS") or usable_cpus())),
    }


def share_cpu_fairly(threads: int | None = None) -> int:
    """Short OpenMP spins and a thread count that fits the CPUs this process may use.

    Call it before importing torch. Values the user already set (``GOMP_SPINCOUNT``,
    ``KMP_BLOCKTIME``, ``OMP_NUM_THREADS``) are kept. If torch is already imported, the thread
    count still applies but the spinning cannot change any more.

    Args:
        threads: the number of threads; ``None`` takes ``OMP_NUM_THREADS`` if set, else
            :func:`~tutorial_lib.runtime.usable_cpus`.

    Returns:
        The number of threads set.
    """
    variables = fair_share_environment(threads)
    for name, value in variables.items():
        os.environ.setdefault(name, value)
    threads = int(os.environ.get("OMP_NUM_THREADS") or variables["OMP_NUM_THREADS"])
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def cpu_tuning_callback() -> Any:
    """A Lightning callback for a trainer on the CPU: channels-last convolution weights (unless
    switched off) at the start of each fit and test.

    :func:`tutorial_lib.trainer.make_trainer` adds it when the trainer runs on the CPU. (Built
    here, not at import, so that the CLI's ``--help`` never loads Lightning.)
    """
    import lightning as L
    import torch

    channels_last = enabled("channels_last")

    class CPUTuning(L.Callback):
        def _convert(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if channels_last and trainer.strategy.root_device.type == "cpu":
                pl_module.to(memory_format=torch.channels_last)

        def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self._convert(trainer, pl_module)

        def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self._convert(trainer, pl_module)

    return CPUTuning()

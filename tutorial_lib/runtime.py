"""A fair share of a shared CPU: OpenMP threads that barely spin, as many as the CPUs we may use.

PyTorch's CPU kernels run on an OpenMP thread pool. By default those threads *spin* at every
barrier, waiting for work (GNU OpenMP spins up to 300,000 times before it sleeps); that is fastest
on an idle machine and ruinous on a busy one (two notebooks, a browser, a shared Binder or Colab
VM): with more runnable threads than cores, the spinning threads burn the time slices that the
working ones need. Measured on 2 cores beside 2 busy processes, a one-epoch LeNet fit took
5.7-13x its quiet time with the default, 2.2-2.3x with the settings below
(``benchmarks/RESULTS.md``). Two settings:

- a **short spin**: ``GOMP_SPINCOUNT=1000`` (GNU OpenMP, which the Linux wheels of PyTorch use) and
  ``KMP_BLOCKTIME=0`` (Intel's and LLVM's OpenMP). Threads still catch the next parallel region
  when it comes at once (quiet machines stay fast: never spinning, ``OMP_WAIT_POLICY=PASSIVE``,
  cost 12-30 % per training step here) and otherwise sleep. OpenMP reads these once, when it
  loads, so they must be set **before** ``import torch``;
- a thread count equal to the CPUs this process may really use: its affinity mask, capped by a
  cgroup CPU quota (containers, Binder, CI runners often allow fewer CPUs than ``os.cpu_count()``
  reports).

The ``tutorial-lib`` command and ``python -m tutorial_lib`` call :func:`share_cpu_fairly` before
they import torch; each notebook's first cell does too. If you import torch yourself, run first::

    from tutorial_lib.runtime import share_cpu_fairly; share_cpu_fairly()

or set the variables in the shell: ``export GOMP_SPINCOUNT=1000 KMP_BLOCKTIME=0``.
``benchmarks/contention.py`` measures the effect.

A faster start: :func:`imports_without_gc` imports torch and Lightning with Python's cyclic garbage
collector paused (the command does; ~1 s on a 2-core CPU).
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}  # chosen by benchmarks/contention.py


def cgroup_cpu_quota(root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = one and a half), or ``None``.

    Reads cgroup v2's ``cpu.max`` (``"150000 100000"``, or ``"max 100000"`` for no limit), then
    cgroup v1's ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota ``-1``: no limit).
    """
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def usable_cpus(root: str | os.PathLike = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (rounded down,
    at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def available_memory(
    root: str | os.PathLike = CGROUP_ROOT, meminfo: str | os.PathLike = "/proc/meminfo"
) -> int | None:
    """Bytes this process may still allocate, or ``None`` when nothing says.

    The smaller of the machine's ``MemAvailable`` (``/proc/meminfo``) and what this process's
    cgroup leaves under its limit (a container's, Binder's: v2 ``memory.max`` minus
    ``memory.current``, v1 ``memory/memory.limit_in_bytes`` minus ``memory.usage_in_bytes``; a
    limit of ``max`` or v1's huge "unlimited" value counts as none).
    """
    root, candidates = Path(root), []
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            limit, usage = (root / limit_file).read_text().strip(), (root / usage_file).read_text()
            if limit != "max" and int(limit) < 2**62:
                candidates.append(max(0, int(limit) - int(usage)))
            break
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def _on_one_thread(target: Callable[..., None], *args: Any) -> None:
    import torch

    torch.set_num_threads(1)  # the parent's OpenMP thread pool does not survive the fork
    target(*args)


def start_forked(target: Callable[..., None], *args: Any) -> multiprocessing.Process:
    """Start ``target(*args)`` in a forked daemon process on one torch thread (Linux, macOS).

    The child inherits everything the parent holds (nothing is pickled on the way in). It must
    not use the parent's OpenMP threads, which do not exist in it: a parallel region would wait
    for them for ever, so torch runs on one thread there. Python 3.12+ warns of forking a
    multi-threaded process; those threads are OpenMP's, unused in the child, so the warning is
    silenced.
    """
    process = multiprocessing.get_context("fork").Process(
        target=_on_one_thread, args=(target, *args), daemon=True
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This process .* is multi-threaded")
        process.start()
    return process


def fair_share_environment(threads: int | None = None) -> dict[str, str]:
    """The OpenMP variables :func:`share_cpu_fairly` sets (where the user has not)."""
    return SPIN | {
        "OMP_NUM_THREADS": str(threads or int(os.environ.get("OMP_NUM_THREADS") or usable_cpus())),
    }


def share_cpu_fairly(threads: int | None = None) -> int:
    """Short OpenMP spins and a thread count that fits the CPUs we may use.

    Call it before importing torch. Values the user already set in the environment
    (``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``, ``OMP_NUM_THREADS``) are kept, and so is a user's
    ``OMP_WAIT_POLICY`` (none is set here). If torch is already imported, the thread count still
    applies but the spinning cannot change any more.

    Args:
        threads: the number of threads; ``None`` takes ``OMP_NUM_THREADS`` if set, else
            :func:`usable_cpus`.

    Returns:
        The number of threads set.
    """
    variables = fair_share_environment(threads)
    if not os.environ.get("TUTORIAL_KEEP_OMP"):  # (benchmarks/contention.py compares settings)
        for name, value in variables.items():
            os.environ.setdefault(name, value)
    threads = int(os.environ.get("OMP_NUM_THREADS") or variables["OMP_NUM_THREADS"])
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while heavy libraries load, then freeze them.

    Importing torch and Lightning (with torchmetrics, scipy and matplotlib behind it) creates
    ~700,000 Python objects; the collector meanwhile runs ~1,000 times, a few of them full passes
    over everything loaded so far: ~0.9 s of a ~4.5 s start on the course's 2-core CPU
    (``benchmarks/RESULTS.md``). Inside this block it does not run; on leaving, ``gc.freeze()``
    moves every object that exists to a permanent generation that later collections skip (the
    modules live as long as the process), and the collector resumes as it was. The cost: cyclic
    garbage made during the imports is never freed (a one-off, small).

    The ``tutorial-lib`` command runs its imports inside it; a notebook or script can too::

        with imports_without_gc():
            import lightning
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

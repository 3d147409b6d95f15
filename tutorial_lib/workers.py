"""Training runs side by side on the CPU: a standard-library process pool, one thread a run.

A LeNet-sized network uses a second CPU thread poorly (small convolutions; much of a fit is
Python and one-threaded bookkeeping), so on a CPU with several cores, several runs side by side,
one thread each, finish sooner than the same runs one after another with every thread
(``benchmarks/RESULTS.md`` measures it).

:func:`plan_workers` decides whether runs go side by side; :func:`run_side_by_side` runs them
with :class:`concurrent.futures.ProcessPoolExecutor` and yields each result as it finishes.

- **Linux only.** The pool forks (the workers inherit the job and the data, nothing is pickled on
  the way in). Forking after torch is loaded is unsafe on macOS, and Windows cannot fork: there,
  runs go one at a time, whatever ``workers`` says.
- **Workers die with their parent.** Each worker asks the kernel for SIGKILL when its parent
  dies (``PR_SET_PDEATHSIG``), so a closed terminal, a CI timeout, SIGTERM or ``kill -9`` of the
  command leaves no worker behind.
- **A dead worker is one line**: :class:`~tutorial_lib.errors.WorkerDied`, naming ``--workers 1``.

The thread count changes how a CPU adds up a convolution's terms, so a run on one thread differs
from the same run on two in the last bits of its weights (as between two machines). The plan
depends only on the machine and the number of runs: the same command on the same machine gives
the same numbers.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tutorial_lib.errors import WorkerDied
from tutorial_lib.runtime import available_memory, usable_cpus


def can_fork_workers() -> bool:
    """True where runs may go side by side: Linux (fork is safe there, and the kernel can tie a
    child's life to its parent's)."""
    return sys.platform.startswith("linux")


@dataclass(frozen=True)
class WorkerPlan:
    """How a list of runs is executed.

    Attributes:
        workers: processes running side by side; 1 runs everything here, one run after another.
        threads: torch threads per run: every usable CPU for one run at a time, 1 in each worker.
    """

    workers: int
    threads: int

    @property
    def side_by_side(self) -> bool:
        return self.workers > 1

    def describe(self) -> str:
        """``"3 processes side by side, one thread each"`` or ``"one run at a time, 2 threads"``."""
        if self.side_by_side:
            return f"{self.workers} processes side by side, one thread each"
        return f"one run at a time, {self.threads} thread{'s' if self.threads > 1 else ''}"


WORKER_MEMORY = 384 * 2**20
"""Memory kept free per automatic worker (a worker of the course's runs peaks at a few hundred
MiB; ``benchmarks/RESULTS.md``)."""


def plan_workers(
    runs: int,
    requested: int = 0,
    accelerator: str = "cpu",
    cpus: int | None = None,
    memory: int | None = None,
) -> WorkerPlan:
    """How many worker processes to use for ``runs`` independent runs.

    ``requested = 0`` (automatic): on Linux, on the CPU, with at least 2 usable CPUs and at least
    2 runs that can keep every CPU busy (``cpus <= runs + 1``), ``min(runs, cpus + 1)`` workers
    with one thread each (one more than the CPUs, so that a run finishing early leaves no CPU
    idle), and no more than the free memory holds (:data:`WORKER_MEMORY` each); otherwise one run
    at a time with every thread. A GPU already runs one run's kernels in parallel, and forked
    processes cannot use a GPU the parent initialised: there it is always one at a time, and so
    it is on systems other than Linux (:func:`can_fork_workers`).

    Args:
        runs: the number of (model, seed) runs.
        requested: 0 for automatic, else the number of workers wanted (capped at ``runs``).
        accelerator: the accelerator the runs use (``"cpu"``, ``"cuda"``, ``"mps"``).
        cpus: usable CPUs (default: :func:`~tutorial_lib.runtime.usable_cpus`).
        memory: free bytes (default: :func:`~tutorial_lib.runtime.available_memory`); only the
            automatic plan looks at it.

    Raises:
        ValueError: ``requested`` is negative, or above 1 with an accelerator other than the CPU.
    """
    if requested < 0:
        raise ValueError(f"workers must be >= 0 (0: automatic), got {requested}.")
    cpus = cpus or usable_cpus()
    if accelerator != "cpu":
        if requested > 1:
            raise ValueError(
                f"workers={requested} needs the CPU, but the runs use {accelerator!r}: pass "
                "--workers 1 (or 0), or --accelerator cpu."
            )
        return WorkerPlan(1, cpus)
    if not can_fork_workers():
        return WorkerPlan(1, cpus)
    if requested:
        workers = min(requested, max(runs, 1))
    elif cpus >= 2 and runs >= 2 and cpus <= runs + 1:
        memory = available_memory() if memory is None else memory
        fits = runs if memory is None else memory // WORKER_MEMORY
        workers = max(1, min(runs, cpus + 1, fits))
    else:
        workers = 1
    return WorkerPlan(workers, 1 if workers > 1 else cpus)


_PR_SET_PDEATHSIG = 1
_job: Callable[[int], Any] | None = None  # the workers' job, inherited through the fork


def die_with_parent(parent: int) -> None:
    """In a forked child on Linux: be killed (SIGKILL) when the parent ``parent`` dies, and exit
    at once if it already has (it may die between the fork and this call)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _start_worker(parent: int) -> None:
    """A worker's start: tied to its parent, Ctrl+C left to the parent, one torch thread."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    # a notebook kernel's streams talk to a thread that a fork does not copy: the real ones
    sys.stdout = sys.__stdout__ or sys.stdout
    sys.stderr = sys.__stderr__ or sys.stderr
    if "torch" in sys.modules:  # the parent's OpenMP threads do not survive the fork
        sys.modules["torch"].set_num_threads(1)


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # an exception that cannot travel: its type and message can
        return RuntimeError(f"{type(error).__name__}: {error}")


def _run(index: int) -> bytes:
    """Run job ``index`` in a worker; its result pickled here with the standard pickler
    (tensors by value: no shared-memory handles that die with the worker)."""
    assert _job is not None
    try:
        result = _job(index)
    except BaseException as error:  # SystemExit, RunInterrupted too: raised in the parent
        raise _picklable(error) from None
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def _stop(executor: ProcessPoolExecutor) -> None:
    """Kill every worker now (a run may be mid-epoch), then shut the pool down."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        if process.exitcode is None:
            process.kill()
    executor.shutdown(wait=True, cancel_futures=True)


def run_side_by_side(
    job: Callable[[int], Any], count: int, plan: WorkerPlan
) -> Iterator[tuple[int, Any]]:
    """``job(i)`` for ``i`` in ``range(count)``; yields ``(i, result)`` as each one finishes.

    With ``plan.workers == 1`` (or fewer than 2 jobs, or off Linux) the jobs run here, in order.
    Otherwise a fork-based :class:`~concurrent.futures.ProcessPoolExecutor` of ``plan.workers``
    processes (see the module docstring) runs them. An exception in a job is raised here, as it
    would be without workers; a worker that dies (killed, out of memory) raises
    :class:`~tutorial_lib.errors.WorkerDied`. When the caller stops early (that exception,
    Ctrl+C, a ``break``, ``close()``), every worker is killed at once.

    Args:
        job: takes a run's index, returns a picklable result.
        count: the number of runs.
        plan: from :func:`plan_workers`.
    """
    global _job
    if not plan.side_by_side or count < 2 or not can_fork_workers():
        for index in range(count):
            yield index, job(index)
        return
    _job = job
    executor = ProcessPoolExecutor(
        plan.workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        with warnings.catch_warnings():  # Python 3.12+: the threads are OpenMP's, unused after
            warnings.filterwarnings("ignore", "This process .* is multi-threaded")
            pending = {executor.submit(_run, index): index for index in range(count)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    value = future.result()
                except BrokenProcessPool:
                    raise WorkerDied(
                        "a worker process ended before its run did (killed, or out of memory?): "
                        "run one at a time with --workers 1."
                    ) from None
                yield index, pickle.loads(value)
    finally:
        _stop(executor)
        _job = None

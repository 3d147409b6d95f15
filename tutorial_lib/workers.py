"""Training runs side by side on the CPU: forked worker processes with one thread each.

LeNet-sized networks use a second CPU thread poorly: the convolutions are small, and much of a
fit (Python, Lightning's loop, the optimiser's small tensors, validation, test metrics, figures)
runs on one thread anyway. On the course's 2-core CPU, the main job's three fits and tests took
1.3-1.4x less time each with two threads than with one, while three of them side by side, one
thread each, finished in 22.7 s instead of 29.6 s one after another (``benchmarks/RESULTS.md``).

:func:`plan_workers` decides, from the number of runs, the accelerator and the CPUs this process
may use (:func:`tutorial_lib.runtime.usable_cpus`), whether runs go side by side;
:func:`run_side_by_side` runs them and yields each result as it finishes.

The thread count changes how a CPU adds up a convolution's terms, so a run trained on one thread
differs from the same run on two in the last bits of its weights (accuracies move in the second
decimal, as between two machines); a plan is fixed by the machine and the number of runs, so the
same command on the same machine gives the same numbers. ``workers=1`` trains one run after
another with every thread.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tutorial_lib.runtime import available_memory, start_forked, usable_cpus


@dataclass(frozen=True)
class WorkerPlan:
    """How a list of runs is executed.

    Attributes:
        workers: processes running side by side; 1 runs everything here, one run after another.
        threads: torch threads per run: every thread of the CPUs for one run at a time, 1 in
            each worker process (a forked process runs on one, see
            :func:`~tutorial_lib.runtime.start_forked`).
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
"""Memory kept free per automatic worker: a worker of the course's runs peaked at 93-215 MiB of
its own (LeNet to a deep ensemble of 4 on the full data, ``benchmarks/RESULTS.md``)."""


def plan_workers(
    runs: int,
    requested: int = 0,
    accelerator: str = "cpu",
    cpus: int | None = None,
    memory: int | None = None,
) -> WorkerPlan:
    """How many worker processes to use for ``runs`` independent runs.

    ``requested = 0`` (auto): on the CPU with at least 2 usable CPUs and at least 2 runs that can
    keep every CPU busy (``cpus <= runs + 1``), ``min(runs, cpus + 1)`` workers with one thread
    each (one more than the CPUs, so that a short run finishing early leaves no CPU idle while the
    longer ones go on), and no more than the free memory holds (:data:`WORKER_MEMORY` each: on
    Binder's 2 GB a notebook may get fewer, or none); otherwise one run at a time with every
    CPU's thread. Forked processes cannot use an accelerator that the parent initialised, and a
    GPU already runs one run's kernels in parallel: on a GPU (or MPS) it is always one at a time.

    Args:
        runs: the number of (model, seed) runs.
        requested: 0 for auto, else the number of workers wanted (capped at ``runs``; more than
            one needs the CPU).
        accelerator: the accelerator the runs will use (``"cpu"``, ``"cuda"``, ``"mps"``).
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
    if requested:
        workers = min(requested, max(runs, 1))
    elif cpus >= 2 and runs >= 2 and cpus <= runs + 1:
        memory = available_memory() if memory is None else memory
        fits = runs if memory is None else memory // WORKER_MEMORY
        workers = max(1, min(runs, cpus + 1, fits))
    else:
        workers = 1
    return WorkerPlan(workers, 1 if workers > 1 else cpus)


_job: Callable[[int], Any] | None = None  # the forked workers' job, inherited (never pickled)


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # an exception that cannot travel: its type and message can
        return RuntimeError(f"{type(error).__name__}: {error}")


def _work(tasks: Any, results: Connection, lock: Any) -> None:
    """A worker: run the jobs whose indices come from ``tasks`` until ``None``; send each
    ``(index, ok, pickled result or exception)`` to the parent."""
    # Ctrl+C reaches the parent, which stops the workers; a worker must not die on its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert _job is not None
    while (index := tasks.get()) is not None:
        try:  # the standard pickler: tensors by value, no shared-memory handles
            message = (index, True, pickle.dumps(_job(index), protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException as error:  # SystemExit, Ctrl+C's RunInterrupted too: reported,
            message = (index, False, _picklable(error))  # not a silently missing result
        with lock:
            results.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _lost(ended: list[Any]) -> RuntimeError:
    """The error for runs whose worker ended before sending them (every one of ``ended`` has)."""
    for process in ended:
        process.join()
    code = next((process.exitcode for process in ended if process.exitcode), 0)
    return RuntimeError(
        f"a worker process ended (exit code {code}) before its run did: killed, or out of memory? "
        "Run one at a time with --workers 1."
    )


def run_side_by_side(
    job: Callable[[int], Any], count: int, plan: WorkerPlan
) -> Iterator[tuple[int, Any]]:
    """``job(i)`` for ``i`` in ``range(count)``; yields ``(i, result)`` as each one finishes.

    With ``plan.workers == 1`` the jobs run here, in order. Otherwise ``plan.workers`` processes
    forked from this one (Linux and macOS; they inherit ``job`` and everything it reads, nothing
    is pickled on the way in) take the jobs in order, one torch thread each, and
    send each result back pickled. An exception in a job (even a ``BaseException``) is raised
    here, as it would be without workers; a worker that dies (killed, out of memory) raises a
    ``RuntimeError`` instead of a wait for ever. When the caller stops early (that exception,
    Ctrl+C, a ``break``, ``close()``), every worker is killed at once.

    Args:
        job: takes a run's index, returns a picklable result.
        count: the number of runs.
        plan: from :func:`plan_workers`.
    """
    global _job
    if not plan.side_by_side or count < 2:
        for index in range(count):
            yield index, job(index)
        return
    if sys.platform == "win32":  # no fork
        raise RuntimeError("running side by side needs fork (Linux, macOS): pass --workers 1.")
    context = multiprocessing.get_context("fork")
    tasks = context.SimpleQueue()
    for index in [*range(count), *[None] * plan.workers]:
        tasks.put(index)
    reader, writer = context.Pipe(duplex=False)
    lock = context.Lock()
    _job = job
    processes: list[multiprocessing.Process] = []
    try:
        for _ in range(plan.workers):
            processes.append(start_forked(_work, tasks, writer, lock))
        writer.close()  # the workers hold the writing end
        running = {process.sentinel: process for process in processes}
        for _ in range(count):
            while not reader.poll():
                ended = [running.pop(s) for s in wait([reader, *running]) if s in running]
                for process in ended:
                    process.join()  # its exit code (a finished worker: 0, its jobs are sent)
                if any(process.exitcode for process in ended) and not reader.poll():
                    raise _lost(ended)
            try:
                message = reader.recv_bytes()
            except EOFError:  # every worker has ended (the pipe is closed): what is missing
                raise _lost(processes) from None  # will not come
            index, ok, value = pickle.loads(message)
            if not ok:
                raise value
            yield index, pickle.loads(value)
    finally:
        for process in processes:  # SIGKILL: Lightning may have installed a SIGTERM handler
            if process.exitcode is None:
                process.kill()
        for process in processes:
            process.join()
        reader.close()
        _job = None

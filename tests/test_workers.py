"""Runs side by side: the plan, forked workers with one thread, errors and early stops, workers
that die with their parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tutorial_lib import workers
from tutorial_lib.workers import WorkerPlan, plan_workers, run_side_by_side


@pytest.mark.parametrize(
    ("runs", "cpus", "expected"),
    [
        (1, 2, WorkerPlan(1, 2)),  # one run: every thread for it
        (2, 2, WorkerPlan(2, 1)),
        (3, 2, WorkerPlan(3, 1)),  # one more process than CPUs
        (9, 2, WorkerPlan(3, 1)),
        (3, 1, WorkerPlan(1, 1)),  # one CPU: nothing to share
        (3, 16, WorkerPlan(1, 16)),  # too few runs to keep 16 CPUs busy on one thread each
        (15, 16, WorkerPlan(15, 1)),
    ],
)
def test_the_automatic_plan(runs, cpus, expected):
    assert plan_workers(runs, cpus=cpus, memory=2**40) == expected


def test_the_automatic_plan_fits_the_free_memory():
    room = workers.WORKER_MEMORY
    assert plan_workers(3, cpus=2, memory=2 * room + 1) == WorkerPlan(2, 1)
    assert plan_workers(3, cpus=2, memory=2 * room - 1) == WorkerPlan(1, 2)  # one at a time
    assert plan_workers(3, requested=3, cpus=2, memory=0) == WorkerPlan(3, 1)  # asked for


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_off_linux_runs_go_one_at_a_time(monkeypatch, platform):
    monkeypatch.setattr(sys, "platform", platform)
    assert plan_workers(3, cpus=2, memory=2**40) == WorkerPlan(1, 2)
    assert plan_workers(3, requested=3, cpus=2) == WorkerPlan(1, 2)  # asked for, not possible
    results = list(run_side_by_side(_where, 3, WorkerPlan(3, 1)))  # a plan made elsewhere
    assert [i for i, _ in results] == [0, 1, 2]
    assert {got["pid"] for _, got in results} == {os.getpid()}


def test_requested_workers_and_accelerators():
    assert plan_workers(2, requested=5, cpus=2) == WorkerPlan(2, 1)  # no more than the runs
    assert plan_workers(3, requested=1, cpus=2) == WorkerPlan(1, 2)  # one at a time, asked
    assert plan_workers(3, requested=2, cpus=8) == WorkerPlan(2, 1)
    for accelerator in ("cuda", "mps"):  # a GPU: always one run at a time
        assert plan_workers(3, cpus=2, accelerator=accelerator, memory=2**40) == WorkerPlan(1, 2)
    with pytest.raises(ValueError, match="--workers 1"):
        plan_workers(3, requested=2, accelerator="cuda", cpus=2)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        plan_workers(3, requested=-1, cpus=2)
    assert plan_workers(3, cpus=2, memory=2**40).describe() == (
        "3 processes side by side, one thread each"
    )
    assert plan_workers(1, cpus=2).describe() == "one run at a time, 2 threads"
    assert plan_workers(1, cpus=1).describe() == "one run at a time, 1 thread"


def _where(index: int) -> dict:
    return {
        "index": index,
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "sigint": signal.getsignal(signal.SIGINT),
        "tensor": torch.arange(3) * index,
    }


def test_side_by_side_runs_each_job_once_in_another_process_on_one_thread():
    results = dict(run_side_by_side(_where, 5, WorkerPlan(2, 1)))
    assert sorted(results) == [0, 1, 2, 3, 4]
    for index, got in results.items():
        assert got["index"] == index and torch.equal(got["tensor"], torch.arange(3) * index)
        assert got["pid"] != os.getpid() and got["threads"] == 1
        assert got["sigint"] == signal.SIG_IGN  # Ctrl+C is the parent's to handle
    assert len({got["pid"] for got in results.values()}) <= 2  # two processes, reused


def test_one_worker_runs_here_in_order():
    results = list(run_side_by_side(_where, 3, WorkerPlan(1, 2)))
    assert [i for i, _ in results] == [0, 1, 2]
    assert {got["pid"] for _, got in results} == {os.getpid()}


class Diverged(RuntimeError):
    pass


class Stopped(BaseException):
    pass


def _fails(index: int) -> int:
    if index == 1:
        raise Diverged("run 1 diverged: lower the learning rate")
    if index == 2:
        raise Stopped("stopped")  # not an Exception: would otherwise kill the worker silently
    return index


@pytest.mark.parametrize("plan", [WorkerPlan(1, 1), WorkerPlan(2, 1)])
def test_an_error_in_a_job_is_raised_here_as_it_is(plan):
    with pytest.raises(Diverged, match="run 1 diverged: lower the learning rate"):
        dict(run_side_by_side(_fails, 2, plan))
    with pytest.raises(Stopped, match="stopped"):
        list(run_side_by_side(lambda index: _fails(2), 2, plan))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (finished, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_stopping_early_terminates_the_workers(tmp_path):
    def job(index: int) -> int:
        if index:
            (tmp_path / "sleeper.pid").write_text(str(os.getpid()))
            time.sleep(120)  # would hold a CPU long after the caller stopped
        return index

    results = run_side_by_side(job, 2, WorkerPlan(2, 1))
    assert next(results) == (0, 0)
    (sleeper,) = _pids_in(tmp_path, 1, timeout=10)
    assert _alive(sleeper)
    results.close()  # what `closing()` does when the caller's loop stops
    deadline = time.monotonic() + 10
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)
    assert workers._job is None


@pytest.mark.parametrize("dying", [2, 3])  # 3: the other worker has ended before it dies
def test_a_worker_that_dies_is_an_error_not_a_wait(dying):
    def job(index: int) -> int:
        if index == dying:
            time.sleep(0.3 * (dying == 3))
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does
        return index

    got = []
    with pytest.raises(workers.WorkerDied, match=r"killed, or out of memory.*--workers 1"):
        for _index, result in run_side_by_side(job, 4, WorkerPlan(2, 1)):
            got.append(result)
    assert dying not in got


def test_many_runs_on_few_workers_all_come_back():
    results = dict(run_side_by_side(lambda index: index * index, 9, WorkerPlan(3, 1)))
    assert results == {i: i * i for i in range(9)}  # workers that run out of jobs end quietly


def test_thousands_of_runs_do_not_hang():
    results = dict(run_side_by_side(lambda index: index, 3600, WorkerPlan(2, 1)))
    assert results == {i: i for i in range(3600)}


def _pids_in(folder, count: int, timeout: float = 30) -> list[int]:
    """The pids the workers wrote into ``folder/*.pid`` (a file may exist before its text)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [path.read_text() for path in folder.glob("*.pid")]
        if len(texts) >= count and all(texts):
            break
        time.sleep(0.05)
    return [int(path.read_text()) for path in folder.glob("*.pid")]


PARENT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from tutorial_lib.workers import WorkerPlan, run_side_by_side

    folder = Path(sys.argv[1])
    # a terminal's process dies of SIGHUP; under nohup (inherited SIG_IGN) it would not
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def job(index):
        (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
        time.sleep(300)  # a long fit
        return index

    for _ in run_side_by_side(job, 4, WorkerPlan(2, 1)):
        pass
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers run on Linux only")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGHUP])
def test_workers_die_with_their_parent(tmp_path, sig):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    try:
        pids = _pids_in(tmp_path, 2)
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)], "workers outlived their parent"
    finally:
        parent.kill()
        for path in tmp_path.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(path.read_text()), signal.SIGKILL)

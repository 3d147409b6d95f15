"""Fair CPU share: cgroup quotas (v1 and v2), affinity, OpenMP's passive wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tutorial_lib import runtime


def test_cgroup_v2_and_v1_quotas(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert runtime.cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_cpu_quota(tmp_path / "v1") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime.cgroup_cpu_quota(tmp_path / "v1") is None
    assert runtime.cgroup_cpu_quota(tmp_path / "nothing") is None


def test_available_memory_is_the_smaller_of_the_machine_and_the_cgroup(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:  4000000 kB\n")
    v2 = tmp_path / "v2"
    v2.mkdir()
    assert runtime.available_memory(v2, meminfo) == 4_000_000 * 1024  # no cgroup limit
    (v2 / "memory.max").write_text("2147483648\n")  # Binder-like: 2 GiB, 1.5 GiB used
    (v2 / "memory.current").write_text(f"{3 * 2**29}\n")
    assert runtime.available_memory(v2, meminfo) == 2**29
    (v2 / "memory.max").write_text("max\n")
    assert runtime.available_memory(v2, meminfo) == 4_000_000 * 1024
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "unlimited"
    (v1 / "memory.usage_in_bytes").write_text("1000\n")
    assert runtime.available_memory(tmp_path / "v1", meminfo) == 4_000_000 * 1024
    (v1 / "memory.limit_in_bytes").write_text("3000\n")
    assert runtime.available_memory(tmp_path / "v1", meminfo) == 2000
    assert runtime.available_memory(tmp_path / "nothing", tmp_path / "no-meminfo") is None


def test_usable_cpus_is_capped_by_affinity_and_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert runtime.usable_cpus(tmp_path) == affinity  # no quota file: the affinity mask
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert runtime.usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * (affinity + 8)} 100000\n")
    assert runtime.usable_cpus(tmp_path) == affinity


@pytest.mark.subprocess
def test_share_cpu_fairly_sets_short_spins_before_torch():
    code = (
        "import os, sys; from tutorial_lib.runtime import share_cpu_fairly; n = share_cpu_fairly();"
        "import torch; print(os.environ['GOMP_SPINCOUNT'], os.environ['KMP_BLOCKTIME'], n, "
        "torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY', '-'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    cpus = str(runtime.usable_cpus())
    assert out == ["1000", "0", cpus, cpus, "-"]  # no wait policy forced on the user
    env["GOMP_SPINCOUNT"], env["OMP_NUM_THREADS"] = "300000", "1"  # the user's choice is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["300000", "0", "1", "1", "-"]


def test_imports_without_gc_pauses_the_collector_and_freezes_what_exists():
    import gc

    frozen = gc.get_freeze_count()
    try:
        assert gc.isenabled()
        with runtime.imports_without_gc():
            assert not gc.isenabled()
            made = [[] for _ in range(1000)]  # objects created meanwhile are frozen too
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
        gc.disable()  # a caller that had paused it: it stays paused
        with runtime.imports_without_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_forked_process_inherits_the_parent_and_runs_on_one_thread(tmp_path):
    import torch

    local = lambda: "inherited, never pickled"  # noqa: E731 (a lambda cannot be pickled)

    def child(path):
        path.write_text(f"{torch.get_num_threads()} {local()}")

    process = runtime.start_forked(child, tmp_path / "out.txt")
    process.join(timeout=30)
    assert process.exitcode == 0 and process.daemon
    assert (tmp_path / "out.txt").read_text() == "1 inherited, never pickled"

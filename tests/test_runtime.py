"""What the process may use: cgroup CPU quotas (v1 and v2), affinity, free memory."""

from __future__ import annotations

import os

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

"""What this process may use of the machine: its CPUs (affinity mask, cgroup quota) and its free
memory (the machine's, capped by a container's limit).

Containers, Binder and CI runners often allow fewer CPUs and less memory than ``os.cpu_count()``
and ``/proc/meminfo`` report; the thread count (:mod:`tutorial_lib.speed`) and the plan of runs
side by side (:mod:`tutorial_lib.workers`) follow what is really usable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


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

"""What this machine (or container) gives the server: usable cores and memory available now.

Both honour a container's limits: the CPU affinity and cgroup v2's ``cpu.max`` quota for cores, ``memory.max``
minus ``memory.current`` for memory (a container sees the host's whole ``/proc/meminfo``, and is OOM-killed at
its own limit long before the host runs short).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

CGROUP = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")

AUTO = "auto"
# What ``auto`` means for WORKERS and CHUNKS_AT_ONCE on two cores or more: one Parakeet inference keeps about 1.6
# of 2 cores busy, so a second one beside it fills the gap (jobs/concurrency.py, engine/parallel.py).
AUTO_AT_ONCE = 2


def at_once(setting: int | Literal["auto"], cores: int | None = None) -> int:
    """A count-or-``auto`` setting as a number: an integer as given, ``auto`` from the usable cores (1 on one)."""
    if setting != AUTO:
        return int(setting)
    cores = usable_cores() if cores is None else cores
    return AUTO_AT_ONCE if cores >= 2 else 1


def room_for(needed_mb: float, available_mb: float | None) -> bool:
    """Whether ``needed_mb`` more fits in ``available_mb``: always when nothing is asked (0) or nothing is known."""
    return needed_mb <= 0 or available_mb is None or available_mb >= needed_mb


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def available_memory_mb() -> float | None:
    """Memory that can still be used without swapping or hitting the container's limit; None where unknown."""
    candidates = [value for value in (_meminfo_available_mb(), _cgroup_memory_left_mb()) if value is not None]
    return min(candidates) if candidates else None


def _cgroup_cpu_quota() -> float | None:
    """cgroup v2 ``cpu.max`` ("quota period", or "max ..." when unlimited) as a number of cores."""
    text = _read(CGROUP / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except (ValueError, ZeroDivisionError):
        return None


def _cgroup_memory_left_mb() -> float | None:
    """The container's limit less its working set (usage without the inactive page cache, which the kernel
    reclaims before it OOM-kills: counting it would call a container full that merely read a large file)."""
    limit, current = _read(CGROUP / "memory.max"), _read(CGROUP / "memory.current")
    if limit is None or current is None or limit == "max":
        return None
    inactive = 0
    for line in (_read(CGROUP / "memory.stat") or "").splitlines():
        if line.startswith("inactive_file "):
            inactive = int(line.split()[1])
    try:
        return (int(limit) - max(0, int(current) - inactive)) / 2**20
    except ValueError:
        return None


def _meminfo_available_mb() -> float | None:
    text = _read(MEMINFO)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None

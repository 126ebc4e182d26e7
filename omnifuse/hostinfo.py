"""Where a stage ran: the CPU and GPU models and the library versions that change numbers.

Recorded in feature-cache attributes and run summaries, so that two results can be compared knowing
whether they came from the same kind of machine (see docs/design.md "Reproducibility across machines").
Torch-free: the caller passes the GPU name when a GPU was used.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_info(gpu: str = "", **extra: object) -> dict[str, str]:
    """``host_cpu`` (model and logical CPU count), ``host_gpu`` (``""`` when none was used),
    ``host_platform`` and any ``extra`` values as strings."""
    info = {
        "host_cpu": f"{cpu_model()} ({os.cpu_count() or 1} logical CPUs)",
        "host_gpu": gpu,
        "host_platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }
    info.update({k: str(v) for k, v in extra.items()})
    return info

"""The machine a benchmark ran on, as its results documents name it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe(python: bool = False, load: bool = False) -> str:
    """CPU model and core count; with `load` the 1-minute load average now, with `python` the version."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    parts = [models[0] if models else platform.processor() or platform.machine(), f"{os.cpu_count()} cores"]
    if load:
        parts.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    if python:
        parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)

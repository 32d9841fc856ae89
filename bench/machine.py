"""What a benchmark ran on, as its results name it: the machine, and the commit of the code."""

from __future__ import annotations

import os
import platform
import subprocess
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


def commit_of(tree: Path, paths: tuple[str, ...] = ()) -> str:
    """The tree's commit, short, with "+changes" when it (or `paths` in it) has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=tree).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths], capture_output=True,
                           text=True, cwd=tree).stdout.strip()
    return (head or "unknown") + ("+changes" if dirty else "")

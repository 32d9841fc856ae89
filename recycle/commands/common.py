"""What the commands share: the console they print to, warnings shown on it, dtype names."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

from recycle.errors import UsageError

# Logs and pipes get a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def show_warnings() -> None:
    """Warnings of the libraries below (a setting changed on the way, such as a task's seq_len cut to
    the model's positions) printed on the console, above any progress bar."""
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])


def setup_service_logging() -> None:
    """The services log INFO lines with times, for `docker compose logs`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def torch_dtype(name: str | None):
    if name is None:
        return None
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}; choose one of {', '.join(sorted(DTYPES))}")
    import torch

    return getattr(torch, DTYPES[name])

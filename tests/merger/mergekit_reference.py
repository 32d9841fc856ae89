"""mergekit 0.1.5 as the reference: its own virtual environment, and a runner for many configs.

mergekit pulls datasets, pandas, pyarrow and peft, none of which recycle needs, so it
lives in .cache/mergekit-venv (created here from PyPI when missing, ~1 min; `make
mergekit-venv` does the same), never in the project's venv. All configs of a test
session run in one mergekit process (its imports take ~10 s; a merge of a tiny model
well under one), through mergekit's own `run_merge`, as `mergekit-yaml` calls it.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "mergekit-venv"
VERSION = "0.1.5"
STAMP = VENV / f".installed-mergekit-{VERSION}"
PYTHON = VENV / "bin" / "python"

DRIVER = """
import json, sys
import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions

for job in json.load(open(sys.argv[1])):
    options = MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True, random_seed=job.get("seed"))
    options.apply_global_options()  # what mergekit-yaml does first: the seed, the threads
    config = MergeConfiguration.model_validate(yaml.safe_load(open(job["config"])))
    run_merge(config, job["out"], options=options)
"""


@contextmanager
def _locked():
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "mergekit-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_mergekit() -> Path:
    """The mergekit venv's python, creating the venv first when missing."""
    with _locked():
        if not STAMP.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            pip = [str(PYTHON), "-m", "pip", "install", "--quiet"]
            # torch first and pinned (the local CPU build), so mergekit's requirement is already met.
            subprocess.run([*pip, "torch==2.13.0"], check=True)
            subprocess.run([*pip, f"mergekit=={VERSION}"], check=True)
            STAMP.touch()
    return PYTHON


def run_mergekit(jobs: list[dict], workdir: Path) -> None:
    """Run each {"config": path, "out": dir, "seed": int?} with mergekit, in one process."""
    python = ensure_mergekit()
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    (workdir / "driver.py").write_text(DRIVER)
    done = subprocess.run([str(python), str(workdir / "driver.py"), str(workdir / "jobs.json")],
                          capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, done.stderr[-4000:]

"""A pool folder is built by one process at a time: a second build of the same folder (another
`recycle demo`, a benchmark) waits for the first and reuses it. Before the lock, the second
deleted the first's checkpoints half-way (`start` clears the folder) and both went on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILDER = """
import sys, time
from pathlib import Path
from recycle.demo.finetune import BuildCache, build_once

folder = Path(sys.argv[1])

def build():
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    (folder / "pool" / "base").write_text("weights")
    with open(folder.parent / "builds.log", "a") as log:
        log.write("built\\n")
    (folder.parent / "building").touch()
    time.sleep(float(sys.argv[2]))  # long enough for the second process to arrive
    assert (folder / "pool" / "base").exists(), "the pool was deleted under the build"
    return ["python"], {"python": 1.0}

domains = build_once(BuildCache(folder, {"recipe": 1}), build, threads=1, recipe={}, label="toy pool", log=print)
print("domains", domains)
"""


def builder(folder: Path, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(folder), str(hold_s)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_second_build_of_a_folder_waits_and_reuses_the_first(tmp_path):
    folder = tmp_path / "pool-cache"
    first = builder(folder, hold_s=3.0)
    deadline = time.monotonic() + 60
    while not (tmp_path / "building").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
        time.sleep(0.05)
    second = builder(folder, hold_s=0.0)
    out_first, out_second = first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]
    assert first.returncode == 0 and second.returncode == 0, (out_first, out_second)
    assert "domains ['python']" in out_first and "domains ['python']" in out_second
    assert "another process is building" in out_second and "waiting" in out_second
    assert (tmp_path / "builds.log").read_text() == "built\n"  # once
    assert (folder / "pool" / "base").read_text() == "weights"

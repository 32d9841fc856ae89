"""Start the same processes docker-compose starts, as subprocesses, and stop them by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

RECYCLE = str(Path(sys.executable).parent / "recycle")


class Stack:
    def __init__(self, env: dict, log_dir: Path):
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        """`env`: variables for this process only, over the stack's."""
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen([RECYCLE, *args], env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        """Signal the process group: a Celery worker's pool children go with their parent."""
        process = self.processes.pop(name)
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes[name]
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            self.kill(name)

    def log(self, name: str, tail: int | None = 4000) -> str:
        """The process's output (every incarnation of it: restarts append), the last `tail` characters."""
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:] if tail else text

    def children(self, name: str) -> list[int]:
        """Pids of the process's children (a Celery worker's prefork pool processes)."""
        return children(self.processes[name].pid)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")


def children(pid: int) -> list[int]:
    """Live children only: a child killed a moment ago stays listed, a zombie, until its parent
    reaps it (a fresh-clone run froze such a one and found it gone when it came to kill it)."""
    try:
        listed = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [child for child in listed if process_state(child) not in ("Z", "X", None)]


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z...), None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]  # after the command name, which may hold spaces


class RedisServer:
    """A redis-server of our own on a free port, AOF on, its data in `directory` (never the
    machine's Redis): it can be killed and started again on the same port and data."""

    def __init__(self, directory: Path, port: int):
        self.directory, self.port = Path(directory), port
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30) -> "RedisServer":
        import redis

        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--save", "", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():  # a Redis still loading its AOF answers LOADING, an error
                    return self
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server on port {self.port} did not come up") from None
                time.sleep(0.05)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def http(method: str, url: str, body=None, token: str | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    text = raw.decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def wait_for(predicate, timeout: float, what: str, stack: Stack | None = None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack:
            stack.check_alive()
        try:
            value = predicate()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def scrape(url: str) -> dict[str, float]:
    """Prometheus exposition text -> {sample name with labels: value}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str, **labels: str) -> float:
    """Sum of samples of one metric whose labels include the given ones."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if (k == prefix or k.startswith(prefix + "{")) and all(w in k for w in wanted))

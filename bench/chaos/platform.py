"""The platform under test as OS processes: `squall run` (embedded) or `squall worker`
nodes (distributed), started, killed -9 and restarted by the harness; its worker
processes found and killed; its memory and file descriptors sampled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

APP = str(Path(__file__).with_name("app.py"))
# the `squall` command as installed (its entry point), on this interpreter
SQUALL = [sys.executable, "-c", "from squall.cli.main import main; main()"]


class Node:
    """One platform process (a supervisor with its zygote and forked workers)."""

    def __init__(self, name: str, root: Path, env: dict[str, str], *,
                 broker: str | None = None, store: str | None = None, app: str = APP) -> None:
        self.name, self.env = name, env
        self.url = ""
        self.data = root / name
        self.log = root / f"{name}.log"
        if broker is None:  # embedded: everything in the data directory
            self.cmd = ["run", app, "--port", "0", "--data-dir", str(self.data)]
        else:
            self.cmd = ["worker", app, "--broker", broker, "--store", store or "",
                        "--port", "0", "--data-dir", str(self.data)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait for its "listening" line; the seconds that took."""
        mark = self.log.stat().st_size if self.log.exists() else 0
        t0 = time.monotonic()
        with open(self.log, "a") as out:  # a file, not a pipe: nobody has to keep reading
            self.proc = subprocess.Popen(
                [*SQUALL, *self.cmd], stderr=out,
                stdout=subprocess.DEVNULL, env={**self.env, "SQUALL_NODE_ID": self.name})
        while time.monotonic() - t0 < timeout:
            with open(self.log, "rb") as f:
                f.seek(mark)
                for line in f.read().splitlines():
                    if b'"msg": "listening"' in line:
                        self.url = json.loads(line).get("url", "")
                        return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def workers(self) -> list[psutil.Process]:
        """Forked worker processes (the zygote's children), not the zygote itself."""
        if not self.alive:
            return []
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
            return [p for p in tree if p.ppid() != self.proc.pid]
        except psutil.Error:
            return []

    def tree(self) -> list[psutil.Process]:
        if not self.alive:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def kill(self) -> None:
        """kill -9 of the supervisor; its zygote and workers die with it (PDEATHSIG)."""
        if self.alive:
            doomed = self.tree()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            psutil.wait_procs(doomed, timeout=10)

    def stop(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def errors(self) -> list[str]:
        """The log's ERROR lines (structured JSON)."""
        out = []
        for line in self.tail(10**7).splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("level") in ("ERROR", "CRITICAL", "error", "critical"):
                out.append(rec.get("msg", line))
        return out


@dataclass
class ResourceSampler:
    """Samples the platform's processes every `every_s`: peak total RSS of the process
    trees, and each supervisor's open file descriptors over time."""

    nodes: list[Node]
    every_s: float = 0.2
    peak_rss: int = 0
    fds: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, node, pid, n
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        total = 0
        for node in self.nodes:
            for p in node.tree():
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            if node.alive:
                try:
                    n = psutil.Process(node.proc.pid).num_fds()
                    self.fds.append((time.monotonic(), node.name, node.proc.pid, n))
                except psutil.Error:
                    pass
        self.peak_rss = max(self.peak_rss, total)

    def fds_of(self, node: str, pid: int, since: float = 0.0) -> list[int]:
        return [n for t, name, p, n in self.fds if name == node and p == pid and t >= since]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

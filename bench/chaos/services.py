"""Private servers for the chaos runs: a nats-server and a PostgreSQL instance of the
harness's own, on free loopback ports with their data in a temporary directory, so a
scenario may kill -9 and restart them without disturbing the machine's shared services.

PostgreSQL is created with initdb and run with pg_ctl from /usr/lib/postgresql/*/bin; as
root, both run as the `postgres` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class ServiceError(RuntimeError):
    """A private server could not be started (not installed, or it failed)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class PrivateNats:
    """nats-server -js on a free port with its own store; kill() is a kill -9."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise ServiceError("nats-server is not installed (/usr/sbin/nats-server)")
        self.binary, self.store, self.port = binary, store, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> float:
        """Start it; the seconds it took to accept connections."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
             str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, timeout):
            self.kill()
            raise ServiceError(f"nats-server did not start on port {self.port}")
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise ServiceError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, fsync on) on a free port."""

    def __init__(self, root: Path) -> None:
        self.bin = _pg_bin()
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError("running as root needs a `postgres` user") from None

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ServiceError(f"{args[0]} failed: {done.stderr.strip()[-1000:]}")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            for parent in self.root.parents:  # a private temp dir (0700): let it through
                if parent.stat().st_uid == 0 and parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o011)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E",
                  "UTF8", "--no-instructions")

    def start(self, timeout: float = 30.0) -> float:
        t0 = time.monotonic()
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
                f"{self.root} -c fsync=on -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                  "-w", "-t", str(int(timeout)), "start", timeout=timeout + 5)
        return time.monotonic() - t0

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """kill -9 of the postmaster (a crash: the next start runs crash recovery)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # the backends notice the postmaster is gone and exit; wait for the port to close
        while time.monotonic() < deadline and wait_port(self.port, 0.05):
            time.sleep(0.05)

    def stop(self) -> None:
        if self.pid() is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", timeout=30)
        except ServiceError:
            self.kill()

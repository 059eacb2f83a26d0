"""The supervisor's side of a zygote: spawn it, read its manifest, ask it for workers.

A fork request is one SOCK_SEQPACKET message carrying two fds: the worker's end of a
fresh socketpair and a memfd for its logs. The supervisor keeps the other socket end and
its own copy of the memfd (to read what a killed worker had written).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from . import protocol as P


class ZygoteError(Exception):
    """The zygote could not start (the app failed to import); `detail` has the traceback."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


_SIGNAL_NAMES = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGKILL: "killed",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGTERM: "terminated",
}


def describe_wait_status(status: int | None) -> str:
    if status is None:
        return "exited"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = _SIGNAL_NAMES.get(sig) or signal.Signals(sig).name
        return f"signal: {name}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status}"


class ZygoteClient:
    def __init__(self, app_ref: str, *, on_exit: Callable[[int, int], None],
                 python: str | None = None, cwd: str | None = None) -> None:
        self.app_ref = app_ref
        self.python = python  # another interpreter (a platform version's virtualenv)
        self.cwd = cwd
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctrl: socket.socket | None = None
        self.manifest: dict[str, Any] | None = None
        self._first: asyncio.Future[list] | None = None
        self._unpacker = P.unpacker()
        self.boot_ms = 0.0

    async def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (parent, child):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        t0 = time.monotonic()
        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        if self.python is not None:  # its own packages only: nothing inherited
            for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE"):
                env.pop(name, None)
        self.proc = subprocess.Popen(
            [self.python or sys.executable, "-m", "squall.runtime.zygote",
             "--ctrl-fd", str(child.fileno()), "--app", self.app_ref],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
        )
        child.close()
        parent.setblocking(False)
        self.ctrl = parent
        self._first = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_readable)
        try:
            frame = await asyncio.wait_for(self._first, timeout_s)
        except asyncio.TimeoutError:
            await self.stop()
            raise ZygoteError(f"the app {self.app_ref} did not finish importing in {timeout_s:g} s")
        if frame[0] == P.LOAD_ERROR:
            await self.stop()
            raise ZygoteError(frame[1], frame[2])
        self.boot_ms = (time.monotonic() - t0) * 1000.0
        self.manifest = frame[1]
        return frame[1]

    def _on_readable(self) -> None:
        assert self.ctrl is not None
        while True:
            try:
                msg = self.ctrl.recv(8 << 20)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._closed()
                return
            self._unpacker.feed(msg)
            for frame in self._unpacker:
                if frame[0] == P.EXITED:
                    self.on_exit(frame[1], frame[2])
                elif self._first is not None and not self._first.done():
                    self._first.set_result(frame)

    def _closed(self) -> None:
        if self.ctrl is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.ctrl.fileno())
            except (RuntimeError, ValueError):  # pragma: no cover
                pass
        if self._first is not None and not self._first.done():
            self._first.set_result([P.LOAD_ERROR, "the zygote exited during import", ""])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.ctrl is not None

    def fork(self, function: str) -> tuple[socket.socket, int]:
        """Ask for a worker; returns our socket end and our copy of its log memfd."""
        if not self.alive:
            raise ZygoteError("the zygote is not running")
        assert self.ctrl is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_fd = os.memfd_create(f"squall-log-{function}", os.MFD_CLOEXEC)
        try:
            socket.send_fds(self.ctrl, [P.pack([P.FORK, function, time.monotonic()])],
                            [theirs.fileno(), log_fd])
        except OSError:
            ours.close()
            os.close(log_fd)
            raise
        finally:
            theirs.close()
        return ours, log_fd

    async def stop(self, grace_s: float = 2.0) -> None:
        loop = asyncio.get_running_loop()
        if self.ctrl is not None:
            try:
                loop.remove_reader(self.ctrl.fileno())
            except (ValueError, RuntimeError):  # pragma: no cover
                pass
            self.ctrl.close()
            self.ctrl = None
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            deadline = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if proc.poll() is None:
                proc.kill()
                await loop.run_in_executor(None, proc.wait)

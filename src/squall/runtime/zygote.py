"""The zygote: imports the user's app once, then forks a worker per request for one.

Spawned (fork+exec) by the supervisor, never forked from it: the supervisor runs uvloop
and its thread pool, and forking a threaded process is unsafe. The zygote is
single-threaded, runs no event loop, and blocks on its control socket (SOCK_SEQPACKET,
one frame per message, with the worker's socket and log memfd passed by SCM_RIGHTS).
A cold start is therefore one fork() of an already-imported interpreter.

It reaps its children (SIGCHLD through a wakeup pipe, then waitpid) and tells the
supervisor how each one ended, so a crash can be reported as "signal: segmentation fault".
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import select
import signal
import socket
import sys
import threading
import traceback

import msgpack

from . import protocol as P
from .loader import load_app
from .worker import prepare, run_worker

_PR_SET_PDEATHSIG = 1


_prctl = None  # looked up once in the zygote; a forked child only calls it


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies (no orphans left behind)."""
    global _prctl
    try:
        if _prctl is None:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass


def _send(ctrl: socket.socket, frame: list) -> None:
    ctrl.sendall(P.pack(frame))


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctrl, [P.EXITED, pid, status])


def serve(ctrl: socket.socket, app_ref: str) -> int:
    die_with_parent()
    try:
        app = load_app(app_ref)
        manifest = app.manifest()
    except BaseException as exc:  # noqa: BLE001 - any import failure is reported
        _send(ctrl, [P.LOAD_ERROR, f"{type(exc).__name__}: {exc}", traceback.format_exc()])
        return 3
    prepared = prepare()  # what every worker needs, built once instead of after each fork
    gc.collect()
    gc.freeze()  # keep the collector from dirtying copy-on-write pages in workers
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    warned_threads = False
    _send(ctrl, [P.MANIFEST, manifest])
    while True:
        try:
            readable, _, _ = select.select([ctrl, wake_r], [], [])
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            continue
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
            _reap(ctrl)
        if ctrl not in readable:
            continue
        msg, fds, _flags, _addr = socket.recv_fds(ctrl, 1 << 16, 2)
        if not msg:
            return 0  # the supervisor is gone; workers see EOF on their sockets
        frame = msgpack.unpackb(msg, raw=False)
        if frame[0] != P.FORK or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        _, function, t_request = frame
        fn = app.functions.get(function)
        if fn is None:
            for fd in fds:
                os.close(fd)
            continue
        if threading.active_count() > 1 and not warned_threads:
            warned_threads = True
            print(
                f"squall: warning: app {app.name!r} started threads at import; forking a "
                "threaded process may deadlock workers. Start threads inside handlers instead.",
                file=sys.stderr,
            )
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            ctrl.close()
            die_with_parent()
            run_worker(app, fn, fds[0], fds[1], t_request, prepared)
        for fd in fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="squall-zygote")
    parser.add_argument("--ctrl-fd", type=int, required=True)
    parser.add_argument("--app", required=True)
    args = parser.parse_args(argv)
    ctrl = socket.socket(fileno=args.ctrl_fd)
    ctrl.setblocking(True)
    return serve(ctrl, args.app)


if __name__ == "__main__":
    sys.exit(main())

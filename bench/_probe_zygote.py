"""Squall's real zygote, with timestamps taken around its steps (for profile_cold.py only).

Wraps, from the outside and without changing what they do: the zygote's select/recv_fds
and fork, and in the forked worker run_worker, Worker.setup, the first _read, the handler
call and the first sends. Each worker writes its timestamps (CLOCK_MONOTONIC ns, the same
clock as the supervisor's) to $SQUALL_PROBE_DIR/<pid>.json once its first result is sent.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time

ns = time.monotonic_ns
PROBE: dict[str, int] = {}
PROBE_DIR = os.environ["SQUALL_PROBE_DIR"]

_select = select.select
_recv_fds = socket.recv_fds
_fork = os.fork


def _sel(*a, **k):
    r = _select(*a, **k)
    PROBE["z_wake"] = ns()
    return r


def _recv(*a, **k):
    r = _recv_fds(*a, **k)
    PROBE["z_recv"] = ns()
    return r


def _fork_probe():
    PROBE["z_fork_call"] = ns()
    pid = _fork()
    if pid == 0:
        PROBE["c_running"] = ns()
    return pid


select.select = _sel
socket.recv_fds = _recv
os.fork = _fork_probe

from squall.runtime import protocol as P  # noqa: E402
from squall.runtime import worker as W  # noqa: E402
from squall.runtime import zygote as Z  # noqa: E402

_run_worker = Z.run_worker
_setup = W.Worker.setup
_send = W.Worker.send
_read = W.Worker._read
_call = W.call


def run_worker(app, fn, sock_fd, log_fd, t_request):
    PROBE["t_request"] = int(t_request * 1e9)
    PROBE["c_run_worker"] = ns()
    _run_worker(app, fn, sock_fd, log_fd, t_request)


def setup(self, t_request):
    PROBE["c_setup_start"] = ns()
    _setup(self, t_request)


def send(self, frame):
    op = frame[0]
    if op == P.READY:
        PROBE["c_ready_send"] = ns()
        _send(self, frame)
        PROBE["c_ready_sent"] = ns()
    elif op == P.RESULT and "c_result_sent" not in PROBE:
        PROBE["c_result_send"] = ns()
        _send(self, frame)
        PROBE["c_result_sent"] = ns()
        with open(os.path.join(PROBE_DIR, f"{os.getpid()}.json"), "w") as f:
            json.dump(PROBE, f)
    else:
        _send(self, frame)


def _read_probe(self):
    _read(self)
    PROBE.setdefault("c_first_read", ns())


def call(*a, **k):
    PROBE.setdefault("c_call_start", ns())
    try:
        return _call(*a, **k)
    finally:
        PROBE.setdefault("c_call_end", ns())


Z.run_worker = run_worker
W.Worker.setup = setup
W.Worker.send = send
W.Worker._read = _read_probe
W.call = call

if __name__ == "__main__":
    sys.exit(Z.main())

"""The NATS server the backend tests run against, a unique prefix per test, and private
servers to kill and restart.

The shared server is the one on this machine (127.0.0.1:4222, started with JetStream),
or the URL in SQUALL_TEST_NATS_URL. When it is unreachable the NATS tests skip, saying how
to start it, except under CI=true where that is a failure. Each test's broker names
everything it creates with a unique prefix, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest

from squall.backends.jetstream.names import Names

DEFAULT_URL = "nats://127.0.0.1:4222"
START_HINT = "start it with `nats-server -js` (JetStream on), or point SQUALL_TEST_NATS_URL at one"

_reachable: dict[str, str | None] = {}  # url -> why it is unreachable (None: it is fine)


def _problem(url: str) -> str | None:
    async def check() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=1, reconnect_time_wait=0.1)
        try:
            await nc.request("$JS.API.INFO", b"", timeout=2)
        finally:
            await nc.close()

    host, _, port = url.split("://", 1)[1].rpartition(":")
    try:  # a quick TCP look first: nats-py's own connect keeps retrying a closed port
        socket.create_connection((host, int(port)), timeout=2).close()
        asyncio.run(asyncio.wait_for(check(), 5))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def nats_url() -> str:
    """The test server's URL; skips (or fails under CI=true) when it is unreachable."""
    url = os.environ.get("SQUALL_TEST_NATS_URL", DEFAULT_URL)
    if url not in _reachable:
        _reachable[url] = _problem(url)
    problem = _reachable[url]
    if problem is not None:
        message = f"NATS with JetStream is not reachable at {url} ({problem}): {START_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


async def delete_prefix(url: str, prefix: str) -> list[str]:
    """Delete every stream (and KV bucket) named under `prefix`; their names."""
    names = Names(prefix)
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jsm()
        doomed = [s.config.name for s in await js.streams_info() if names.owns(s.config.name)]
        for name in doomed:
            await js.delete_stream(name)
        return doomed
    finally:
        await nc.close()


@contextmanager
def unique_prefix(url: str) -> Iterator[str]:
    """A prefix no other test uses; what was created under it is deleted afterwards."""
    prefix = f"T{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        asyncio.run(delete_prefix(url, prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A private nats-server with JetStream on a free port and its own store, for tests
    that kill it (-9) and start it again on the same port and store."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            message = "nats-server is not installed: the restart test starts its own"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once it logged that it is ready."""
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()
        log: list[str] = []

        def watch(stream):  # type: ignore[no-untyped-def]
            with stream:
                for line in stream:
                    log.append(line)
                    if "Server is ready" in line:
                        ready.set()
            ready.set()  # it exited

        threading.Thread(target=watch, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError(f"nats-server did not start on port {self.port}:\n{''.join(log)}")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

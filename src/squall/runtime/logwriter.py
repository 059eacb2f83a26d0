"""The invocation-log writer: a small process that owns the store's write side.

The supervisor meters every invocation. Writing those rows to SQLite on one of its own
threads costs the event loop GIL time on every request; here the supervisor only packs
rows (msgpack) and writes them down a pipe, and this process does the inserts. If it
dies, the supervisor starts another and carries on (rows in the pipe at that moment are
lost; acknowledged messages never travel this way).

    python -m squall.runtime.logwriter STORE_URL
        (batches of rows arrive on stdin; one byte goes back on stdout when a batch is
        written, so `record` returns only once its rows are in the store)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import msgpack

from ..backends import open_store


class ProcessLogSink:
    """`record_packed(rows, n)` sends n msgpack-encoded rows (ROW_FIELDS order) to a writer
    process, started on first use, and returns once they are in the store."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "squall.runtime.logwriter", self.store_url],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._proc

    def _send(self, proc: subprocess.Popen[bytes], data: bytes) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(data)
        proc.stdin.flush()
        if proc.stdout.read(1) != b".":
            raise BrokenPipeError("the log writer exited")

    def record_packed(self, rows: bytes, count: int) -> None:
        if not count:
            return
        packer = msgpack.Packer(use_bin_type=True)
        data = packer.pack_array_header(count) + rows  # one msgpack array: the batch
        with self._lock:
            try:
                self._send(self._ensure(), data)
            except BrokenPipeError:  # it died: start another, send again
                self._proc = None
                self._send(self._ensure(), data)

    def record_spans(self, rows: list[tuple]) -> None:
        """Spans (SPAN_FIELDS order) go down the same pipe, as {"spans": [...]}."""
        if not rows:
            return
        data = msgpack.packb({"spans": rows}, use_bin_type=True)
        with self._lock:
            try:
                self._send(self._ensure(), data)
            except BrokenPipeError:
                self._proc = None
                self._send(self._ensure(), data)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                if self._proc.stdout is not None:
                    self._proc.stdout.close()
                try:
                    self._proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m squall.runtime.logwriter STORE_URL", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor closes our stdin to stop us
    store = open_store(args[0])
    unpacker = msgpack.Unpacker(raw=False)
    fd = sys.stdin.buffer.fileno()
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return 0
            unpacker.feed(chunk)
            for batch in unpacker:  # the sender waits for each batch's acknowledgement
                if isinstance(batch, dict):  # spans (squall.observe.traces)
                    store.record_spans(batch["spans"])
                else:
                    store.record_rows(batch)
                os.write(1, b".")
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())

"""A local SMTP sink for the examples' tests: aiosmtpd on 127.0.0.1, on a free port, on
its own thread. It keeps every message it accepts and counts how many SMTP connections
were open at once (what a load-levelled sender must keep under its concurrency)."""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Counting(SMTP):
    def __init__(self, sink: SmtpSink, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._sink = sink

    def connection_made(self, transport: Any) -> None:
        self._sink._opened()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._closed()
        super().connection_lost(exc)


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.open = 0
        self.max_open = 0
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._controller: Controller | None = None
        self.port = 0

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self._received:
            self.messages.append(msg)  # type: ignore[arg-type]
            self._received.notify_all()
        return "250 Message accepted"

    def _opened(self) -> None:
        with self._lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)

    def _closed(self) -> None:
        with self._lock:
            self.open -= 1

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        """Block until `count` messages arrived (bounded by `timeout` seconds)."""
        with self._received:
            if not self._received.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"the SMTP sink got {len(self.messages)} of {count} "
                                     f"messages in {timeout} s")
            return list(self.messages)

    def __enter__(self) -> SmtpSink:
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            controller = Controller(self, hostname="127.0.0.1", port=self.port)
            controller.factory = lambda: _Counting(self, controller.handler)  # type: ignore
            try:
                controller.start()
            except (OSError, RuntimeError):
                if attempt == 2:
                    raise
                continue
            self._controller = controller
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()

"""Inbound email: an SMTP server (aiosmtpd) on the supervisor's loop for the app's
`@app.on_email` functions.

    sender --SMTP--> EmailReceiver
        RCPT TO   no function takes that address       -> 550 5.1.1
        DATA      over the size limit                  -> 552 (aiosmtpd, also via SIZE)
                  not parseable as a message           -> 554 5.6.0
                  1. parsed with the stdlib `email` package (policy.default)
                  2. the raw message and each attachment stored in the function's bucket
                     (squall.sources.state, so object events and lifecycle apply)
                  3. one durable write: the event on `_async.<fn>` of every function
                     addressed
                  storage or broker unavailable        -> 451 4.3.0 (the sender retries)
                  -> 250 2.0.0 only after 1-3: acknowledged means durable

Attachment objects are written before the event; if the event write then fails they are
left behind (the sender's retry stores new copies): they are ordinary objects, which a
lifecycle rule on the bucket can expire.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Callable

from ..backends.broker import OutMessage
from ..config import DEFAULT_MAX_MESSAGE_BYTES
from ..events.envelope import new_traceparent
from ..observe import logs

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(filename: str | None, n: int) -> str:
    name = _UNSAFE.sub("_", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = name.strip("._")[:100]
    return f"{n}-{name or 'attachment'}"


def _addresses(msg: EmailMessage, header: str) -> list[str]:
    values = msg.get_all(header) or []
    return [addr for _, addr in getaddresses([str(v) for v in values]) if addr]


def _text(part: Any) -> str | None:
    """A text part's content with SMTP's CRLF line ends made plain newlines."""
    return None if part is None else part.get_content().replace("\r\n", "\n")


def parse_message(raw: bytes) -> tuple[EmailMessage, dict[str, Any], list[dict[str, Any]]]:
    """(message, its fields, its attachments with their data). Raises ValueError for
    input that is not an email message."""
    if not raw.strip():
        raise ValueError("the message is empty")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(msg, EmailMessage) or not list(msg.keys()):
        raise ValueError("the message has no header section")
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    attachments = []
    for n, part in enumerate(msg.iter_attachments(), start=1):
        data = part.get_payload(decode=True) or b""
        attachments.append({"filename": part.get_filename(), "name": _safe_name(
            part.get_filename(), n), "content_type": part.get_content_type(), "data": data})
    fields = {
        "message_id": str(msg["Message-ID"] or "") or None,
        "from": str(msg["From"] or "") or None,
        "to": _addresses(msg, "To"), "cc": _addresses(msg, "Cc"),
        "reply_to": _addresses(msg, "Reply-To"),
        "subject": str(msg["Subject"] or ""),
        "date": str(msg["Date"] or "") or None,
        "text": _text(text_part), "html": _text(html_part),
        "headers": [[k, str(v)] for k, v in msg.items()],
    }
    return msg, fields, attachments


class EmailHandler:
    """aiosmtpd's handler: the RCPT and DATA hooks."""

    def __init__(self, receiver: EmailReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.receiver.functions_for(address):
            logs.event("email refused: unknown recipient", logging.INFO, recipient=address,
                       peer=str(session.peer))
            return f"550 5.1.1 <{address}>: no such recipient here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return await self.receiver.accept(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content or b"")


class EmailReceiver:
    def __init__(self, broker: Any, state: Any, configs: dict[str, Any], *,
                 host: str = "127.0.0.1", port: int = 2525,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.state = state
        self.host = host
        self.port = port
        self.max_bytes = max_bytes
        self.clock = clock
        self.triggers: dict[str, Any] = {}
        self.configure(configs)
        self._server: asyncio.AbstractServer | None = None

    def configure(self, configs: dict[str, Any]) -> None:
        self.triggers = {n: c.email for n, c in configs.items() if c.email is not None}

    def functions_for(self, address: str) -> list[str]:
        return [n for n, t in self.triggers.items() if t.matches(address)]

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        handler = EmailHandler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=self.max_bytes, enable_SMTPUTF8=True,
                         hostname="squall", ident="Squall ESMTP", loop=loop),
            self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logs.event("smtp listening", host=self.host, port=self.port,
                   max_bytes=self.max_bytes, functions=sorted(self.triggers))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def accept(self, mail_from: str | None, rcpt_tos: list[str], raw: bytes) -> str:
        """Everything DATA does; returns the SMTP reply."""
        mid = uuid.uuid4().hex
        try:
            _, fields, attachments = parse_message(raw)
        except Exception as exc:  # the stdlib parser is lenient: this is truly malformed
            logs.event("email refused: malformed message", logging.WARNING, error=str(exc),
                       mail_from=mail_from)
            return f"554 5.6.0 Message could not be parsed: {exc}"
        targets: dict[str, list[str]] = {}
        for rcpt in rcpt_tos:
            for fn in self.functions_for(rcpt):
                targets.setdefault(fn, []).append(rcpt)
        if not targets:
            return "554 5.1.1 No valid recipients"
        now = self.clock()
        when = datetime.fromtimestamp(now, timezone.utc)
        prefix = f"{when:%Y/%m/%d}/{mid}/"
        try:
            stored = {}
            for bucket in sorted({self.triggers[fn].bucket for fn in targets}):
                stored[bucket] = await self._store(bucket, prefix, raw, attachments)
            batches: dict[str, list[OutMessage]] = {}
            for fn, rcpts in targets.items():
                raw_ref, refs = stored[self.triggers[fn].bucket]
                event = {"id": mid, **fields, "mail_from": mail_from, "recipients": rcpts,
                         "attachments": refs, "raw": raw_ref, "size": len(raw),
                         "received_at": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
                body = json.dumps(event, separators=(",", ":"), default=str).encode()
                if len(body) > DEFAULT_MAX_MESSAGE_BYTES:  # the bodies stay in the raw object
                    event.update(text=None, html=None, truncated=True)
                    body = json.dumps(event, separators=(",", ":"), default=str).encode()
                batches.setdefault(f"_async.{fn}", []).append(OutMessage(
                    body=body, attributes={"email_id": mid}, trace=new_traceparent()))
            await self.broker.send_many(batches)
        except Exception as exc:
            logs.event("email not accepted: could not be made durable", logging.ERROR,
                       error=f"{type(exc).__name__}: {exc}", id=mid)
            return "451 4.3.0 Temporary failure storing the message; try again later"
        logs.event("email accepted", id=mid, functions=sorted(targets), bytes=len(raw),
                   attachments=len(attachments))
        return f"250 2.0.0 Message accepted for delivery as {mid}"

    async def _store(self, bucket: str, prefix: str, raw: bytes,
                     attachments: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
        """The raw message and the attachments, as the platform (caller None)."""
        def put(key: str, data: bytes, content_type: str) -> dict[str, Any]:
            return self.state.call(None, "bucket", bucket, "put", [key, data, content_type])

        info = await self.state.run(put, prefix + "message.eml", raw, "message/rfc822")
        raw_ref = {"bucket": bucket, "key": info["key"], "size": info["size"]}
        refs = []
        for a in attachments:
            info = await self.state.run(put, prefix + a["name"], a["data"], a["content_type"])
            refs.append({"filename": a["filename"], "content_type": a["content_type"],
                         "size": info["size"], "bucket": bucket, "key": info["key"],
                         "etag": info.get("etag")})
        return raw_ref, refs


__all__ = ["DEFAULT_MAX_BYTES", "EmailReceiver", "parse_message"]

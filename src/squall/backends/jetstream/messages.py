"""How a Squall message is stored in JetStream: the body as is, everything else in
headers. Free text (errors, reasons, queue names) is JSON-encoded, as header values
cannot hold line breaks.

    Squall-Id          the message id, once it moved (else: stream tag + sequence)
    Squall-Sent        sent_at, seconds since the epoch (the broker's clock)
    Squall-Attrs       attributes, JSON
    traceparent        W3C trace context (also on stream records)
    Squall-Due         a delayed message: wall-clock time it becomes visible
    Squall-Count       a dead letter: receives before it was dead-lettered
    Squall-Error       a dead letter: its last error
    Squall-DLQ-Reason  a dead letter: why
    Squall-Source      a dead letter: the queue it died on
    Nats-Msg-Id        the server's deduplication key
"""

from __future__ import annotations

import json
from typing import Mapping

H_ID = "Squall-Id"
H_SENT = "Squall-Sent"
H_ATTRS = "Squall-Attrs"
H_TRACE = "traceparent"
H_DUE = "Squall-Due"
H_COUNT = "Squall-Count"
H_ERROR = "Squall-Error"
H_REASON = "Squall-DLQ-Reason"
H_SOURCE = "Squall-Source"
MSG_ID = "Nats-Msg-Id"
KEPT = (H_ID, H_SENT, H_ATTRS, H_TRACE)  # what a message keeps when it moves queue


def text_header(value: str) -> str:
    return json.dumps(value)


def trace_header(value: str) -> str:
    """A traceparent (with its loop lineage) as a header value: no line breaks."""
    return value.replace("\r", "").replace("\n", "")


def read_text_header(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        out = json.loads(value)
    except ValueError:
        return value
    return out if isinstance(out, str) else value


def nak_delay(seconds: float) -> bytes:
    """A nak that keeps the delivery pending and hands it out again after `seconds`."""
    return b'-NAK {"delay": %d}' % max(1, int(seconds * 1e9))


def moved(headers: Mapping[str, str], message_id: str, msg_id: str) -> dict[str, str]:
    """The headers a message keeps when it moves to a queue, under the Msg-Id of the move
    (so a repeated move is dropped as a duplicate)."""
    out = {k: headers[k] for k in KEPT if k in headers}
    out[H_ID] = message_id
    out[MSG_ID] = msg_id
    return out

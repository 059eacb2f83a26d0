"""Queue batches as handlers see them, and what their results mean.

Native: `handler(batch, ctx)` gets a list of `QueueMessage`; to fail only some items it
returns `BatchResult(failed=[message ids])` (or AWS's `{"batchItemFailures": [...]}`);
raising fails the whole batch. `format="aws-sqs"`: the handler gets SQS's Lambda event
(`{"Records": [...]}`) and may answer `{"batchItemFailures": [{"itemIdentifier": id}]}`.

Either way the result is normalised to the list of failed ids; as in Lambda, a failure
list naming an id that is not in the batch fails the whole batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .envelope import Event


@dataclass(frozen=True, slots=True)
class QueueMessage:
    id: str
    body: str
    queue: str
    attributes: dict[str, str] = field(default_factory=dict)
    receive_count: int = 1
    sent_at: float = 0.0
    trace: str | None = None

    @property
    def data(self) -> Any:
        """The body parsed as JSON (what `app.send` put in)."""
        return json.loads(self.body)

    @property
    def cloudevent(self) -> Event:
        """This message as a CloudEvents 1.0 event (the trace as `traceparent`)."""
        try:
            data: Any = self.data
        except ValueError:
            data = self.body
        return Event(id=self.id, source=f"/squall/queues/{self.queue}",
                     type="squall.queue.message",
                     time=datetime.fromtimestamp(self.sent_at, timezone.utc), data=data,
                     extensions={"traceparent": self.trace} if self.trace else {})


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Return from a queue handler to report which messages failed (by id)."""

    failed: list[str] = field(default_factory=list)


class InvalidBatchResponse(ValueError):
    pass


def native_batch(payload: dict[str, Any]) -> list[QueueMessage]:
    q = payload["queue"]
    return [
        QueueMessage(id=m["id"], body=m["body"], queue=q, attributes=m.get("attributes", {}),
                     receive_count=m.get("receive_count", 1), sent_at=m.get("sent_at", 0.0),
                     trace=m.get("trace"))
        for m in payload["messages"]
    ]


def sqs_event(payload: dict[str, Any], *, region: str = "local",
              account: str = "000000000000") -> dict[str, Any]:
    """The SQS -> Lambda event for a batch (the shape of AWS's sqs-event samples)."""
    q = payload["queue"]
    records = []
    for m in payload["messages"]:
        sent_ms = str(int(m.get("sent_at", 0.0) * 1000))
        attrs = {
            k: {"stringValue": v, "stringListValues": [], "binaryListValues": [],
                "dataType": "String"}
            for k, v in m.get("attributes", {}).items()
        }
        record = {
            "messageId": m["id"],
            "receiptHandle": m.get("receipt", m["id"]),
            "body": m["body"],
            "attributes": {
                "ApproximateReceiveCount": str(m.get("receive_count", 1)),
                "SentTimestamp": sent_ms,
                "SenderId": "squall",
                "ApproximateFirstReceiveTimestamp": sent_ms,
            },
            "messageAttributes": attrs,
            "md5OfBody": hashlib.md5(m["body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{region}:{account}:{q}",
            "awsRegion": region,
        }
        if m.get("trace"):
            record["attributes"]["AWSTraceHeader"] = m["trace"]
        records.append(record)
    return {"Records": records}


def failed_ids(result: Any, batch_ids: list[str]) -> list[str]:
    """The ids a handler's result reports as failed (all of them if the report is bad)."""
    if result is None:
        return []
    if isinstance(result, BatchResult):
        failed = list(result.failed)
    elif isinstance(result, dict) and "batchItemFailures" in result:
        items = result["batchItemFailures"]
        if items is None:
            return []
        if not isinstance(items, list):
            return list(batch_ids)
        failed = []
        for item in items:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not isinstance(ident, str) or not ident:
                return list(batch_ids)
            failed.append(ident)
    else:
        return []
    known = set(batch_ids)
    if any(f not in known for f in failed):
        return list(batch_ids)
    return [i for i in batch_ids if i in set(failed)]

"""What app code calls on a running app: `send`, `publish`, `notify`, `invoke_async`,
`put_records`, `@app.idempotent`. A mixin of `App`; each call goes to whatever runtime
bound the app (a worker, the test harness), so no I/O happens here either.
"""

from __future__ import annotations

import json
from typing import Any, Callable


class NotRunning(RuntimeError):
    """`app.invoke` was called where no Squall runtime runs this app."""


class Calls:
    name: str
    _invoker: Any

    def put_records(self, stream: str, records: list[tuple[str, Any]]) -> list[str]:
        """Append `(partition_key, data)` records to a stream, durably and in order per
        partition key. Returns their sequence numbers ("shard:seq")."""
        if self._invoker is None:
            raise NotRunning(f"app {self.name!r} is not running here: call app.put_records "
                             "inside a function or under squall.testing")
        items = []
        for key, data in records:
            if not isinstance(key, str) or not 1 <= len(key) <= 256:
                raise ValueError(f"a partition key must be a string of 1-256 characters, "
                                 f"got {key!r}")
            try:
                items.append([key, json.dumps(data, separators=(",", ":"))])
            except (TypeError, ValueError) as exc:
                raise TypeError(f"a record for stream {stream!r} is not JSON-serialisable: "
                                f"{exc}") from None
        return self._invoker.put_records(stream, items)

    def put_record(self, stream: str, data: Any, partition_key: str) -> str:
        return self.put_records(stream, [(partition_key, data)])[0]

    def notify(self, topic: str, message: Any, *, subject: str | None = None,
               attributes: dict[str, Any] | None = None) -> str:
        """Publish `message` to `topic` (SNS Publish): each subscription whose filter
        policy matches gets it, durably, in one write. Returns the message id. Attribute
        values may be strings, numbers or lists of strings."""
        if self._invoker is None:
            raise NotRunning(f"app {self.name!r} is not running here: call app.notify inside a "
                             "function or under squall.testing")
        try:
            body = json.dumps({"topic": topic, "message": message, "subject": subject,
                               "attributes": dict(attributes or {})})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the message for topic {topic!r} is not JSON-serialisable: "
                            f"{exc}") from None
        return self._invoker.notify(body)

    def publish(self, source: str, detail_type: str, detail: Any = None, *,
                resources: list[str] | None = None) -> str:
        """Put an event on the bus (EventBridge PutEvents): archived, matched against every
        rule, delivered durably to each matching rule's targets. Returns the event id."""
        if self._invoker is None:
            raise NotRunning(
                f"app {self.name!r} is not running here: call app.publish inside a function, "
                "under squall.testing, or use `squall publish APP SOURCE DETAIL_TYPE`"
            )
        for what, value in (("source", source), ("detail_type", detail_type)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"app.publish: {what} must be a non-empty string")
        try:
            body = json.dumps({"source": source, "detail-type": detail_type,
                               "detail": detail if detail is not None else {},
                               "resources": list(resources or [])})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the event detail is not JSON-serialisable: {exc}") from None
        return self._invoker.publish(body)

    def invoke_async(self, function: str, data: Any = None) -> str:
        """Queue `function` to run with `data` (Lambda's Event invocation): durable when this
        returns, retried with backoff on failure, then sent to the function's on_failure
        destination (or its dead-letter queue). Returns the request id."""
        if self._invoker is None:
            raise NotRunning(
                f"app {self.name!r} is not running here: call app.invoke_async inside a "
                "function or under squall.testing"
            )
        try:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the event for {function!r} is not JSON-serialisable: {exc}") from None
        return self._invoker.invoke_async(function, body)

    def idempotent(self, fn: Callable[..., Any] | None = None, *,
                   key: Callable[..., Any] | str | None = None, expires_s: float = 3600.0,
                   lock_s: float = 60.0) -> Any:
        """Run the decorated function once per key (see squall.idempotency)."""
        from .idempotency import make_decorator  # no I/O at decoration time

        decorate = make_decorator(self, key, expires_s, lock_s)
        return decorate(fn) if fn is not None else decorate

    def send(self, queue: str, data: Any, *, delay_s: float = 0, dedup_key: str | None = None,
             attributes: dict[str, str] | None = None) -> str:
        """Put one message on `queue`; durable when this returns. Returns the message id."""
        return self.send_batch(queue, [data], delay_s=delay_s,
                               dedup_keys=[dedup_key] if dedup_key else None,
                               attributes=attributes)[0]

    def send_batch(self, queue: str, items: list[Any], *, delay_s: float = 0,
                   dedup_keys: list[str | None] | None = None,
                   attributes: dict[str, str] | None = None) -> list[str]:
        """Put many messages on `queue` in one durable write. Returns their ids."""
        if self._invoker is None:
            raise NotRunning(
                f"app {self.name!r} is not running here: call app.send inside a function, "
                "under squall.testing, or use `squall send APP QUEUE`"
            )
        if dedup_keys is not None and len(dedup_keys) != len(items):
            raise ValueError("dedup_keys must have one entry per item")
        messages = []
        for i, item in enumerate(items):
            try:
                body = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"message {i} for queue {queue!r} is not JSON-serialisable: "
                                f"{exc}") from None
            messages.append({"body": body, "delay_s": delay_s,
                             "attributes": dict(attributes or {}),
                             "dedup_key": dedup_keys[i] if dedup_keys else None})
        return self._invoker.send(queue, messages)

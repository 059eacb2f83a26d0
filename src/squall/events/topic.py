"""Topics (SNS semantics), the pure parts: the notification as SNS shapes it, what a
filter policy is matched against, and the events subscribers receive.

A filter policy uses the same operators as EventBridge patterns (exact, prefix, suffix,
anything-but, numeric, exists, equals-ignore-case, cidr, $or) and is matched against the
message attributes (`MessageAttributes` scope: String as text, Number as a number,
String.Array as a list) or against the message body parsed as JSON (`MessageBody`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def attribute_type(value: Any) -> tuple[str, str]:
    if isinstance(value, bool):
        return "String", "true" if value else "false"
    if isinstance(value, (int, float)):
        return "Number", json.dumps(value)
    if isinstance(value, list):
        return "String.Array", json.dumps(value)
    return "String", str(value)


def notification(topic: str, message_id: str, message: Any, subject: str | None,
                 attributes: dict[str, Any], *, when: float,
                 region: str = "local", account: str = "000000000000") -> dict[str, Any]:
    """SNS's notification object (the `Sns` of a Lambda record, the body sent to SQS)."""
    arn = f"arn:aws:sns:{region}:{account}:{topic}"
    ts = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
    note: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": arn,
        "Subject": subject,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": ts.replace("+00:00", "Z"),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertUrl": "",
        "UnsubscribeUrl": "",
        "MessageAttributes": {
            k: dict(zip(("Type", "Value"), attribute_type(v))) for k, v in attributes.items()
        },
    }
    return note


def filter_input(message: Any, attributes: dict[str, Any], scope: str) -> dict[str, Any] | None:
    """What a filter policy is matched against (None: nothing can match)."""
    if scope == "MessageBody":
        if isinstance(message, str):
            try:
                message = json.loads(message)
            except ValueError:
                return None
        return message if isinstance(message, dict) else None
    return dict(attributes)


def lambda_event(note: dict[str, Any], subscription: str) -> dict[str, Any]:
    """SNS -> Lambda: the `{"Records": [...]}` event of `format="aws-sns"`."""
    arn = f"{note['TopicArn']}:{subscription}"
    return {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                         "EventSubscriptionArn": arn, "Sns": note}]}


def native_event(topic: str, message_id: str, message: Any, subject: str | None,
                 attributes: dict[str, Any], timestamp: str) -> dict[str, Any]:
    return {"topic": topic, "message_id": message_id, "message": message, "subject": subject,
            "attributes": attributes, "timestamp": timestamp}

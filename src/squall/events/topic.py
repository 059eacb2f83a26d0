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


class InvalidFilterPolicy(ValueError):
    pass


MAX_POLICY_KEYS = 5
MAX_POLICY_COMBINATIONS = 150


def validate_filter_policy(policy: dict[str, Any], scope: str) -> None:
    """SNS's rules on top of the pattern grammar: at most 5 keys, at most 150 value
    combinations, no nested objects for MessageAttributes, and no `wildcard` or
    `anything-but` on suffixes or wildcards (which SNS does not support)."""
    from .patterns import InvalidPattern, compile_pattern

    if not isinstance(policy, dict):
        raise InvalidFilterPolicy("FilterPolicy: a filter policy must be a JSON object")
    try:
        compile_pattern(policy)
    except InvalidPattern as exc:
        raise InvalidFilterPolicy(f"FilterPolicy: {exc.reason}") from None
    if scope == "MessageAttributes" and any(
            isinstance(v, dict) for k, v in policy.items() if k != "$or"):
        raise InvalidFilterPolicy("Filter policy scope MessageAttributes does not support "
                                  "nested filter policy")
    keys: set[str] = set()
    _walk(policy, "", keys)
    if len(keys) > MAX_POLICY_KEYS:
        raise InvalidFilterPolicy(f"FilterPolicy: Filter policy can not have more than "
                                  f"{MAX_POLICY_KEYS} keys")
    if _combinations(policy) > MAX_POLICY_COMBINATIONS:
        raise InvalidFilterPolicy("FilterPolicy: Filter policy is too complex")


def _walk(node: dict[str, Any], prefix: str, keys: set[str]) -> None:
    for k, v in node.items():
        if k == "$or":
            for branch in v:
                _walk(branch, prefix, keys)
        elif isinstance(v, dict):
            _walk(v, f"{prefix}{k}.", keys)
        else:
            keys.add(prefix + k)
            for cond in v:
                if isinstance(cond, dict):
                    if "wildcard" in cond:
                        raise InvalidFilterPolicy("FilterPolicy: Unrecognized match type "
                                                  "wildcard")
                    but = cond.get("anything-but")
                    if isinstance(but, dict) and ({"suffix", "wildcard"} & set(but)):
                        kind = "suffix" if "suffix" in but else "wildcard"
                        raise InvalidFilterPolicy(f"FilterPolicy: Unsupported anything-but "
                                                  f"pattern: {kind}")


def _combinations(node: dict[str, Any]) -> int:
    total = 1
    for k, v in node.items():
        if k == "$or":
            total *= sum(_combinations(b) for b in v)
        elif isinstance(v, dict):
            total *= _combinations(v)
        else:
            total *= max(1, len(v))
    return total

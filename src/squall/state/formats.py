"""Change and object events as handlers see them: native objects, and the AWS shapes
(DynamoDB Streams records for `format="aws-dynamodb"`, S3 event notifications for
`format="aws-s3"`). Pure functions: the supervisor builds the feed payload, the worker
shapes it for the handler.

The feed payload (supervisor -> worker) is
`{"source", "resource", "function", "records": [{"sequence", "shard", "seq", "key",
"event", "at", "body"}]}` where `body` is the feed record's JSON, parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

ACCOUNT = "000000000000"
STREAM_LABEL = "2024-01-01T00:00:00.000"
_AWS_EVENT = {"insert": "INSERT", "modify": "MODIFY", "remove": "REMOVE"}


def sequence(shard: int, seq: int) -> str:
    """A record's sequence number as a string of digits, ordered within its shard
    (shards are at most 256, so shard fits the last three digits)."""
    return str(seq * 1000 + shard)


def _region() -> str:
    return os.environ.get("AWS_REGION", "local")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _event_id(source: str, resource: str, seq: str) -> str:
    """Stable across redeliveries of the same record."""
    return hashlib.md5(f"{source}:{resource}:{seq}".encode()).hexdigest()


# -- table changes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one item: `event` is insert, modify or remove; `old`/`new` are the
    item before and after (None where there is none)."""

    event: str
    table: str
    keys: dict[str, Any]
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    sequence: str
    version: int
    at: float
    user_identity: dict[str, str] | None = None

    @property
    def by_ttl(self) -> bool:
        """Removed because its TTL passed (not by a delete)."""
        return self.event == "remove" and self.user_identity is not None


def native_changes(payload: dict[str, Any]) -> list[Change]:
    out = []
    for r in payload["records"]:
        b = r["body"]
        out.append(Change(r["event"], payload["resource"], b["keys"], b.get("old"),
                          b.get("new"), r["sequence"], b.get("version", 0), r["at"],
                          b.get("user_identity")))
    return out


def to_attribute_value(value: Any) -> dict[str, Any]:
    """A JSON value in DynamoDB's attribute-value JSON (S, N, BOOL, NULL, L, M)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value) if isinstance(value, int) else repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [to_attribute_value(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: to_attribute_value(v) for k, v in value.items()}}
    raise TypeError(f"cannot express {type(value).__name__} as a DynamoDB attribute value")


def from_attribute_value(av: dict[str, Any]) -> Any:
    """The inverse, for handlers that want plain values back (numbers as int or float)."""
    (kind, v), = av.items()
    if kind == "NULL":
        return None
    if kind in ("S", "BOOL"):
        return v
    if kind == "N":
        return int(v) if v.lstrip("-").isdigit() else float(v)
    if kind == "L":
        return [from_attribute_value(x) for x in v]
    if kind == "M":
        return {k: from_attribute_value(x) for k, x in v.items()}
    if kind in ("SS", "NS", "BS"):
        return [from_attribute_value({kind[0]: x}) for x in v]
    return v  # B: base64 text


def image(item: dict[str, Any]) -> dict[str, Any]:
    return {k: to_attribute_value(v) for k, v in item.items()}


def dynamodb_event(payload: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB Streams' Lambda event (StreamViewType NEW_AND_OLD_IMAGES)."""
    table, region = payload["resource"], _region()
    arn = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}/stream/{STREAM_LABEL}"
    records = []
    for r in payload["records"]:
        b = r["body"]
        ddb: dict[str, Any] = {"ApproximateCreationDateTime": int(r["at"]),
                               "Keys": image(b["keys"])}
        if b.get("new") is not None:
            ddb["NewImage"] = image(b["new"])
        if b.get("old") is not None:
            ddb["OldImage"] = image(b["old"])
        ddb["SequenceNumber"] = r["sequence"]
        ddb["SizeBytes"] = len(json.dumps([ddb["Keys"], ddb.get("NewImage"),
                                           ddb.get("OldImage")], separators=(",", ":")))
        ddb["StreamViewType"] = "NEW_AND_OLD_IMAGES"
        rec: dict[str, Any] = {
            "eventID": _event_id("table", table, r["sequence"]),
            "eventName": _AWS_EVENT[r["event"]],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": region,
        }
        if b.get("user_identity"):
            rec["userIdentity"] = dict(b["user_identity"])
        rec["dynamodb"] = ddb
        rec["eventSourceARN"] = arn
        records.append(rec)
    return {"Records": records}


# -- object events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """Something happened to an object: `event` is created, deleted or archived; `op`
    says how (Put, Copy, Delete, LifecycleExpiration, LifecycleTransition)."""

    event: str
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    version: str
    tier: str
    op: str
    at: float
    sequence: str


def native_object_event(payload: dict[str, Any]) -> ObjectEvent:
    (r,) = payload["records"]
    b = r["body"]
    return ObjectEvent(r["event"], b["bucket"], b["key"], b["size"], b["etag"],
                       b["content_type"], dict(b["metadata"]), b["version"], b["tier"],
                       b["op"], r["at"], r["sequence"])


def _s3_event_name(event: str, op: str) -> str:
    if event == "created":
        return f"ObjectCreated:{op}"
    if event == "archived":
        return "LifecycleTransition"
    return "LifecycleExpiration:Delete" if op == "LifecycleExpiration" else "ObjectRemoved:Delete"


def s3_event(payload: dict[str, Any]) -> dict[str, Any]:
    """S3's event notification as Lambda receives it (event version 2.1)."""
    records = []
    for r in payload["records"]:
        b = r["body"]
        lifecycle = b["op"].startswith("Lifecycle")
        principal = "s3.amazonaws.com" if lifecycle else "squall"
        rid = _event_id("bucket", b["bucket"], r["sequence"])
        obj: dict[str, Any] = {"key": quote_plus(b["key"], safe="/")}
        if r["event"] != "deleted":
            obj.update({"size": b["size"], "eTag": b["etag"], "versionId": b["version"]})
        obj["sequencer"] = f"{int(r['sequence']):016X}"
        rec: dict[str, Any] = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": _region(),
            "eventTime": _iso(r["at"]),
            "eventName": _s3_event_name(r["event"], b["op"]),
            "userIdentity": {"principalId": principal},
            "requestParameters": {"sourceIPAddress": principal if lifecycle else "127.0.0.1"},
            "responseElements": {"x-amz-request-id": rid[:16].upper(), "x-amz-id-2": rid},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": payload.get("function", "squall"),
                "bucket": {"name": b["bucket"], "ownerIdentity": {"principalId": "squall"},
                           "arn": f"arn:aws:s3:::{b['bucket']}"},
                "object": obj,
            },
        }
        if r["event"] == "archived":
            rec["lifecycleEventData"] = {
                "transitionEventData": {"destinationStorageClass": "GLACIER"}}
        records.append(rec)
    return {"Records": records}

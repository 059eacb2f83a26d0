"""The CloudEvents 1.0 envelope: the `Event` every trigger becomes, and its wire forms.

Every trigger (an HTTP request, a queue message, a schedule tick, an object write) becomes
an `Event` before anything else happens (DESIGN.md, "The invocation path"): the CloudEvents
context attributes, the data, the trace context (`traceparent`/`tracestate`, CloudEvents'
distributed-tracing extension over W3C Trace Context) and an idempotency key (the
`idempotencykey` extension, else the id). Brokers and stores carry it in the JSON event
format; the gateway reads and writes it with the HTTP protocol binding. Everything here
is pure and standard-library only, so backends, workers and the gateway can share it.

- JSON event format 1.0.2: `to_json`/`from_json` (dicts), `to_json_bytes`/
  `from_json_bytes`, and batches (`application/cloudevents-batch+json`).
- HTTP protocol binding 1.0.2: `to_http` in binary or structured mode, `to_http_batch`,
  and `from_http`, which tells the three modes apart by Content-Type.
- W3C Trace Context `traceparent`: `new_traceparent`, `parse_traceparent`,
  `child_traceparent`.

Bad input raises `InvalidEvent` (a `ValueError`) whose message is fit for an HTTP 400 body.

Choices the specs leave open, made here on purpose:

- Only specversion 1.0. A 0.3 event is refused with a message that says so.
- `data` is `bytes` (opaque binary), `str` (text; under a JSON content type, a JSON
  string), or any other JSON value. `None` means no data, so an explicit JSON `null`
  payload reads back as no data.
- `datacontenttype=None` with non-binary data means JSON, as in the JSON format. Binary
  mode then sends `Content-Type: application/json` explicitly, as the spec asks when an
  implied type changes binding; so a decoded copy carries it where the original had None.
- Binary-mode bodies are parsed as JSON when Content-Type is `*/json` or `*/*+json`;
  decoded to `str` when it names a charset (which must then hold), or is textual
  (`text/*`, `*/xml`, `*/*+xml`, a few others) and valid UTF-8; kept as bytes otherwise.
  With no Content-Type at all, a body that parses as JSON is taken as JSON (what the
  official SDKs do, and what the JSON format implies for a missing type); else bytes.
- Data whose own type is `application/cloudevents…` cannot go in binary mode: the
  receiver would take the body for the event. `to_http` refuses it.
- Attribute values are typed only in JSON (booleans, integers). HTTP headers carry
  canonical strings, so after a binary round trip extensions are strings.
- `time` keeps microseconds; longer RFC 3339 fractions are truncated, and a leap second
  (:60) becomes :59.999999.
- Extension names must be a-z0-9 and must not shadow a core attribute; the 20-character
  limit is a SHOULD in the spec and is not enforced, so long names from other producers
  are still accepted.
- Control characters in string values are disallowed by the spec, yet the CloudEvents
  conformance suite sends one (a newline in an extension). They are accepted, and
  percent-encoded in headers as the binding recommends; unpaired surrogates, which cannot
  be encoded at all, are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .errors import InvalidEvent

SPECVERSION = "1.0"
JSON_FORMAT = "application/cloudevents+json"
JSON_BATCH_FORMAT = "application/cloudevents-batch+json"
CORE_ATTRIBUTES = (
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"
)  # fmt: skip

Headers = list[tuple[str, str]]
Mode = Literal["binary", "structured"]


# --- attribute values --------------------------------------------------------------------

_NAME = re.compile(r"[a-z0-9]+")
_RESERVED_NAMES = frozenset(CORE_ATTRIBUTES) | {"data"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*(?:;(.*))?", re.S)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))",
    re.ASCII,
)
_INT32 = range(-(2**31), 2**31)
# Media types read as text (UTF-8 unless a charset says otherwise) besides text/*, */xml
# and */*+xml; anything else without a charset stays bytes.
_TEXT_MEDIA_TYPES = frozenset(
    {"application/javascript", "application/x-www-form-urlencoded", "application/yaml"}
)
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (fractions past microseconds dropped)."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidEvent(
            f"attribute 'time' must be an RFC 3339 timestamp such as 2018-04-05T17:31:00Z, "
            f"got {value!r}"
        )
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    sec = int(second)
    if sec == 60:  # a leap second: datetime cannot hold it, so keep the order instead
        sec, micro = 59, 999999
    try:
        tz = timezone.utc
        if not zulu and (off_h, off_m) != ("00", "00"):
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(-offset if sign == "-" else offset)
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), sec, micro, tzinfo=tz
        )
    except ValueError as exc:
        raise InvalidEvent(f"attribute 'time' {value!r} is not a valid timestamp: {exc}") from None


def format_time(value: datetime) -> str:
    """A datetime in RFC 3339, UTC as `Z`, with microseconds only when it has them."""
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _as_time(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return parse_time(value)
    if not isinstance(value, datetime):
        raise InvalidEvent(
            f"attribute 'time' must be a datetime or an RFC 3339 string, got "
            f"{type(value).__name__}"
        )
    offset = value.utcoffset()
    if offset is None:
        raise InvalidEvent(
            "attribute 'time' must be timezone-aware (RFC 3339 needs an offset); use "
            "datetime.now(timezone.utc)"
        )
    if offset % timedelta(minutes=1):  # RFC 3339 offsets are whole minutes
        value = value.astimezone(timezone.utc)
    return value


def _check_string(name: str, value: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(f"attribute {name!r} must be a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise InvalidEvent(f"attribute {name!r} must be a non-empty string")
    if _SURROGATE.search(value):
        raise InvalidEvent(f"attribute {name!r} contains an unpaired UTF-16 surrogate")
    return value


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` lower-cased, and the parameters (names lower-cased, quotes removed)."""
    m = _MEDIA_TYPE.fullmatch(content_type)
    if m is None:
        raise InvalidEvent(
            f"content type {content_type!r} is not an RFC 2046 media type such as "
            f"application/json"
        )
    params: dict[str, str] = {}
    for part in (m.group(3) or "").split(";"):
        key, eq, val = part.partition("=")
        if eq:
            params[key.strip().lower()] = val.strip().strip('"')
    return f"{m.group(1)}/{m.group(2)}".lower(), params


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a media type declares JSON: `*/json` or `*/*+json`, parameters ignored."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


def _check_extension(name: Any, value: Any) -> Any:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidEvent(
            f"extension attribute name {name!r} is not valid: CloudEvents attribute names "
            f"use only lower-case ASCII letters and digits (a-z, 0-9)"
        )
    if name in _RESERVED_NAMES:
        raise InvalidEvent(
            f"extension attribute name {name!r} is reserved by CloudEvents (a core "
            f"attribute, or 'data')"
        )
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value not in _INT32:
            raise InvalidEvent(
                f"extension attribute {name!r} = {value} is outside the CloudEvents Integer "
                f"range (signed 32-bit); send it as a string"
            )
        return value
    if isinstance(value, str):
        return _check_string(name, value, empty_ok=True)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        return _as_time(value)
    raise InvalidEvent(
        f"extension attribute {name!r} must be a string, boolean, integer, bytes or "
        f"datetime, got {type(value).__name__}"
    )


class Extensions(Mapping[str, Any]):
    """Extension attributes: a read-only, hashable mapping, so an `Event` stays frozen."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Extensions({self._items!r})"


# --- the event -----------------------------------------------------------------------------

_JSON_TYPES = (dict, list, str, int, float, bool)


@dataclass(frozen=True, slots=True)
class Event:
    """A CloudEvent: context attributes, data, and extensions (trace context among them).

    Validated on construction; `time` may be given as an RFC 3339 string and is kept as an
    aware datetime. Extensions set to None are dropped (None means unset in CloudEvents).
    """

    id: str
    source: str
    type: str
    specversion: str = SPECVERSION
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    extensions: Mapping[str, Any] = field(default_factory=Extensions)

    def __post_init__(self) -> None:
        if self.specversion != SPECVERSION:
            raise InvalidEvent(
                f"unsupported specversion {self.specversion!r}: Squall reads and writes "
                f"CloudEvents {SPECVERSION}"
            )
        for name in ("id", "source", "type"):
            _check_string(name, getattr(self, name))
        if self.subject is not None:
            _check_string("subject", self.subject)
        if self.datacontenttype is not None:
            _media_type(_check_string("datacontenttype", self.datacontenttype))
        if self.dataschema is not None:
            if not _SCHEME.match(_check_string("dataschema", self.dataschema)):
                raise InvalidEvent(
                    f"attribute 'dataschema' must be an absolute URI, got {self.dataschema!r}"
                )
        if self.time is not None:
            object.__setattr__(self, "time", _as_time(self.time))
        object.__setattr__(self, "data", _check_data(self.data, self.datacontenttype))
        if not isinstance(self.extensions, Mapping):
            raise InvalidEvent(
                f"extensions must be a mapping of name to value, got "
                f"{type(self.extensions).__name__}"
            )
        object.__setattr__(
            self,
            "extensions",
            Extensions(
                (k, _check_extension(k, v)) for k, v in self.extensions.items() if v is not None
            ),
        )

    @classmethod
    def new(cls, source: str, type: str, data: Any = None, **attrs: Any) -> Event:
        """A new event: a uuid4 id and the current UTC time unless given.

        Keyword arguments set core attributes (`subject`, `datacontenttype`, ...); any other
        name is an extension (`traceparent=...`, `idempotencykey=...`), as is everything in
        `extensions=`. Non-binary data without a content type is declared application/json.
        """
        core = {k: attrs.pop(k) for k in CORE_ATTRIBUTES if k in attrs}
        extensions = {**(attrs.pop("extensions", None) or {}), **attrs}
        core.setdefault("id", str(uuid.uuid4()))
        core.setdefault("time", datetime.now(timezone.utc))
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            core.setdefault("datacontenttype", "application/json")
        return cls(source=source, type=type, data=data, extensions=extensions, **core)

    @property
    def idempotency_key(self) -> str:
        """The `idempotencykey` extension if set, else the event id."""
        key = self.extensions.get("idempotencykey")
        return str(key) if key is not None else self.id

    @property
    def trace_parent(self) -> str | None:
        """The `traceparent` extension if it is a valid W3C value, else None.

        A malformed one is ignored rather than refused, as W3C Trace Context asks: the
        receiver starts a new trace.
        """
        value = self.extensions.get("traceparent")
        if isinstance(value, str):
            try:
                parse_traceparent(value)
            except InvalidEvent:
                return None
            return value.strip(" \t")
        return None

    def with_extensions(self, **values: Any) -> Event:
        """A copy with these extensions set (a None value removes one)."""
        return replace(self, extensions={**self.extensions, **values})


def _check_data(data: Any, content_type: str | None) -> Any:
    if data is None or isinstance(data, bytes | str):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if content_type is not None and not is_json_content_type(content_type):
        raise InvalidEvent(
            f"data for datacontenttype {content_type!r} must be str or bytes, got "
            f"{type(data).__name__}; a JSON value needs a JSON content type such as "
            f"application/json"
        )
    if not isinstance(data, _JSON_TYPES):
        raise InvalidEvent(f"data must be bytes, str or a JSON value, got {type(data).__name__}")
    return data


# --- JSON event format ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from None


def _dumps(value: Any) -> bytes:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _attribute_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return format_time(value)
    return value


def to_json(event: Event) -> dict[str, Any]:
    """The event as a JSON-format object (`data`, or `data_base64` for bytes)."""
    out: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    if event.subject is not None:
        out["subject"] = event.subject
    if event.time is not None:
        out["time"] = format_time(event.time)
    if event.datacontenttype is not None:
        out["datacontenttype"] = event.datacontenttype
    if event.dataschema is not None:
        out["dataschema"] = event.dataschema
    for name, value in event.extensions.items():
        out[name] = _attribute_json(value)
    if isinstance(event.data, bytes):
        out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    elif event.data is not None:
        out["data"] = event.data
    return out


def _json_string(obj: Mapping[str, Any], name: str, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing required attribute {name!r}")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(
            f"attribute {name!r} must be a JSON string, got {_json_type_name(value)}"
        )
    return value


def _json_type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", float: "number"}
    return "number" if type(value) is int else names.get(type(value), type(value).__name__)


def from_json(obj: Mapping[str, Any]) -> Event:
    """An event from a parsed JSON-format object; null members count as unset."""
    if not isinstance(obj, Mapping):
        raise InvalidEvent(
            f"a structured CloudEvent must be a JSON object, got {_json_type_name(obj)}"
        )
    specversion = _json_string(obj, "specversion", required=True)
    if specversion != SPECVERSION:
        raise InvalidEvent(
            f"unsupported specversion {specversion!r}: Squall reads and writes "
            f"CloudEvents {SPECVERSION}"
        )
    attrs = {
        name: _json_string(obj, name, required=name in ("id", "source", "type"))
        for name in CORE_ATTRIBUTES
        if name != "specversion"
    }
    data = obj.get("data")
    encoded = obj.get("data_base64")
    if encoded is not None:
        if data is not None:
            raise InvalidEvent("an event cannot have both 'data' and 'data_base64'")
        if not isinstance(encoded, str):
            raise InvalidEvent(
                f"'data_base64' must be a JSON string, got {_json_type_name(encoded)}"
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(f"'data_base64' is not valid base64 (RFC 4648): {exc}") from None
    extensions = {}
    for name, value in obj.items():
        if name in CORE_ATTRIBUTES or name in ("data", "data_base64") or value is None:
            continue
        if isinstance(value, float | dict | list):
            raise InvalidEvent(
                f"extension attribute {name!r} must be a string, boolean or integer, got "
                f"{_json_type_name(value)}"
            )
        extensions[name] = value
    return Event(data=data, extensions=extensions, **attrs)  # type: ignore[arg-type]


def to_json_bytes(event: Event) -> bytes:
    """The event as an `application/cloudevents+json` document (UTF-8)."""
    try:
        return _dumps(to_json(event))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event {event.id!r}: data is not JSON-serialisable: {exc}") from None


def from_json_bytes(body: bytes | str) -> Event:
    """An event from an `application/cloudevents+json` document."""
    return from_json(_loads(body, "the structured event"))


def to_json_batch(events: Iterable[Event]) -> list[dict[str, Any]]:
    """A batch as a JSON array of JSON-format objects."""
    return [to_json(event) for event in events]


def from_json_batch(items: Any) -> list[Event]:
    """Events from a parsed JSON batch (an array, possibly empty)."""
    if not isinstance(items, list):
        raise InvalidEvent(
            f"a CloudEvents batch must be a JSON array, got {_json_type_name(items)}"
        )
    events = []
    for index, item in enumerate(items):
        try:
            events.append(from_json(item))
        except InvalidEvent as exc:
            raise InvalidEvent(f"batch event [{index}]: {exc.message}") from None
    return events


def to_json_batch_bytes(events: Iterable[Event]) -> bytes:
    """A batch as an `application/cloudevents-batch+json` document (UTF-8)."""
    try:
        return _dumps(to_json_batch(events))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"batch data is not JSON-serialisable: {exc}") from None


def from_json_batch_bytes(body: bytes | str) -> list[Event]:
    """Events from an `application/cloudevents-batch+json` document."""
    return from_json_batch(_loads(body, "the event batch"))


# the HTTP binding and trace context live in their own modules; re-exported here
from .ce_http import from_http, to_http, to_http_batch  # noqa: E402, F401
from .trace import (  # noqa: E402, F401
    TraceParent,
    child_traceparent,
    new_traceparent,
    parse_traceparent,
)

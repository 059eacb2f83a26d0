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
import codecs
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, unquote_to_bytes

SPECVERSION = "1.0"
JSON_FORMAT = "application/cloudevents+json"
JSON_BATCH_FORMAT = "application/cloudevents-batch+json"
CORE_ATTRIBUTES = (
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"
)  # fmt: skip

Headers = list[tuple[str, str]]
Mode = Literal["binary", "structured"]


class InvalidEvent(ValueError):
    """An event, or its JSON or HTTP form, breaks CloudEvents 1.0 (answer HTTP 400)."""

    status = 400
    code = "bad_request"  # a key of squall.gateway.errors.ERRORS

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


# --- HTTP protocol binding ------------------------------------------------------------------


def _header_value(value: Any) -> str:
    """An attribute's canonical string, percent-encoded (space, '"', '%', non-ASCII)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, bytes):
        text = base64.b64encode(value).decode("ascii")
    elif isinstance(value, datetime):
        text = format_time(value)
    else:
        text = str(value)
    return quote(text, safe=_HEADER_SAFE)


def _encode_data(event: Event) -> tuple[bytes, str | None]:
    """The binary-mode body and Content-Type."""
    data, content_type = event.data, event.datacontenttype
    if data is None:
        return b"", content_type
    if isinstance(data, bytes):
        return data, content_type
    if content_type is None or is_json_content_type(content_type):
        try:
            return _dumps(data), content_type or "application/json"
        except (TypeError, ValueError) as exc:
            raise InvalidEvent(
                f"event {event.id!r}: data is not JSON-serialisable: {exc}"
            ) from None
    charset = _charset(content_type) or "utf-8"
    try:
        return data.encode(charset), content_type
    except UnicodeEncodeError as exc:
        raise InvalidEvent(
            f"event {event.id!r}: data cannot be encoded as {charset}, as its "
            f"datacontenttype {content_type!r} declares: {exc.reason}"
        ) from None


def _charset(content_type: str) -> str | None:
    charset = _media_type(content_type)[1].get("charset")
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        raise InvalidEvent(
            f"unknown charset {charset!r} in content type {content_type!r}"
        ) from None
    return charset


def to_http(event: Event, mode: Mode = "binary") -> tuple[Headers, bytes]:
    """The event as HTTP headers (lower-case names) and body, in binary or structured mode."""
    if mode == "structured":
        return [("content-type", f"{JSON_FORMAT}; charset=utf-8")], to_json_bytes(event)
    if mode != "binary":
        raise ValueError(f"mode must be 'binary' or 'structured', got {mode!r}")
    if (event.datacontenttype or "").lower().lstrip().startswith("application/cloudevents"):
        raise InvalidEvent(
            f"event {event.id!r} carries {event.datacontenttype} data, which a receiver "
            f"would read as the event itself in binary mode; send it in structured mode"
        )
    headers: Headers = [
        ("ce-specversion", event.specversion),
        ("ce-id", _header_value(event.id)),
        ("ce-source", _header_value(event.source)),
        ("ce-type", _header_value(event.type)),
    ]
    if event.subject is not None:
        headers.append(("ce-subject", _header_value(event.subject)))
    if event.time is not None:
        headers.append(("ce-time", _header_value(event.time)))
    if event.dataschema is not None:
        headers.append(("ce-dataschema", _header_value(event.dataschema)))
    for name, value in event.extensions.items():
        headers.append((f"ce-{name}", _header_value(value)))
    body, content_type = _encode_data(event)
    if content_type is not None:
        headers.append(("content-type", content_type))
    return headers, body


def to_http_batch(events: Iterable[Event]) -> tuple[Headers, bytes]:
    """Events as one HTTP message in batched mode (`application/cloudevents-batch+json`)."""
    return [("content-type", f"{JSON_BATCH_FORMAT}; charset=utf-8")], to_json_batch_bytes(events)


def _header_items(headers: Headers | Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased; repeats joined with ',' as HTTP allows."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _decode_header_value(header: str, value: str) -> str:
    """Unquote an RFC 7230 quoted-string, then one round of percent-decoding to UTF-8."""
    value = value.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    if value.isascii():
        raw = unquote_to_bytes(value)
    else:
        # Servers hand over header bytes as latin-1 text (ASGI does); raw UTF-8 from a
        # producer that skipped percent-encoding survives that. Text that is already
        # Unicode (a caller's own dict, or an SDK that does not percent-encode) is kept.
        try:
            raw = unquote_to_bytes(value.encode("latin-1"))
            return raw.decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raw = unquote_to_bytes(value.encode("utf-8", "surrogatepass"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(
            f"header {header} is not valid percent-encoded UTF-8: {value!r}"
        ) from None


def _decode_body(body: bytes, content_type: str | None) -> Any:
    if not body:
        return None
    if content_type is None:
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            return body
    media = _media_type(content_type)[0]
    charset = _charset(content_type)
    if is_json_content_type(media) or charset:
        try:
            text = body.decode(charset or "utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                f"the body is not {charset or 'utf-8'} text as Content-Type "
                f"{content_type!r} declares: {exc.reason} at byte {exc.start}"
            ) from None
        return _loads(text, "the body") if is_json_content_type(media) else text
    if _is_text(media):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:  # no charset was promised: keep the bytes as they are
            return body
    return body


def _is_text(media: str) -> bool:
    return (
        media.startswith("text/")
        or media.endswith("/xml")
        or media.endswith("+xml")
        or media in _TEXT_MEDIA_TYPES
    )


def _from_binary(headers: dict[str, str], body: bytes) -> Event:
    attrs: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for header, raw in headers.items():
        if not header.startswith("ce-"):
            continue
        name = header[3:]
        if name == "datacontenttype":
            raise InvalidEvent(
                "header ce-datacontenttype must not be sent in binary mode: the data's "
                "content type goes in Content-Type"
            )
        if not _NAME.fullmatch(name):
            raise InvalidEvent(
                f"header {header} does not name a CloudEvents attribute: attribute names "
                f"use only lower-case ASCII letters and digits (a-z, 0-9)"
            )
        value = _decode_header_value(header, raw)
        if name in CORE_ATTRIBUTES:
            attrs[name] = value
        else:
            extensions[name] = value
    if not attrs and not extensions:
        raise InvalidEvent(
            "not a CloudEvent: send ce-specversion, ce-id, ce-source and ce-type headers "
            f"(binary mode) or Content-Type {JSON_FORMAT} (structured mode)"
        )
    for name in ("specversion", "id", "source", "type"):
        if name not in attrs:
            raise InvalidEvent(f"missing required header ce-{name}")
    content_type = headers.get("content-type")
    data = _decode_body(body, content_type)
    return Event(datacontenttype=content_type, data=data, extensions=extensions, **attrs)


def from_http(headers: Headers | Mapping[str, str], body: bytes | str) -> Event | list[Event]:
    """An event (binary or structured mode) or a list of events (batched mode).

    The mode comes from Content-Type: `application/cloudevents-batch+json` is a batch,
    `application/cloudevents+json` a structured event, anything else binary mode. Header
    names are case-insensitive; a `str` body is taken as UTF-8.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = bytes(body)
    items = _header_items(headers)
    content_type = items.get("content-type")
    media = _media_type(content_type)[0] if content_type else ""
    if media.startswith("application/cloudevents-batch"):
        if media != JSON_BATCH_FORMAT:
            raise InvalidEvent(
                f"unsupported CloudEvents batch format {media!r}: Squall reads {JSON_BATCH_FORMAT}"
            )
        return from_json_batch_bytes(body)
    if media.startswith("application/cloudevents"):
        if media != JSON_FORMAT:
            raise InvalidEvent(
                f"unsupported CloudEvents event format {media!r}: Squall reads {JSON_FORMAT}"
            )
        return from_json_bytes(body)
    return _from_binary(items, body)


# --- W3C Trace Context ---------------------------------------------------------------------

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_KNOWN_FLAGS = 0x03  # sampled (level 1) and random trace id (level 2); others are zeroed


class TraceParent(NamedTuple):
    """A parsed `traceparent`: version, trace id, parent (span) id, and the flags byte."""

    version: str
    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)


def parse_traceparent(value: str) -> TraceParent:
    """Parse and validate a W3C `traceparent` (version 00, or a later one's first fields)."""
    if not isinstance(value, str):
        raise InvalidEvent(f"traceparent must be a string, got {type(value).__name__}")
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        raise InvalidEvent(
            f"traceparent {value!r} is not a W3C Trace Context value: expected "
            f"00-<32 lower-case hex trace id>-<16 lower-case hex parent id>-<2 hex flags>"
        )
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff":
        raise InvalidEvent(f"traceparent {value!r} has version ff, which W3C forbids")
    if version == "00" and rest is not None:
        raise InvalidEvent(f"traceparent {value!r} has fields after the flags; version 00 has four")
    if trace_id == "0" * 32:
        raise InvalidEvent(f"traceparent {value!r} has an all-zero trace id")
    if parent_id == "0" * 16:
        raise InvalidEvent(f"traceparent {value!r} has an all-zero parent id")
    return TraceParent(version, trace_id, parent_id, int(flags, 16))


def _random_hex(nbytes: int) -> str:
    while True:
        value = secrets.token_hex(nbytes)
        if value.strip("0"):
            return value


def new_traceparent(sampled: bool = True) -> str:
    """A `traceparent` that starts a new trace."""
    return f"00-{_random_hex(16)}-{_random_hex(8)}-{'01' if sampled else '00'}"


def child_traceparent(value: str | None) -> str:
    """The `traceparent` for a step under `value`: same trace, new parent id.

    None starts a new trace. A later version is answered in version 00 (the only one
    this module writes), keeping the trace id and the flags it knows.
    """
    if value is None:
        return new_traceparent()
    parent = parse_traceparent(value)
    return f"00-{parent.trace_id}-{_random_hex(8)}-{parent.flags & _KNOWN_FLAGS:02x}"

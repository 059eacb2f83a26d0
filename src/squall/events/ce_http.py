"""The CloudEvents HTTP protocol binding (1.0.2): binary, structured and batch mode."""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from .envelope import (
    _HEADER_SAFE,
    _NAME,
    _TEXT_MEDIA_TYPES,
    CORE_ATTRIBUTES,
    JSON_BATCH_FORMAT,
    JSON_FORMAT,
    Event,
    Headers,
    InvalidEvent,
    Mode,
    _dumps,
    _loads,
    _media_type,
    _reject_constant,
    format_time,
    from_json_batch_bytes,
    from_json_bytes,
    is_json_content_type,
    to_json_batch_bytes,
    to_json_bytes,
)


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

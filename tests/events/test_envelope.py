"""The CloudEvents envelope, checked against the CloudEvents project's own material.

- Every scenario of cloudevents/conformance's `features/http-protocol-binding.feature`,
  run by the small Gherkin reader below (raw HTTP requests in, expected attributes out).
- Every `yaml/**` event: decoded from an HTTP message built here independently of the
  module, and round-tripped through `to_http`/`from_http` in its `Mode` (both modes when
  the document names none). The 0.3 events must be refused: Squall speaks only 1.0.
- Every structured event we emit is validated against the spec's `cloudevents.json`.
- Interop with the official Python SDK, both its legacy (`cloudevents.v1`/1.x) API and
  the 2.x core bindings, in both directions.
- Invalid input: each must raise `InvalidEvent` with a message that names the problem.

Conformance files are read at test time from ../shared/conformance (see SOURCES.md).
"""

from __future__ import annotations

import base64
import json
import pickle
import re
from dataclasses import FrozenInstanceError, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from squall.events.envelope import (
    JSON_BATCH_FORMAT,
    JSON_FORMAT,
    Event,
    InvalidEvent,
    child_traceparent,
    format_time,
    from_http,
    from_json,
    from_json_batch,
    from_json_batch_bytes,
    from_json_bytes,
    new_traceparent,
    parse_time,
    parse_traceparent,
    to_http,
    to_http_batch,
    to_json,
    to_json_batch,
    to_json_batch_bytes,
    to_json_bytes,
)

jsonschema = pytest.importorskip("jsonschema")

FEATURE = "cloudevents-conformance/features/http-protocol-binding.feature"
SCHEMA = "cloudevents-spec/cloudevents/formats/cloudevents.json"
YAML_DIR = "cloudevents-conformance/yaml"
UTC = timezone.utc
T0 = datetime(2018, 4, 5, 3, 56, 24, tzinfo=UTC)
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# --- JSON Schema: every structured event we emit ------------------------------------------

# jsonschema only checks `date-time`, `uri` and `uri-reference` with optional packages;
# these small checkers, written from RFC 3339/3986 and independent of the module, stand in.
_FORMATS = jsonschema.FormatChecker()
_RFC3339_TEST = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_FORMATS.checks("date-time")(lambda v: not isinstance(v, str) or bool(_RFC3339_TEST.match(v)))
_FORMATS.checks("uri")(
    lambda v: not isinstance(v, str) or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$", v))
)
_FORMATS.checks("uri-reference")(
    lambda v: not isinstance(v, str) or not re.search(r"[\s\x00-\x1f\x7f]", v)
)


@pytest.fixture(scope="session")
def schema_validator(conformance_dir: Path) -> Any:
    schema = json.loads((conformance_dir / SCHEMA).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=_FORMATS)


def assert_schema_valid(validator: Any, body: bytes) -> None:
    """A structured (or batched) body is UTF-8 JSON whose every event passes the schema."""
    doc = json.loads(body.decode("utf-8"))
    for item in doc if isinstance(doc, list) else [doc]:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(item)]
        assert not errors, f"{item} fails cloudevents.json: {errors}"
        assert not ("data" in item and "data_base64" in item)


def as_binary_peer_sees_it(event: Event) -> Event:
    """What a binary-mode round trip may change: the implied JSON type becomes explicit,
    and typed extensions become their canonical strings (headers carry strings)."""
    content_type = event.datacontenttype
    if content_type is None and event.data is not None and not isinstance(event.data, bytes):
        content_type = "application/json"
    canonical = {}
    for name, value in event.extensions.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        elif isinstance(value, datetime):
            value = format_time(value)
        canonical[name] = str(value)
    return Event(
        id=event.id, source=event.source, type=event.type, time=event.time,
        subject=event.subject, datacontenttype=content_type, dataschema=event.dataschema,
        data=event.data, extensions=canonical,
    )  # fmt: skip


# --- a small Gherkin reader for the conformance feature ------------------------------------


@dataclass
class Step:
    keyword: str  # Given / When / Then ("And" takes the previous keyword)
    text: str
    docstring: str | None = None
    table: list[list[str]] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    steps: list[Step]


def parse_feature(text: str) -> list[Scenario]:
    """Scenarios (outlines expanded, background steps first) from a Gherkin file."""
    background: list[Step] = []
    outlines: list[tuple[str, list[Step], list[list[str]]]] = []
    steps: list[Step] = background
    examples: list[list[str]] | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        i += 1
        word = stripped.split(" ", 1)[0]
        if stripped.startswith('"""'):
            indent = len(line) - len(line.lstrip())
            doc = []
            while lines[i].strip() != '"""':
                doc.append(lines[i][indent:])
                i += 1
            i += 1
            steps[-1].docstring = "\n".join(doc)
        elif stripped.startswith("|"):
            row = [cell.strip() for cell in stripped.strip("|").split("|")]
            (examples if examples is not None else steps[-1].table).append(row)
        elif stripped == "Background:":
            steps, examples = background, None
        elif stripped.startswith(("Scenario:", "Scenario Outline:")):
            steps, examples = [], None
            outlines.append((stripped.split(":", 1)[1].strip(), steps, []))
        elif stripped == "Examples:":
            examples = outlines[-1][2]
        elif word in ("Given", "When", "Then", "And", "But"):
            keyword = steps[-1].keyword if word in ("And", "But") else word
            steps.append(Step(keyword, stripped.split(" ", 1)[1]))
    scenarios = []
    for name, outline_steps, rows in outlines:
        for values in [dict(zip(rows[0], row)) for row in rows[1:]] if rows else [{}]:

            def sub(s: str, values: dict[str, str] = values) -> str:
                return re.sub(r"<([^<>]+)>", lambda m: values.get(m[1], m[0]), s)

            scenarios.append(
                Scenario(
                    sub(name),
                    [
                        Step(
                            s.keyword, sub(s.text),
                            sub(s.docstring) if s.docstring is not None else None,
                            [[sub(c) for c in row] for row in s.table],
                        )  # fmt: skip
                        for s in background + outline_steps
                    ],
                )
            )
    return scenarios


def parse_raw_http(text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    headers = []
    for header in header_lines:
        name, _, value = header.partition(":")
        headers.append((name.strip(), value.strip()))
    return request_line, headers, body.encode("utf-8")


FEATURE_SCENARIOS = [
    "Binary content mode (application/json)",
    "Binary content mode (application/json; charset=utf-8)",
    "Structured content mode (application/cloudevents+json)",
    "Structured content mode (application/cloudevents+json; charset=utf-8)",
]


def feature_scenarios(conformance_dir: Path) -> dict[str, Scenario]:
    return {s.name: s for s in parse_feature((conformance_dir / FEATURE).read_text())}


def test_we_run_every_scenario_of_the_feature_file(conformance_dir: Path) -> None:
    assert list(feature_scenarios(conformance_dir)) == FEATURE_SCENARIOS


@pytest.mark.parametrize("name", FEATURE_SCENARIOS)
def test_http_protocol_binding_feature(
    conformance_dir: Path, schema_validator: Any, name: str
) -> None:
    scenario = feature_scenarios(conformance_dir)[name]
    event: Any = None
    request: tuple[str, list[tuple[str, str]], bytes] | None = None
    for step in scenario.steps:
        if step.text == "HTTP Protocol Binding is supported":
            continue
        elif step.text == "an HTTP request":
            assert step.docstring is not None
            request = parse_raw_http(step.docstring)
            _, headers, body = request
            # The reader got the body byte-exact if it matches the declared length.
            assert int(dict(headers)["Content-Length"]) == len(body)
        elif step.text == "parsed as HTTP request":
            assert request is not None
            event = from_http(request[1], request[2])
            assert isinstance(event, Event)
        elif step.text == "the attributes are:":
            header, *rows = step.table
            assert header == ["key", "value"]
            for key, value in rows:
                actual = getattr(event, key) if key in Event.__dataclass_fields__ else None
                if actual is None:
                    actual = event.extensions.get(key)
                if isinstance(actual, datetime):
                    assert actual == parse_time(value)
                    actual = format_time(actual)
                assert actual == value, key
        elif step.text == "the data is equal to the following JSON:":
            assert event.data == json.loads(step.docstring or "")
        else:
            pytest.fail(f"no step definition for {step.keyword} {step.text!r}")
    # And what we read, we can write again in either mode and read back the same.
    headers, body = to_http(event, "structured")
    assert_schema_valid(schema_validator, body)
    assert from_http(headers, body) == event
    assert from_http(*to_http(event, "binary")) == event


def test_gherkin_reader_expands_outlines() -> None:
    text = (
        "Feature: f\n  Background:\n  Given a\n  Scenario Outline: s (<x>)\n  When b <x>\n"
        '    """\n    doc <x>\n      indented\n    """\n  Then c:\n    | k | v |\n'
        "    | 1 | <x> |\n  Examples:\n  | x |\n  | p |\n  | q |\n"
    )
    first, second = parse_feature(text)
    assert (first.name, second.name) == ("s (p)", "s (q)")
    assert [s.text for s in first.steps] == ["a", "b p", "c:"]
    assert first.steps[1].docstring == "doc p\n  indented"
    assert second.steps[2].table == [["k", "v"], ["1", "q"]]


# --- the yaml/* events -------------------------------------------------------------------

YAML_DOCS = {
    "v1.yaml": 2,
    "v1.0/v1_minimum.yaml": 6,
    "v03.yaml": 1,
    "v0.3/v03_minimum.yaml": 6,
}
YAML_CASES = [(path, i) for path, n in YAML_DOCS.items() for i in range(n)]


def load_yaml_doc(conformance_dir: Path, path: str, index: int) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    with open(conformance_dir / YAML_DIR / path, encoding="utf-8") as f:
        # BaseLoader keeps every scalar a string: "1.0" stays "1.0", times stay text.
        return list(yaml.load_all(f, Loader=yaml.BaseLoader))[index]


def test_we_run_every_yaml_event(conformance_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    root = conformance_dir / YAML_DIR
    found = {}
    for p in sorted(root.rglob("*.yaml")):
        with open(p, encoding="utf-8") as f:
            found[p.relative_to(root).as_posix()] = len(list(yaml.load_all(f, yaml.BaseLoader)))
    assert found == YAML_DOCS


def yaml_expectation(doc: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], Any]:
    """The attributes, extensions and in-memory data an event described in YAML has."""
    attrs = dict(doc["ContextAttributes"])
    extensions = attrs.pop("Extensions", {})
    text = doc.get("Data")
    content_type = attrs.get("datacontenttype")
    media = (content_type or "application/json").split(";")[0].strip()
    if text is None:
        data = None
    elif media.endswith("/json") or media.endswith("+json"):
        data = json.loads(text)
    elif media.startswith("text/") or "charset=" in (content_type or ""):
        data = text
    else:
        data = text.encode("utf-8")
    return attrs, extensions, data


def yaml_http_request(doc: dict[str, Any], mode: str) -> tuple[list[tuple[str, str]], bytes]:
    """An HTTP message for a YAML event, built here from the spec, not by the module."""
    attrs, extensions, data = yaml_expectation(doc)
    headers = [(k, v) for k, v in (doc.get("TransportExtensions") or {}).items()]
    if mode == "structured":
        body = {**attrs, **extensions}
        if data is not None:
            body["data"] = data
        return headers + [("Content-Type", JSON_FORMAT)], json.dumps(body).encode()
    safe = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
    for name, value in {**attrs, **extensions}.items():
        if name == "datacontenttype":
            headers.append(("Content-Type", value))
        else:
            headers.append((f"ce-{name}", quote(value, safe=safe)))
    return headers, (doc.get("Data") or "").encode("utf-8")


@pytest.mark.parametrize("path,index", YAML_CASES)
def test_yaml_events_round_trip(
    conformance_dir: Path, schema_validator: Any, path: str, index: int
) -> None:
    doc = load_yaml_doc(conformance_dir, path, index)
    attrs, extensions, data = yaml_expectation(doc)
    modes = [doc["Mode"]] if "Mode" in doc else ["binary", "structured"]
    if attrs["specversion"] != "1.0":
        # Given a CloudEvents 0.3 event, then Squall refuses it, saying which version it reads
        with pytest.raises(InvalidEvent, match=r"unsupported specversion '0\.3'.*1\.0"):
            Event(data=data, extensions=extensions, **attrs)
        for mode in modes:
            with pytest.raises(InvalidEvent, match=r"unsupported specversion '0\.3'"):
                from_http(*yaml_http_request(doc, mode))
        return
    expected = Event(data=data, extensions=extensions, **attrs)
    transport = [(k, v) for k, v in (doc.get("TransportExtensions") or {}).items()]
    for mode in modes:
        # Given the event as another producer would send it, when we read it, we get it all
        assert from_http(*yaml_http_request(doc, mode)) == expected, mode
        # And when we write it and read it back, nothing is lost
        headers, body = to_http(expected, mode)
        decoded = from_http(headers + transport, body)
        if mode == "structured":
            assert decoded == expected
            assert_schema_valid(schema_validator, body)
            continue
        assert decoded == as_binary_peer_sees_it(expected)
        for name, value in headers:  # ce- values: printable US-ASCII, nothing to quote
            if name.startswith("ce-"):
                assert all(0x21 <= ord(c) <= 0x7E for c in value), (name, value)
        raw = doc.get("Data") or ""
        if data is None or isinstance(data, bytes | str) and "json" not in str(
            expected.datacontenttype
        ):
            assert body == raw.encode("utf-8")
        else:  # a JSON value: the same JSON, perhaps spaced differently
            assert json.loads(body) == json.loads(raw)


# --- events we emit: JSON format, batches, schema --------------------------------------------

GALLERY = [
    Event("1", "/s", "t", time=T0, datacontenttype="application/json", data={"a": [1, 2.5]}),
    Event("2", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "t", data="a JSON string"),
    Event("3", "/s", "t", datacontenttype="application/octet-stream", data=b"\x00\xff\x10"),
    Event("4", "/s", "t", datacontenttype="text/plain; charset=utf-8", data="Hello, 🌎!\n"),
    Event("5", "/s", "t", datacontenttype="application/xml", data='<much wow="xml"/>'),
    Event("6", "/s", "t", subject="a b \"c\" 100% €", dataschema="https://x.example/s.json"),
    Event(
        "7", "/s", "t", time="2018-04-05T17:31:00.25+02:00", data=[True, None, 0],
        extensions={"traceparent": TP, "idempotencykey": "k-7", "comexampleothervalue": 5,
                    "flag": False, "raw": b"\x01", "when": T0, "nl": "line\nbreak"},
    ),  # fmt: skip
    Event("8", "/s", "t", datacontenttype="application/cloudevents+json", data={"nested": 1}),
]


@pytest.mark.parametrize("event", GALLERY, ids=lambda e: e.id)
def test_every_structured_event_we_emit_passes_the_schema(
    schema_validator: Any, event: Event
) -> None:
    assert_schema_valid(schema_validator, to_json_bytes(event))
    assert_schema_valid(schema_validator, to_http(event, "structured")[1])
    assert_schema_valid(schema_validator, to_json_batch_bytes([event, event]))
    assert_schema_valid(schema_validator, to_http_batch([event])[1])


@pytest.mark.parametrize("event", GALLERY, ids=lambda e: e.id)
def test_json_and_http_round_trips(event: Event) -> None:
    typed = {k: v for k, v in event.extensions.items() if isinstance(v, bytes | datetime)}
    as_json = from_json(json.loads(to_json_bytes(event)))
    # JSON keeps booleans and integers; bytes and timestamps travel as their strings.
    assert as_json == event.with_extensions(
        **{k: to_json(event)[k] for k in typed}
    )
    assert from_http(*to_http(event, "structured")) == as_json
    if str(event.datacontenttype).startswith("application/cloudevents"):
        # Then binary mode is refused: the receiver would read the data as the event
        with pytest.raises(InvalidEvent, match="send it in structured mode"):
            to_http(event, "binary")
        return
    assert from_http(*to_http(event, "binary")) == as_binary_peer_sees_it(event)


def test_bytes_travel_as_data_base64() -> None:
    event = GALLERY[2]
    doc = to_json(event)
    assert doc["data_base64"] == "AP8Q" and "data" not in doc
    assert from_json(doc).data == b"\x00\xff\x10"
    headers, body = to_http(event)
    assert body == b"\x00\xff\x10" and ("content-type", "application/octet-stream") in headers


def test_batches() -> None:
    headers, body = to_http_batch(GALLERY[:3])
    assert headers == [("content-type", f"{JSON_BATCH_FORMAT}; charset=utf-8")]
    assert from_http(headers, body) == from_json_batch(json.loads(body)) == GALLERY[:3]
    assert from_json_batch_bytes(to_json_batch_bytes([])) == []
    assert from_http({"Content-Type": JSON_BATCH_FORMAT}, b"[]") == []
    assert to_json_batch(GALLERY[:1]) == [to_json(GALLERY[0])]


def test_json_nulls_are_unset_and_members_are_ordered() -> None:
    event = from_json(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "subject": None,
         "time": None, "unsetextension": None, "data": None}
    )  # fmt: skip
    assert (event.subject, event.time, event.data, dict(event.extensions)) == (None,) * 3 + ({},)
    assert list(to_json(GALLERY[6])) == [
        "specversion", "id", "source", "type", "time", "traceparent", "idempotencykey",
        "comexampleothervalue", "flag", "raw", "when", "nl", "data",
    ]  # fmt: skip


def test_times() -> None:
    assert format_time(parse_time("2018-04-05T03:56:24Z")) == "2018-04-05T03:56:24Z"
    assert format_time(parse_time("2018-04-05t03:56:24.5+02:00")) == (
        "2018-04-05T03:56:24.500000+02:00"
    )
    # Nanoseconds are truncated to what datetime holds; -00:00 is UTC; a leap second stays last
    assert parse_time("2018-04-05T03:56:24.123456789Z").microsecond == 123456
    assert parse_time("2018-04-05T03:56:24-00:00").utcoffset() == timedelta(0)
    assert parse_time("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)
    odd = datetime(2018, 4, 5, tzinfo=timezone(timedelta(seconds=30)))
    assert Event("1", "/s", "t", time=odd).time.utcoffset() == timedelta(0)


# --- the Event itself ----------------------------------------------------------------------


def test_new_fills_id_time_and_content_type() -> None:
    a = Event.new("/orders", "OrderCreated", {"id": 1}, subject="o-1", traceparent=TP)
    b = Event.new("/orders", "OrderCreated", b"raw", extensions={"partitionkey": "p"})
    assert a.id != b.id and len(a.id) == 36
    assert a.time is not None and a.time.tzinfo is not None
    assert abs(datetime.now(UTC) - a.time) < timedelta(minutes=1)
    assert (a.datacontenttype, b.datacontenttype) == ("application/json", None)
    assert (a.subject, a.extensions["traceparent"], b.extensions["partitionkey"]) == (
        "o-1", TP, "p",
    )  # fmt: skip
    assert Event.new("/s", "t", id="fixed", time=T0).id == "fixed"


def test_idempotency_key_and_trace_parent() -> None:
    event = Event("id-1", "/s", "t")
    assert event.idempotency_key == "id-1" and event.trace_parent is None
    keyed = event.with_extensions(idempotencykey="order-9", traceparent=f" {TP}")
    assert keyed.idempotency_key == "order-9" and keyed.trace_parent == TP
    # W3C: a malformed traceparent is ignored (a new trace starts), not an error
    assert event.with_extensions(traceparent="garbage").trace_parent is None
    assert "idempotencykey" not in keyed.with_extensions(idempotencykey=None).extensions


def test_events_are_frozen_hashable_and_picklable() -> None:
    event = GALLERY[6]
    with pytest.raises(FrozenInstanceError):
        event.id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.extensions["x"] = 1  # type: ignore[index]
    assert pickle.loads(pickle.dumps(event)) == event
    assert hash(Event("1", "/s", "t", extensions={"a": "b"})) == hash(
        Event("1", "/s", "t", extensions={"a": "b"})
    )
    assert Event("1", "/s", "t", data=bytearray(b"x")).data == b"x"


# --- HTTP binding details ------------------------------------------------------------------


def test_header_values_are_percent_encoded_as_the_spec_example() -> None:
    headers, _ = to_http(Event("1", "/s", "t", subject="Euro € 😀"))
    assert ("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80") in headers
    assert ("ce-specversion", "1.0") in headers


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),
        ("euro%e2%82%ac", "euro€"),  # lower-case hex must be accepted
        ("%41BC", "ABC"),  # unnecessary encoding must be accepted
        ('"quoted value with \\"escapes\\""', 'quoted value with "escapes"'),  # RFC 7230
        ('  padded\t', "padded"),
        ("Euro \xe2\x82\xac", "Euro €"),  # raw UTF-8 bytes as a server hands them (latin-1)
        ("é x\"%", "é x\"%"),  # already-Unicode text, as the legacy SDK sends it
        ("100%", "100%"),
    ],
)
def test_header_values_are_decoded(raw: str, expected: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    event = from_http({**headers, "ce-subject": raw}, b"")
    assert isinstance(event, Event) and event.subject == expected


def test_header_names_are_case_insensitive_and_repeats_join() -> None:
    event = from_http(
        [("CE-SpecVersion", "1.0"), ("Ce-Id", "1"), ("CE-SOURCE", "/s"), ("ce-type", "t"),
         ("ce-comexamplelist", "a"), ("CE-COMEXAMPLELIST", "b"), ("CONTENT-TYPE", "text/csv"),
         ("User-Agent", "curl")],
        b"x,y",
    )  # fmt: skip
    assert isinstance(event, Event)
    assert (event.id, event.extensions["comexamplelist"], event.data) == ("1", "a,b", "x,y")
    assert event.datacontenttype == "text/csv"


@pytest.mark.parametrize(
    "content_type,body,data",
    [
        ("application/json", b'{"a":1}', {"a": 1}),
        ("application/vnd.api+json", b"[1]", [1]),
        ("text/plain", "héllo".encode(), "héllo"),
        ("text/plain; charset=iso-8859-1", "héllo".encode("latin-1"), "héllo"),
        ("application/xml; charset=utf-8", b"<a/>", "<a/>"),
        ("application/octet-stream", b"\x00\x01", b"\x00\x01"),
        ("image/png", b"\x89PNG", b"\x89PNG"),
        ("text/csv", b"a,\xff", b"a,\xff"),  # not UTF-8, and no charset promised: bytes
        ("application/atom+xml", b"<feed/>", "<feed/>"),
        (None, b'{"a":1}', {"a": 1}),  # no type: JSON if it parses (JSON format's default)
        (None, b"\x00\x01", b"\x00\x01"),  # else opaque bytes
        ("application/json", b"", None),
    ],
)
def test_binary_mode_data_by_content_type(content_type: str | None, body: bytes, data: Any) -> None:
    headers = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]
    if content_type:
        headers.append(("content-type", content_type))
    event = from_http(headers, body)
    assert isinstance(event, Event)
    assert event.data == data and type(event.data) is type(data)
    assert event.datacontenttype == content_type


def test_structured_mode_ignores_ce_headers() -> None:
    headers, body = to_http(GALLERY[0], "structured")
    assert from_http(headers + [("ce-id", "other")], body) == GALLERY[0]


# --- interop with the official Python SDK --------------------------------------------------


def _sdk_id(value: Any) -> str:
    return value.get("id", "") if isinstance(value, dict) else ""


def legacy_sdk() -> Any:
    """The SDK's long-standing API: `cloudevents.v1` in 2.x, top-level in 1.x."""
    try:
        from cloudevents.v1 import conversion
        from cloudevents.v1.http import CloudEvent, from_http as sdk_from_http
    except ImportError:  # cloudevents 1.x
        conversion = pytest.importorskip("cloudevents.conversion")
        from cloudevents.http import CloudEvent, from_http as sdk_from_http
    return conversion, CloudEvent, sdk_from_http


LEGACY_EVENTS = [
    ({"type": "com.example.t", "source": "/s", "id": "A-1", "time": "2018-04-05T17:31:00Z",
      "datacontenttype": "application/json", "comexampleext": "value"}, {"a": [1, "é"]}),
    ({"type": "t", "source": "/s", "id": "A-2", "subject": "é x"}, {"implied": "json"}),
    ({"type": "t", "source": "/s", "id": "A-3", "datacontenttype": "image/png"}, b"\x89PNG"),
    ({"type": "t", "source": "/s", "id": "A-4", "datacontenttype": "text/plain"}, "hi"),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("attrs,data", LEGACY_EVENTS, ids=_sdk_id)
def test_legacy_sdk_output_parses(
    schema_validator: Any, mode: str, attrs: dict, data: Any
) -> None:
    conversion, CloudEvent, _ = legacy_sdk()
    sdk_event = CloudEvent(attrs, data)
    headers, body = getattr(conversion, f"to_{mode}")(sdk_event)
    event = from_http(headers, body)
    assert isinstance(event, Event)
    if mode == "binary" and isinstance(data, str):
        # This SDK's default binary marshaller JSON-encodes text: we read what it sent
        assert body == json.dumps(data).encode() and event.data == json.dumps(data)
        data = event.data
    for name in ("id", "source", "type", "subject", "datacontenttype"):
        assert getattr(event, name) == attrs.get(name)
    assert event.time == parse_time(attrs["time"]) if "time" in attrs else event.time is not None
    assert event.data == data
    assert dict(event.extensions) == {k: v for k, v in attrs.items() if k == "comexampleext"}
    if mode == "structured":
        assert_schema_valid(schema_validator, to_json_bytes(event))


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("event", [GALLERY[0], GALLERY[2], GALLERY[4]], ids=lambda e: e.id)
def test_legacy_sdk_reads_our_output(mode: str, event: Event) -> None:
    _, _, sdk_from_http = legacy_sdk()
    event = event.with_extensions(comexampleext="value", traceparent=TP)
    headers, body = to_http(event, mode)
    sdk_event = sdk_from_http(dict(headers), body)
    assert (sdk_event["id"], sdk_event["source"], sdk_event["type"]) == (
        event.id, event.source, event.type,
    )  # fmt: skip
    assert sdk_event["specversion"] == "1.0"
    assert sdk_event.get("datacontenttype") == event.datacontenttype
    assert sdk_event["comexampleext"] == "value" and sdk_event["traceparent"] == TP
    if event.time is not None:
        assert parse_time(sdk_event["time"]) == event.time
    data = sdk_event.get_data()
    if isinstance(data, bytes) and isinstance(event.data, str):
        data = data.decode()  # this SDK keeps non-JSON bodies as bytes
    assert data == event.data


def core_sdk() -> Any:
    http = pytest.importorskip("cloudevents.core.bindings.http", reason="cloudevents 2.x API")
    from cloudevents.core.v1.event import CloudEvent

    return http, CloudEvent


CORE_EVENTS = [
    ({"type": "t", "source": "/s", "id": "C-1", "time": T0, "subject": "Euro € 😀 \"q\" 5%",
      "datacontenttype": "application/json", "traceparent": TP}, {"a": 1}),
    ({"type": "t", "source": "/s", "id": "C-2", "datacontenttype": "text/plain"}, "héllo 🌎"),
    ({"type": "t", "source": "/s", "id": "C-3", "datacontenttype": "application/octet-stream"},
     b"\x00\x01"),
    ({"type": "t", "source": "/s", "id": "C-4", "dataschema": "https://x.example/s"}, None),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("attrs,data", CORE_EVENTS, ids=_sdk_id)
def test_core_sdk_output_parses(
    schema_validator: Any, mode: str, attrs: dict, data: Any
) -> None:
    http, CloudEvent = core_sdk()
    message = getattr(http, f"to_{mode}_event")(CloudEvent(dict(attrs), data))
    event = from_http(message.headers, message.body)
    assert isinstance(event, Event)
    for name in ("id", "source", "type", "subject", "datacontenttype", "dataschema", "time"):
        assert getattr(event, name) == attrs.get(name, getattr(event, name)), name
    assert event.data == data
    assert event.trace_parent == attrs.get("traceparent")
    assert_schema_valid(schema_validator, to_json_bytes(event))


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("event", GALLERY[:6], ids=lambda e: e.id)
def test_core_sdk_reads_our_output(mode: str, event: Event) -> None:
    http, _ = core_sdk()
    headers, body = to_http(event.with_extensions(traceparent=TP), mode)
    sdk_event = http.from_http_event(http.HTTPMessage(headers=dict(headers), body=body))
    attrs = sdk_event.get_attributes()
    assert (attrs["id"], attrs["source"], attrs["type"]) == (event.id, event.source, event.type)
    assert attrs.get("subject") == event.subject
    if event.time is not None:  # the SDK stamps the current time on events without one
        assert attrs["time"] == event.time
    assert attrs.get("dataschema") == event.dataschema and attrs["traceparent"] == TP
    expected_type = as_binary_peer_sees_it(event).datacontenttype if mode == "binary" else (
        event.datacontenttype
    )
    assert attrs.get("datacontenttype") == expected_type
    assert sdk_event.get_data() == event.data


# --- invalid input -------------------------------------------------------------------------

VALID = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
CE = {f"ce-{k}": v for k, v in VALID.items()}  # the same, as binary-mode headers


@pytest.mark.parametrize(
    "doc,message",
    [
        ({k: v for k, v in VALID.items() if k != "id"}, "missing required attribute 'id'"),
        ({k: v for k, v in VALID.items() if k != "source"}, "missing required attribute 'source'"),
        ({k: v for k, v in VALID.items() if k != "type"}, "missing required attribute 'type'"),
        ({k: v for k, v in VALID.items() if k != "specversion"}, "'specversion'"),
        ({**VALID, "id": ""}, "'id' must be a non-empty string"),
        ({**VALID, "specversion": "0.3"}, r"unsupported specversion '0\.3'"),
        ({**VALID, "specversion": "2.0"}, r"unsupported specversion '2\.0'"),
        ({**VALID, "specversion": 1.0}, "'specversion' must be a JSON string, got number"),
        ({**VALID, "id": 7}, "'id' must be a JSON string, got number"),
        ({**VALID, "comExample": "x"}, "'comExample' is not valid"),
        ({**VALID, "my_ext": "x"}, "'my_ext' is not valid"),
        ({**VALID, "my-ext": "x"}, "'my-ext' is not valid"),
        ({**VALID, "": "x"}, "name '' is not valid"),
        ({**VALID, "ext": 2**31}, "outside the CloudEvents Integer range"),
        ({**VALID, "ext": 1.5}, "must be a string, boolean or integer, got number"),
        ({**VALID, "ext": {"a": 1}}, "got object"),
        ({**VALID, "data_base64": "not base64!"}, "not valid base64"),
        ({**VALID, "data_base64": "AAE"}, "not valid base64"),
        ({**VALID, "data_base64": 5}, "'data_base64' must be a JSON string"),
        ({**VALID, "data": "x", "data_base64": "AA=="}, "both 'data' and 'data_base64'"),
        ({**VALID, "time": "yesterday"}, "RFC 3339"),
        ({**VALID, "time": "2018-04-05 03:56:24Z"}, "RFC 3339"),
        ({**VALID, "time": "2018-04-05T03:56:24"}, "RFC 3339"),
        ({**VALID, "time": "2018-13-05T00:00:00Z"}, "month must be in 1..12"),
        ({**VALID, "datacontenttype": "json"}, "not an RFC 2046 media type"),
        ({**VALID, "dataschema": "/relative"}, "must be an absolute URI"),
        ({**VALID, "subject": ""}, "'subject' must be a non-empty string"),
        ({**VALID, "id": "\ud800"}, "unpaired UTF-16 surrogate"),
        ({**VALID, "datacontenttype": "text/plain", "data": {"a": 1}}, "must be str or bytes"),
        ([VALID], "must be a JSON object, got array"),
    ],
)
def test_invalid_json_events(doc: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        from_json(doc)


@pytest.mark.parametrize(
    "headers,body,message",
    [
        ({"content-type": JSON_FORMAT}, b'{"id": 1,', "not valid JSON: Expecting"),
        ({"content-type": JSON_FORMAT}, b"\xff\xfe{", "not valid JSON"),
        ({"content-type": JSON_FORMAT}, b'{"x": NaN}', "NaN is not JSON"),
        ({"content-type": JSON_FORMAT}, b"[]", "must be a JSON object, got array"),
        ({"content-type": JSON_BATCH_FORMAT}, b"{}", "batch must be a JSON array"),
        ({"content-type": JSON_BATCH_FORMAT},
         json.dumps([VALID, {**VALID, "id": None}]).encode(),
         r"batch event \[1\]: missing required attribute 'id'"),
        ({"content-type": "application/cloudevents+avro"}, b"", "unsupported .* event format"),
        ({"content-type": "application/cloudevents-batch+xml"}, b"", "unsupported .* batch"),
        ({"content-type": "application/json"}, b"{}", "not a CloudEvent"),
        ({}, b"", "not a CloudEvent"),
        ({**CE, "ce-specversion": None}, b"", "missing required header ce-specversion"),
        ({**CE, "ce-id": None}, b"", "missing required header ce-id"),
        ({**CE, "ce-specversion": "0.3"}, b"", "specversion '0.3'"),
        ({**CE, "ce-my-ext": "x"}, b"", "header ce-my-ext does not name"),
        ({**CE, "ce-datacontenttype": "a/b"}, b"", "must not be sent"),
        ({**CE, "ce-subject": "%C0%A0"}, b"", "not valid percent-encoded UTF-8"),  # overlong
        ({**CE, "ce-data": "x"}, b"", "'data' is reserved"),
        ({**CE, "ce-time": "now"}, b"", "RFC 3339"),
        ({**CE, "content-type": "application/json"},
         b"{nope", "the body is not valid JSON"),
        ({**CE, "content-type": "text/plain; charset=utf-8"},
         b"\xff", "not utf-8 text as Content-Type"),
        ({**CE, "content-type": "text/plain; charset=nope"},
         b"x", "unknown charset 'nope'"),
        ({**CE, "content-type": "nonsense"}, b"x", "RFC 2046"),
    ],
)  # fmt: skip
def test_invalid_http_messages(headers: dict, body: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message) as caught:
        from_http({k: v for k, v in headers.items() if v is not None}, body)
    # Suitable for an HTTP 400 JSON body: a 400 status, a gateway error code, a message
    from squall.gateway.errors import ERRORS

    assert caught.value.status == 400 and ERRORS[caught.value.code][0] == 400
    json.dumps({"message": caught.value.message})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"time": datetime(2018, 4, 5)}, "timezone-aware"),
        ({"time": 5}, "must be a datetime or an RFC 3339 string"),
        ({"extensions": {"id": "x"}}, "'id' is reserved"),
        ({"extensions": {"ext": 1.5}}, "got float"),
        ({"extensions": ["x"]}, "must be a mapping"),
        ({"data": object()}, "must be bytes, str or a JSON value"),
        ({"source": None}, "'source' must be a string"),
    ],
)
def test_invalid_events(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        Event(**{"id": "1", "source": "/s", "type": "t", **kwargs})


def test_unserialisable_data_is_reported() -> None:
    event = Event("1", "/s", "t", data={"x": float("nan")})
    for encode in (to_json_bytes, lambda e: to_http(e, "binary")):
        with pytest.raises(InvalidEvent, match="event '1': data is not JSON-serialisable"):
            encode(event)
    with pytest.raises(InvalidEvent, match="cannot be encoded as us-ascii"):
        to_http(Event("1", "/s", "t", datacontenttype="text/plain; charset=us-ascii", data="é"))
    with pytest.raises(ValueError, match="mode must be"):
        to_http(GALLERY[0], "batch")  # type: ignore[arg-type]


# --- W3C traceparent -----------------------------------------------------------------------


def test_traceparent_parse_new_and_child() -> None:
    parsed = parse_traceparent(TP)
    assert parsed == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert parsed.sampled and not parse_traceparent(TP[:-2] + "00").sampled
    fresh = {new_traceparent() for _ in range(50)}
    assert len(fresh) == 50 and all(parse_traceparent(v).sampled for v in fresh)
    assert parse_traceparent(new_traceparent(sampled=False)).flags == 0
    child = parse_traceparent(child_traceparent(TP))
    assert (child.trace_id, child.flags) == (parsed.trace_id, 1)
    assert child.parent_id != parsed.parent_id
    assert parse_traceparent(child_traceparent(None)).version == "00"
    # A later version: its first four fields are read, the rest ignored; we answer in 00
    future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-what-the-future-holds"
    assert parse_traceparent(future)[:3] == ("cc", parsed.trace_id, parsed.parent_id)
    assert child_traceparent(future).startswith(f"00-{parsed.trace_id}-")
    assert child_traceparent(future).endswith("-03")  # unknown flag bits are zeroed


@pytest.mark.parametrize(
    "value,message",
    [
        ("", "not a W3C Trace Context value"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "lower-case"),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "not a W3C"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", "not a W3C"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "not a W3C"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "not a W3C"),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "not a W3C"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace id"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent id"),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "version 00 has four"),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "not a W3C"),
        (None, "must be a string"),
    ],
)
def test_bad_traceparents(value: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        parse_traceparent(value)
    if isinstance(value, str):
        with pytest.raises(InvalidEvent):
            child_traceparent(value)

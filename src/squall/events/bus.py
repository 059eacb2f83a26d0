"""The event bus's pure parts: EventBridge-shaped events, and how a rule's input
transformation turns a matched event into what its target receives.

Input transformation follows EventBridge: `input_path` picks one part of the event
(`$.detail`); an input transformer maps variables to simple JSON paths
(`{"order": "$.detail.id"}`) and fills `<order>` in a template. In a JSON template a
string value is inserted quoted, other values as JSON; in a text template as text.
`<aws.events.event>` is the whole event and `<aws.events.rule-name>` the rule's name.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

_PATH = re.compile(r"^\$(\.[A-Za-z0-9_\-]+|\[\d+\])*$")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")
_VAR = re.compile(r"<([A-Za-z0-9_.\-]+)>")


class InvalidTransform(ValueError):
    pass


def make_event(source: str, detail_type: str, detail: Any, *, resources: list[str] | None = None,
               time: datetime | None = None, event_id: str | None = None,
               account: str = "000000000000", region: str = "local") -> dict[str, Any]:
    when = (time or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": list(resources or []),
        "detail": detail if detail is not None else {},
    }


def validate_path(path: str) -> None:
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise InvalidTransform(f"{path!r} is not a JSON path like $.detail.order.id")


def get_path(event: Any, path: str) -> Any:
    """The value at a simple JSON path, or None when absent."""
    value = event
    for name, index in _STEP.findall(path[1:]):
        if name:
            if not isinstance(value, dict) or name not in value:
                return None
            value = value[name]
        else:
            i = int(index)
            if not isinstance(value, list) or i >= len(value):
                return None
            value = value[i]
    return value


def validate_transformer(spec: dict[str, Any]) -> None:
    if not isinstance(spec, dict) or "template" not in spec:
        raise InvalidTransform("an input transformer needs a template (and input_paths)")
    paths = spec.get("input_paths", {})
    if not isinstance(paths, dict) or len(paths) > 100:
        raise InvalidTransform("input_paths must map at most 100 names to JSON paths")
    for name, path in paths.items():
        if name.startswith("aws.events."):
            raise InvalidTransform(f"input path name {name!r} is reserved")
        validate_path(path)
    if not isinstance(spec["template"], str):
        raise InvalidTransform("the template must be a string")


def transform(event: dict[str, Any], rule_name: str, *, input_path: str | None = None,
              transformer: dict[str, Any] | None = None) -> Any:
    """What a rule's target receives for `event`."""
    if input_path is not None:
        return get_path(event, input_path)
    if transformer is None:
        return event
    values: dict[str, Any] = {k: get_path(event, p)
                              for k, p in transformer.get("input_paths", {}).items()}
    values["aws.events.rule-name"] = rule_name
    values["aws.events.event"] = event
    values["aws.events.event.json"] = event
    values["aws.events.event.ingestion-time"] = event.get("time")
    template: str = transformer["template"]
    as_json = _looks_json(template)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            return m.group(0)
        v = values[name]
        if as_json:
            if isinstance(v, str) and _inside_quotes(template, m.start()):
                return json.dumps(v)[1:-1]
            return json.dumps(v)
        return v if isinstance(v, str) else json.dumps(v)

    out = _VAR.sub(fill, template)
    if as_json:
        try:
            return json.loads(out)
        except ValueError:
            return out
    return out


def _looks_json(template: str) -> bool:
    t = template.strip()
    return (t.startswith("{") and t.endswith("}")) or (t.startswith("[") and t.endswith("]"))


def _inside_quotes(text: str, pos: int) -> bool:
    """Is `pos` inside a JSON string literal? (count unescaped quotes before it)"""
    count, i = 0, 0
    while i < pos:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            count += 1
        i += 1
    return count % 2 == 1

"""The app's functions as an operator sees them (`squall functions`, the Functions page)."""

from __future__ import annotations

from typing import Any


def trigger_summary(f: dict[str, Any], manifest: dict[str, Any] | None = None) -> str:
    """What runs a function, in a few words, from its manifest entry (and the app's
    manifest, for the bus rules and topic subscriptions that target it)."""
    if f.get("routes"):
        return ", ".join(f"{m} {p}" for m, p in f["routes"])
    if f.get("queue"):
        return f"queue {f['queue']['queue']}"
    if f.get("schedule"):
        return f"schedule {f['schedule']['expression']}"
    if f.get("stream"):
        return f"stream {f['stream']['stream']}"
    if f.get("mqtt"):
        return f"mqtt {f['mqtt']['topic']}"
    if f.get("email"):
        return f"email {', '.join(f['email']['to'])}"
    if f["name"] in {w["name"] for w in (manifest or {}).get("workflows", [])}:
        return "workflow"
    target = f"function:{f['name']}"
    rules = [r["name"] for r in (manifest or {}).get("rules", []) if target in r["targets"]]
    topics = sorted({s["topic"] for s in (manifest or {}).get("subscriptions", [])
                     if s["target"] == target})
    if rules or topics:
        return ", ".join([f"rule {r}" for r in rules] + [f"topic {t}" for t in topics])
    return "invoke"

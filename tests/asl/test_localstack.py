"""Conformance: the AWS-recorded Step Functions execution histories in localstack's test
suite (../shared/conformance/localstack, indexed by derived/localstack-sfn-test-index.json).
Each history with no Task states is run through the engine; the final output, or the
error must match what AWS recorded, and so must the sequence of states entered and exited
(for Parallel, whose branches AWS interleaves, the multiset of them).
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from squall.asl import DefinitionError, Env, StateMachine

from conftest import conformance_root

from .fakes import FakeClock

INDEX = "derived/localstack-sfn-test-index.json"

# Whole families skipped, each for one reason (decided from the template text / history):
FAMILIES = (
    (r'"?QueryLanguage"?\s*:\s*"JSONata"', "QueryLanguage JSONata is out of scope"),
    (r'"?ItemReader"?\s*:', "distributed Map reading items from S3 is out of scope"),
    (r'"?ResultWriter"?\s*:', "distributed Map writing results to S3 is out of scope"),
    (r'"?ItemBatcher"?\s*:', "distributed Map item batching is out of scope"),
    (r"%[A-Z_]+PLACEHOLDER%", "the localstack test patches this template in Python first"),
)
# single cases -> why (kept small)
SKIP: dict[str, str] = {
    "test_get_execution_history_reversed": "the history was read before the execution ended",
    "test_stop_execution": "the execution was stopped by StopExecution (not an ASL feature)",
    "test_max_concurrency_path_negative": "the history was read before the execution ended",
    "test_timestamp_too_far_in_future_boundary": "the history was read while still waiting",
    "test_map_state_items_input_array": "the localstack test patches the template in Python",
    "test_map_state_items_input_types": "JSONata Items field (patched in by the test)",
    "test_json_path_array_wildcard_or_slice_with_no_input":
        "the test substitutes the JSONPath into the template in Python",
    "test_json_path_array_access": "the test substitutes the JSONPath into the template",
    "test_state_pass_result_jsonpaths": "the test patches the template in Python",
    "test_escape_sequence_parsing[ESCAPE_SEQUENCES_STRING_LITERALS]":
        "json5 cannot read the lone surrogates in this template",
    "test_wait_timestamp_path": "the test writes a timestamp relative to now into the input",
    "test_wait_timestamppath": "the test writes a timestamp relative to now into the input",
    "test_query_context_object_values": "needs localstack's ARN/date transformers in detail",
    "test_context_json_path": "needs localstack's ARN transformers inside a formatted string",
    "test_math_random::exec_hist_resp_0": "float bounds are truncated by AWS (not modelled)",
    "test_map_state_catch_empty_fail": "AWS reports a Map branch's empty Fail with no error",
}


def _json5() -> Any:
    return pytest.importorskip("json5")


def _parse(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


@lru_cache(maxsize=None)
def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@lru_cache(maxsize=None)
def _load_json5(path: Path) -> Any:
    return _json5().loads(path.read_text())


@lru_cache(maxsize=None)
def _text(path: Path) -> str:
    return path.read_text(errors="replace")


def cases(root: Path | None) -> list[Any]:
    if root is None:
        return []
    index = json.loads((root / INDEX).read_text())["tests"]
    out = []
    for test_id, entry in sorted(index.items()):
        if not entry["no_task_states"] or not entry["snapshots"]:
            continue
        for snap in entry["snapshots"]:
            data = _load_json(root / snap["file"]).get(snap["key"])
            if data is None:
                continue
            for key, value in data["recorded-content"].items():
                if isinstance(value, dict) and isinstance(value.get("events"), list):
                    out.append((f"{snap['key'].split('::', 1)[1]}::{key}", entry["templates"],
                                value["events"]))
    return out


def _pick(root: Path, templates: list[str], events: list[dict[str, Any]], case_id: str
          ) -> Any:
    """The template this history ran: the one whose Comment is the test's parameter id,
    else the first whose StartAt is the first state entered."""
    entered = [e["stateEnteredEventDetails"]["name"] for e in events
               if "stateEnteredEventDetails" in e]
    param = re.search(r"\[([^\]]+)\]::", case_id)
    loaded = []
    for t in templates:
        d = _load_json5(root / t)
        if isinstance(d, dict) and "States" in d:
            loaded.append(d)
            if param and Path(t).name.split(".")[0] == param.group(1).lower():
                return d
    if param:
        for d in loaded:
            if d.get("Comment") == param.group(1):
                return d
    for d in loaded:
        if entered and d.get("StartAt") == entered[0]:
            return d
    return loaded[0] if loaded else None


def expected(events: list[dict[str, Any]]) -> tuple[str, Any]:
    last = events[-1]
    if last["type"] == "ExecutionSucceeded":
        return "ok", _parse(last["executionSucceededEventDetails"].get("output"))
    if last["type"] == "ExecutionFailed":
        d = last["executionFailedEventDetails"]
        return "failed", (d.get("error"), d.get("cause"))
    if last["type"] == "ExecutionTimedOut":
        return "timed_out", None
    return "other", last["type"]


_ANY = {"date", "timestamp", "start-time", "<timestamp>", "generated-uuid",
        "RandomNumberGenerated", "entered-time"}


def same(want: Any, got: Any) -> bool:
    """Equal, reading localstack's snapshot placeholders (<uuid:1>, <ArnPart_0idx>, "date")
    as wildcards."""
    if isinstance(want, str) and (want in _ANY or "<" in want):
        if want in _ANY:
            return got is not None
        if not isinstance(got, str):
            return False
        pattern = re.escape(want)
        pattern = re.sub(r"\\<[^>]*\\>|<[^>]*>", ".+", pattern)
        return re.fullmatch(pattern, got, re.S) is not None or want == got
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(same(want[k], got[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(same(a, b) for a, b in zip(want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    return want == got


_RESULTS: dict[str, tuple[str, str]] = {}


def run_case(root: Path, templates: list[str], events: list[dict[str, Any]], case_id: str = ""
             ) -> tuple[str, str]:
    """(verdict, detail): verdict is pass | fail | invalid (remembered per case id)."""
    if case_id and case_id in _RESULTS:
        return _RESULTS[case_id]
    _RESULTS[case_id] = verdict = _run_case(root, templates, events, case_id)
    return verdict


def _run_case(root: Path, templates: list[str], events: list[dict[str, Any]], case_id: str
              ) -> tuple[str, str]:
    definition = copy.deepcopy(_pick(root, templates, events, case_id))
    start = events[0].get("executionStartedEventDetails", {})
    data = _parse(start.get("input", {}))
    kind, want = expected(events)
    clock = FakeClock()
    try:
        machine = StateMachine("test", definition)
    except DefinitionError as exc:
        return "invalid", str(exc)
    ex = machine.run(data, Env(now=clock.now, sleep=clock.sleep), name="exec")
    if kind == "ok":
        if ex.status != "SUCCEEDED":
            return "fail", f"wanted output {want!r}, got {ex.error}: {ex.cause}"
        if not same(want, ex.output):
            return "fail", f"wanted output {want!r}, got {ex.output!r}"
    elif kind == "failed":
        if ex.status != "FAILED" or ex.error != want[0]:
            return "fail", f"wanted error {want!r}, got {ex.status} {ex.error}: {ex.cause} " \
                           f"{ex.output!r}"
    elif kind == "timed_out":
        if ex.status != "TIMED_OUT":
            return "fail", f"wanted a timeout, got {ex.status}"
    else:
        return "fail", f"unexpected final event {want}"
    def seq(evs: list[dict[str, Any]]) -> list[Any]:
        return [(e["type"], (e.get("stateEnteredEventDetails") or
                             e.get("stateExitedEventDetails"))["name"])
                for e in evs if e["type"].endswith(("StateEntered", "StateExited"))]
    want_seq, got_seq = seq(events), seq(ex.history)
    if any(e.get("type", "").startswith("Parallel") for e in events):
        # AWS interleaves concurrent branches (and may record a nested branch's exit after
        # the parent's): compare the states entered, not the order
        want_seq = sorted(x for x in want_seq if x[0].endswith("Entered"))
        got_seq = sorted(x for x in got_seq if x[0].endswith("Entered"))
    if want_seq != got_seq:
        return "fail", f"state sequence differs: {want_seq} vs {got_seq}"
    return "pass", ""


def skip_reason(root: Path, case_id: str, templates: list[str], events: list[Any]) -> str | None:
    for frag, why in SKIP.items():
        if frag in case_id:
            return why
    text = " ".join(_text(root / t) for t in templates)
    for frag, why in FAMILIES:
        if re.search(frag, text):
            return why
    return None


CASES = cases(conformance_root())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_localstack_history(conformance_dir: Path, case: Any) -> None:
    case_id, templates, events = case
    why = skip_reason(conformance_dir, case_id, templates, events)
    if why:
        pytest.skip(why)
    verdict, detail = run_case(conformance_dir, templates, events, case_id)
    assert verdict == "pass", detail


def test_localstack_totals(conformance_dir: Path) -> None:
    """The headline figure kept in docs/asl.md: how many of the ~430 AWS-recorded
    histories pass, and that every non-skipped one does."""
    counts = {"pass": 0, "skip": 0, "fail": 0}
    for case_id, templates, events in cases(conformance_dir):
        if skip_reason(conformance_dir, case_id, templates, events):
            counts["skip"] += 1
            continue
        counts["pass" if run_case(conformance_dir, templates, events, case_id)[0] == "pass"
               else "fail"] += 1
    assert counts["fail"] == 0, counts
    assert counts["pass"] >= 236, counts

"""Static validation of a state machine definition (Step Functions' CreateStateMachine
check), run when the app declares it. Every problem names the state and the field:
"state 'Charge' (Task): Next 'Nope' is not a state". Collects all problems, then raises
one DefinitionError.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import intrinsics, paths
from .choice import OPERATORS, parse_timestamp
from .errors import ALL, DefinitionError

_COMMON = {"Type", "Comment", "QueryLanguage", "Assign", "Output"}
_IO = {"InputPath", "OutputPath"}
_NEXT = {"Next", "End"}
_RESULT = {"ResultPath", "Parameters", "ResultSelector", "Retry", "Catch", "Arguments"}
FIELDS: dict[str, set[str]] = {
    "Pass": _COMMON | _IO | _NEXT | {"ResultPath", "Parameters", "Result"},
    "Task": _COMMON | _IO | _NEXT | _RESULT | {
        "Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds",
        "HeartbeatSecondsPath", "Credentials"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Wait": _COMMON | _IO | _NEXT | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": {"Type", "Comment", "QueryLanguage", "Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON | _IO | _NEXT | _RESULT | {"Branches"},
    "Map": _COMMON | _IO | _NEXT | _RESULT | {
        "Iterator", "ItemProcessor", "ItemsPath", "ItemSelector", "MaxConcurrency",
        "MaxConcurrencyPath", "ItemReader", "ItemBatcher", "ResultWriter", "Label", "Items",
        "ToleratedFailureCount", "ToleratedFailureCountPath", "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath"},
}
_JSONATA_ONLY = {"Arguments", "Output", "Items"}
_JSONPATH_ONLY = {"InputPath", "OutputPath", "ResultPath", "Parameters", "ResultSelector",
                  "ItemsPath", "SecondsPath", "TimestampPath", "ErrorPath",
                  "CausePath", "MaxConcurrencyPath", "TimeoutSecondsPath",
                  "HeartbeatSecondsPath", "ToleratedFailureCountPath",
                  "ToleratedFailurePercentagePath", "Result"}
_TOP = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}


_VAR = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


_RESOURCE = re.compile(r"arn:[^\s]+|[A-Za-z0-9_.-]+|\$\{[A-Za-z0-9_.:-]+\}")
_LAMBDA_ARN = re.compile(r"arn:[a-z-]+:lambda:[^:]*:[^:]*:function:[A-Za-z0-9_-]+"
                         r"(:(\$LATEST|[A-Za-z0-9_-]+))?")


class _DupKey(ValueError):
    pass


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DupKey(f"duplicate field {k!r}")
        out[k] = v
    return out


def load(definition: str | dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The definition as a dict: JSON text is parsed (duplicate fields are an error)."""
    if isinstance(definition, (bytes, str)):
        try:
            parsed = json.loads(definition, object_pairs_hook=_no_dupes)
        except _DupKey as exc:
            raise DefinitionError([f"{exc}"], name) from None
        except ValueError as exc:
            raise DefinitionError([f"not valid JSON: {exc}"], name) from None
        definition = parsed
    if not isinstance(definition, dict):
        raise DefinitionError(["the definition must be a JSON object"], name)
    return definition


def validate(definition: str | dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """Check `definition`; return it as a dict, or raise DefinitionError listing problems."""
    d = load(definition, name)
    problems: list[str] = []
    for k in d:
        if k not in _TOP:
            problems.append(f"unknown top-level field {k!r}")
    if "TimeoutSeconds" in d and not _pos_int(d["TimeoutSeconds"]):
        problems.append("TimeoutSeconds must be a positive integer")
    lang = d.get("QueryLanguage", "JSONPath")
    if lang not in ("JSONPath", "JSONata"):
        problems.append(f"QueryLanguage must be 'JSONPath' or 'JSONata', got {lang!r}")
    _machine(d, "", lang, problems)
    seen: set[str] = set()
    for sname in _all_state_names(d):
        if sname in seen:
            problems.append(f"state name {sname!r} is used twice: state names must be "
                            "unique in the whole state machine (branches and Map included)")
        seen.add(sname)
    if problems:
        raise DefinitionError(problems, name)
    return d


def _all_state_names(machine: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict):
        return out
    for sname, state in machine["States"].items():
        out.append(sname)
        if not isinstance(state, dict):
            continue
        for b in state.get("Branches") or []:
            out.extend(_all_state_names(b))
        proc = state.get("ItemProcessor", state.get("Iterator"))
        out.extend(_all_state_names(proc))
    return out


def _pos_int(v: Any, zero: bool = False) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if zero else v > 0)


def _machine(d: Any, where: str, lang: str, problems: list[str]) -> None:
    scope = f"{where}: " if where else ""
    if not isinstance(d, dict):
        problems.append(f"{scope}must be an object with StartAt and States")
        return
    states = d.get("States")
    start = d.get("StartAt")
    if not isinstance(states, dict) or not states:
        problems.append(f"{scope}States must be a non-empty object")
        return
    if not isinstance(start, str):
        problems.append(f"{scope}StartAt must name a state")
    elif start not in states:
        problems.append(f"{scope}StartAt {start!r} is not a state")
    for sname, state in states.items():
        _state(sname, state, states, lang, problems)
    # reachability
    if isinstance(start, str) and start in states:
        seen, todo = set(), [start]
        while todo:
            s = todo.pop()
            if s in seen or s not in states:
                continue
            seen.add(s)
            todo.extend(_targets(states[s]))
        for sname in states:
            if sname not in seen:
                problems.append(f"{scope}state {sname!r} is unreachable from StartAt "
                                f"{start!r}")
        if not any(_terminal(states[s]) for s in seen if isinstance(states[s], dict)):
            problems.append(f"{scope}no terminal state: some state must have End: true or "
                            "be a Succeed or Fail state")


def _targets(state: Any) -> list[str]:
    if not isinstance(state, dict):
        return []
    out = [state["Next"]] if isinstance(state.get("Next"), str) else []
    for c in state.get("Catch") or []:
        if isinstance(c, dict) and isinstance(c.get("Next"), str):
            out.append(c["Next"])
    if state.get("Type") == "Choice":
        for c in state.get("Choices") or []:
            if isinstance(c, dict) and isinstance(c.get("Next"), str):
                out.append(c["Next"])
        if isinstance(state.get("Default"), str):
            out.append(state["Default"])
    return out


def _terminal(state: dict[str, Any]) -> bool:
    return state.get("End") is True or state.get("Type") in ("Succeed", "Fail")


def _state(sname: str, state: Any, states: dict[str, Any], lang: str,
           problems: list[str]) -> None:
    def bad(msg: str) -> None:
        problems.append(f"state {sname!r}{kind}: {msg}")

    kind = ""
    if len(sname) > 80:
        problems.append(f"state {sname[:40]!r}…: a state name must be at most 80 characters")
    if not isinstance(state, dict):
        problems.append(f"state {sname!r}: must be an object")
        return
    t = state.get("Type")
    kind = f" ({t})" if isinstance(t, str) else ""
    if t not in FIELDS:
        bad(f"Type must be one of {', '.join(FIELDS)}, got {t!r}")
        return
    slang = state.get("QueryLanguage", lang)
    if slang not in ("JSONPath", "JSONata"):
        bad(f"QueryLanguage must be 'JSONPath' or 'JSONata', got {slang!r}")
    if slang == "JSONata":
        _jsonata_strings(state, bad)
    for k in state:
        if k not in FIELDS[t]:
            bad(f"unknown field {k!r}")
        elif slang == "JSONPath" and k in _JSONATA_ONLY:
            bad(f"field {k!r} needs QueryLanguage JSONata")
        elif slang == "JSONata" and k in _JSONPATH_ONLY:
            bad(f"field {k!r} is not allowed with QueryLanguage JSONata")
    # transitions
    if t in ("Pass", "Task", "Wait", "Parallel", "Map"):
        has_next, end = "Next" in state, state.get("End")
        if has_next and end is not None:
            bad("has both Next and End")
        elif not has_next and end is not True:
            bad("needs Next or End: true")
        if has_next and state["Next"] not in states:
            bad(f"Next {state['Next']!r} is not a state")
        if end is not None and not isinstance(end, bool):
            bad("End must be a boolean")
    # paths
    for f in ("InputPath", "OutputPath"):
        if f in state and state[f] is not None:
            _path(state[f], f, bad, context_ok=True)
    if "ResultPath" in state and state["ResultPath"] is not None:
        try:
            paths.check_reference(state["ResultPath"])
        except (paths.PathError, TypeError) as exc:
            bad(f"ResultPath {state['ResultPath']!r} is not a reference path: {exc}")
    for f in ("Parameters", "ResultSelector", "ItemSelector"):
        if f in state and slang == "JSONPath":
            _template(state[f], f, bad)
    if slang == "JSONPath":
        for f in ("Arguments", "Output"):
            pass
    if "Assign" in state:
        if not isinstance(state["Assign"], dict):
            bad("Assign must be an object")
        elif slang == "JSONPath":
            _template(state["Assign"], "Assign", bad)
    for f in ("Retry", "Catch"):
        if f in state:
            _handlers(state[f], f, states, bad)
    getattr(_Checks, t)(state, states, slang, bad, problems)


def _path(value: Any, field: str, bad: Any, context_ok: bool = True) -> None:
    if not isinstance(value, str):
        bad(f"{field} must be a JSONPath string, got {value!r}")
        return
    if value.startswith("$$") and value[2:3] not in ("", ".", "["):
        bad(f"{field} {value!r} is not a valid context path: use $$ or $$.Field")
        return
    text = value[1:] if context_ok and value.startswith("$$") else value
    if _VAR.match(text):  # a variable reference: $name, $name.field, $name[0]
        try:
            paths.parse_path("$" + text[len(_VAR.match(text).group()):])
        except paths.PathError as exc:
            bad(f"{field} {value!r} is not a valid variable reference: {exc}")
        return
    try:
        paths.parse_path(text)
    except paths.PathError as exc:
        bad(f"{field} {value!r} is not a valid JSONPath: {exc}")


def _dynamic(value: Any, field: str, bad: Any) -> None:
    """A `.$` value: a path, a context path, an intrinsic call or a variable."""
    if not isinstance(value, str):
        bad(f"{field} must be a JSONPath or an intrinsic function string, got {value!r}")
    elif intrinsics.is_intrinsic(value):
        try:
            intrinsics.parse(value)
        except intrinsics.IntrinsicSyntaxError as exc:
            bad(f"{field}: {exc}")
    elif value.startswith("$") and not value.startswith(("$.", "$[", "$$")) and value != "$":
        name = value[1:].split(".")[0].split("[")[0]
        if not name or not name.replace("_", "a").isalnum():
            bad(f"{field} {value!r} is not a valid variable reference")
    else:
        _path(value, field, bad)


def _template(value: Any, field: str, bad: Any) -> None:
    if isinstance(value, dict):
        for k in value:
            if k.endswith(".$") and k[:-2] in value:
                bad(f"{field}: fields {k[:-2]!r} and {k!r} conflict (both become "
                    f"{k[:-2]!r})")
        for k, v in value.items():
            if k.endswith(".$"):
                _dynamic(v, f"{field}.{k}", bad)
            else:
                _template(v, f"{field}.{k}", bad)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _template(v, f"{field}[{i}]", bad)


def _jsonata_strings(value: Any, bad: Any, where: str = "") -> None:
    """JSONata expressions are written "{% … %}": both ends or neither."""
    if isinstance(value, str):
        opens, closes = value.startswith("{%"), value.endswith("%}")
        if opens != closes or (opens and len(value) < 4):
            bad(f"{where or 'a field'}: a JSONata expression must be written "
                f"'{{% expression %}}', got {value!r}")
        elif opens and not _balanced(value[2:-2]):
            bad(f"{where}: unbalanced brackets in JSONata expression {value!r}")
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in ("ItemProcessor", "Iterator", "Branches", "Choices", "Type", "Next",
                         "Comment", "Default"):
                _jsonata_strings(v, bad, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _jsonata_strings(v, bad, f"{where}[{i}]")


def _balanced(expr: str) -> bool:
    stack, quote, i = [], None, 0
    pairs = {")": "(", "]": "[", "}": "{"}
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
        i += 1
    return not stack and quote is None


def _handlers(value: Any, field: str, states: dict[str, Any], bad: Any) -> None:
    if not isinstance(value, list):
        bad(f"{field} must be an array")
        return
    allowed = {"Retry": {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate",
                         "MaxDelaySeconds", "JitterStrategy", "Comment"},
               "Catch": {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign",
                         "Output"}}[field]
    for i, h in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(h, dict):
            bad(f"{where} must be an object")
            continue
        for k in h:
            if k not in allowed:
                bad(f"{where}: unknown field {k!r}")
        errs = h.get("ErrorEquals")
        if not isinstance(errs, list) or not errs or not all(isinstance(e, str) for e in errs):
            bad(f"{where}: ErrorEquals must be a non-empty array of error names")
        elif ALL in errs and (len(errs) > 1 or i != len(value) - 1):
            bad(f"{where}: States.ALL must appear alone and in the last {field} entry")
        if field == "Retry":
            for k, ok in (("IntervalSeconds", lambda v: _pos_int(v)),
                          ("MaxAttempts", lambda v: _pos_int(v, zero=True)),
                          ("MaxDelaySeconds", lambda v: _pos_int(v)),
                          ("BackoffRate", lambda v: isinstance(v, (int, float))
                           and not isinstance(v, bool) and v >= 1.0),
                          ("JitterStrategy", lambda v: v in ("FULL", "NONE"))):
                if k in h and not ok(h[k]):
                    bad(f"{where}: invalid {k} {h[k]!r}")
        else:
            if h.get("Next") not in states:
                bad(f"{where}: Next {h.get('Next')!r} is not a state")
            if h.get("ResultPath") is not None:
                try:
                    paths.check_reference(h["ResultPath"])
                except (paths.PathError, TypeError) as exc:
                    bad(f"{where}: ResultPath {h['ResultPath']!r}: {exc}")


def _choice_rule(rule: Any, where: str, bad: Any, top: bool, slang: str) -> None:
    if not isinstance(rule, dict):
        bad(f"{where} must be an object")
        return
    if slang == "JSONata":
        if "Condition" not in rule:
            bad(f"{where}: needs a Condition")
        return
    if top and "Next" not in rule:
        bad(f"{where}: needs Next")
    if not top and "Next" in rule:
        bad(f"{where}: Next is only allowed on a top-level choice rule")
    for comb in ("And", "Or"):
        if comb in rule:
            subs = rule[comb]
            if not isinstance(subs, list) or not subs:
                bad(f"{where}: {comb} must be a non-empty array of rules")
                return
            for j, r in enumerate(subs):
                _choice_rule(r, f"{where}.{comb}[{j}]", bad, False, slang)
            return
    if "Not" in rule:
        _choice_rule(rule["Not"], f"{where}.Not", bad, False, slang)
        return
    ops = [k for k in rule if k in OPERATORS]
    extra = [k for k in rule if k not in OPERATORS and k not in (
        "Variable", "Next", "Comment", "Assign", "Output")]
    if extra:
        bad(f"{where}: unknown field(s) {', '.join(map(repr, extra))}")
    if len(ops) != 1:
        bad(f"{where}: needs exactly one comparison operator, got {ops or 'none'}")
        return
    if "Variable" not in rule:
        bad(f"{where}: needs Variable")
        return
    _path(rule["Variable"], f"{where}.Variable", bad)
    op, v = ops[0], rule[ops[0]]
    if op.endswith("Path"):
        _path(v, f"{where}.{op}", bad)
    elif op.startswith("Is"):
        if not isinstance(v, bool):
            bad(f"{where}: {op} must be true or false")
    elif op.startswith("String") and not isinstance(v, str):
        bad(f"{where}: {op} needs a string")
    elif op.startswith("Numeric") and (not isinstance(v, (int, float)) or isinstance(v, bool)):
        bad(f"{where}: {op} needs a number")
    elif op.startswith("Boolean") and not isinstance(v, bool):
        bad(f"{where}: {op} needs true or false")
    elif op.startswith("Timestamp") and parse_timestamp(v) is None:
        bad(f"{where}: {op} needs an RFC 3339 timestamp, got {v!r}")


class _Checks:
    @staticmethod
    def Pass(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        pass

    @staticmethod
    def Succeed(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        pass

    @staticmethod
    def Task(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        r = state.get("Resource")
        if not isinstance(r, str) or not r:
            bad("Resource must be a non-empty string")
        elif not _RESOURCE.fullmatch(r):
            bad(f"Resource {r!r} is not a function name, an ARN or a ${{substitution}}")
        elif ":function:" in r and not _LAMBDA_ARN.fullmatch(r):
            bad(f"Resource {r!r}: a Lambda function ARN is "
                "arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:VERSION_OR_ALIAS]")
        for f in ("TimeoutSeconds", "HeartbeatSeconds"):
            if f in state and f + "Path" in state:
                bad(f"has both {f} and {f}Path")
            if f in state and not (slang == "JSONata" and isinstance(state[f], str)) \
                    and not _pos_int(state[f]):
                bad(f"{f} must be a positive integer")
            if f + "Path" in state:
                try:
                    paths.check_reference(state[f + "Path"])
                except (paths.PathError, TypeError) as exc:
                    bad(f"{f}Path: {exc}")
        t, h = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
        if _pos_int(t) and _pos_int(h) and h >= t:
            bad("HeartbeatSeconds must be smaller than TimeoutSeconds")
        if "Credentials" in state and not isinstance(state["Credentials"], dict):
            bad("Credentials must be an object")
        elif isinstance(state.get("Credentials"), dict):
            if not state["Credentials"]:
                bad("Credentials must not be empty")
            elif slang == "JSONPath":
                _template(state["Credentials"], "Credentials", bad)

    @staticmethod
    def Choice(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        choices = state.get("Choices")
        if not isinstance(choices, list) or not choices:
            bad("Choices must be a non-empty array")
            return
        for i, rule in enumerate(choices):
            _choice_rule(rule, f"Choices[{i}]", bad, True, slang)
            if isinstance(rule, dict) and "Next" in rule and rule["Next"] not in states:
                bad(f"Choices[{i}]: Next {rule['Next']!r} is not a state")
        if "Default" in state and state["Default"] not in states:
            bad(f"Default {state['Default']!r} is not a state")

    @staticmethod
    def Wait(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        given = [f for f in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath")
                 if f in state]
        if len(given) != 1:
            bad("needs exactly one of Seconds, SecondsPath, Timestamp or TimestampPath, got "
                f"{given or 'none'}")
            return
        f, v = given[0], state[given[0]]
        if slang == "JSONata" and isinstance(v, str) and v.startswith("{%"):
            return
        if f == "Seconds" and not _pos_int(v, zero=True):
            bad(f"Seconds must be a non-negative integer, got {v!r}")
        elif f == "Timestamp" and parse_timestamp(v) is None:
            bad(f"Timestamp must be an RFC 3339 timestamp, got {v!r}")
        elif f.endswith("Path"):
            _path(v, f, bad)

    @staticmethod
    def Fail(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        for f in ("Error", "Cause"):
            if f in state and f + "Path" in state:
                bad(f"has both {f} and {f}Path")
            if f in state and not isinstance(state[f], str):
                bad(f"{f} must be a string")
            if f + "Path" in state:
                _dynamic(state[f + "Path"], f + "Path", bad)

    @staticmethod
    def Parallel(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        branches = state.get("Branches")
        if not isinstance(branches, list) or not branches:
            bad("Branches must be a non-empty array of state machines")
            return
        for i, b in enumerate(branches):
            _machine(b, f"state {state_name(states, state)!r} Branches[{i}]", slang, problems)

    @staticmethod
    def Map(state: dict, states: dict, slang: str, bad: Any, problems: list) -> None:
        proc = state.get("ItemProcessor", state.get("Iterator"))
        if "ItemProcessor" in state and "Iterator" in state:
            bad("has both ItemProcessor and Iterator")
        if proc is None:
            bad("needs ItemProcessor (or the older Iterator)")
        else:
            if isinstance(proc, dict):
                pc = proc.get("ProcessorConfig") or {}
                sub = {k: v for k, v in proc.items() if k != "ProcessorConfig"}
                if not isinstance(pc, dict) or set(pc) - {"Mode", "ExecutionType"}:
                    bad("ItemProcessor.ProcessorConfig accepts Mode and ExecutionType")
                elif pc.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED"):
                    bad(f"ItemProcessor.ProcessorConfig.Mode {pc.get('Mode')!r} is invalid")
                elif pc.get("Mode") == "DISTRIBUTED" and pc.get("ExecutionType") not in (
                        "STANDARD", "EXPRESS"):
                    bad("a DISTRIBUTED ItemProcessor needs ExecutionType STANDARD or EXPRESS")
            else:
                sub = proc
            _machine(sub, f"state {state_name(states, state)!r} ItemProcessor",
                     state.get("QueryLanguage", slang), problems)
        if "ItemsPath" in state:
            _path(state["ItemsPath"], "ItemsPath", bad)
        if "ItemSelector" in state and "Parameters" in state:
            bad("has both ItemSelector and Parameters")
        for f in ("MaxConcurrency", "ToleratedFailureCount"):
            if f in state and f + "Path" in state:
                bad(f"has both {f} and {f}Path")
            if f in state and not (slang == "JSONata" and isinstance(state[f], str)) \
                    and not _pos_int(state[f], zero=True):
                bad(f"{f} must be a non-negative integer")
        p = state.get("ToleratedFailurePercentage")
        if "ToleratedFailurePercentage" in state and not (
                slang == "JSONata" and isinstance(p, str)) and not (
                isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 100):
            bad("ToleratedFailurePercentage must be a number from 0 to 100")
        for f in ("ToleratedFailurePercentage", "MaxConcurrency", "ToleratedFailureCount"):
            if f + "Path" in state:
                _path(state[f + "Path"], f + "Path", bad)
        ib = state.get("ItemBatcher")
        if ib is not None and not isinstance(ib, dict):
            bad("ItemBatcher must be an object")
        rc = (state.get("ItemReader") or {}).get("ReaderConfig") if isinstance(
            state.get("ItemReader"), dict) else None
        for where, obj in (("ItemBatcher", ib), ("ItemReader.ReaderConfig", rc)):
            if isinstance(obj, dict):
                for k in obj:
                    if k + "Path" in obj:
                        bad(f"{where}: has both {k} and {k}Path")
        if "ItemReader" in state and not isinstance(state["ItemReader"], dict):
            bad("ItemReader must be an object")


def state_name(states: dict[str, Any], state: dict[str, Any]) -> str:
    for k, v in states.items():
        if v is state:
            return k
    return "?"

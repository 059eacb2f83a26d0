"""Conformance: behave-asl's Gherkin scenarios (../shared/conformance/behave-asl), read by a
small step parser and run through the engine one state at a time.

behave-asl's "When the state machine executes" runs one state; so does `StateMachine.step`
(a Task's retries included, which is where the two step models differ: behave-asl counts
each retry as a step, so those scenarios are skipped). JSONata scenarios are skipped
(out of scope), as are steps about behave-asl's own parser, IAM roles and per-branch mocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import conformance_root

from squall.asl import DefinitionError, Env, StateMachine, StatesError
from squall.asl import paths
from squall.asl.engine import TaskRequest

from .fakes import FakeClock

FOLDER = "behave-asl/features"


class Scenario:
    def __init__(self, feature: str, name: str) -> None:
        self.feature, self.name = feature, name
        self.steps: list[tuple[str, str | None]] = []

    @property
    def id(self) -> str:
        return f"{self.feature}::{self.name}"


def parse_feature(path: Path, rel: str) -> list[Scenario]:
    lines = path.read_text().splitlines()
    out: list[Scenario] = []
    cur: Scenario | None = None
    outline: Scenario | None = None
    header: list[str] | None = None
    in_examples = False
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        i += 1
        if line.startswith("Scenario Outline:") or line.startswith("Scenario:"):
            in_examples, header = False, None
            cur = Scenario(rel, line.split(":", 1)[1].strip())
            if line.startswith("Scenario Outline:"):
                outline, cur = cur, None
            else:
                outline = None
                out.append(cur)
            continue
        if line.startswith("Examples:"):
            in_examples, header = True, None
            continue
        if in_examples and line.startswith("|") and outline is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                sc = Scenario(rel, f"{outline.name} [{', '.join(cells)}]")
                for text, doc in outline.steps:
                    for h, v in zip(header, cells):
                        text = text.replace(f"<{h}>", v)
                        doc = doc.replace(f"<{h}>", v) if doc is not None else None
                    sc.steps.append((text, doc))
                out.append(sc)
            continue
        m = re.match(r"(Given|When|Then|And|But)\s+(.*)", line)
        if m and (cur or outline):
            doc = None
            if i < len(lines) and lines[i].strip() == '"""':
                indent = len(lines[i]) - len(lines[i].lstrip())
                j = i + 1
                body = []
                while lines[j].strip() != '"""':
                    body.append(lines[j][indent:] if lines[j][:indent].isspace() else
                                lines[j].strip())
                    j += 1
                doc = "\n".join(body)
                i = j + 1
            (cur or outline).steps.append((m.group(2).strip(), doc))  # type: ignore[union-attr]
    return out


def scenarios() -> list[Scenario]:
    root = conformance_root()
    if root is None or not (root / FOLDER).is_dir():
        return []
    out = []
    for p in sorted((root / FOLDER).rglob("*.feature")):
        out.extend(parse_feature(p, str(p.relative_to(root / FOLDER))))
    return out


SKIP_STEPS = (
    (r"the retry count is", "behave-asl counts each retry as a step; Squall retries inside one"),
    (r"the context path .*RetryCount", "behave-asl counts each retry as a step"),
    (r"for input .* the state", "per-input mocks of a state inside a Map/Parallel"),
    (r"branch \d+ will return|branches were called with", "per-branch mocks"),
    (r"role", "IAM roles (Credentials) are not modelled"),
    (r"the parser|JSON output of|is created|step is a|a simple state machine|the step "
     r"(result is|sets|ends)", "behave-asl's own parser API"),
    (r"max of .* concurrent", "behave-asl's concurrency probe"),
    (r"when invoked with any unknown parameters", "per-state mocks by parameters"),
)


# scenario-name fragments -> why (behave-asl's expectations are hand-written, not AWS's)
SKIP_SCENARIOS = (
    # definitions AWS rejects at creation, which behave-asl runs anyway
    (r"chooses the correct next step given multiple Choices|supports Parameters|"
     r"JsonPath selector that is nonsense|NumericEquals operator \[\"1\"|"
     r"Timestamp\w+ operator \[\"(2019-10-12 |2001-01-01T1\d:00:00Z\+|2019-02-3|2019-02-29)|"
     r"caught and not retried are caught|Numeric\w+ operator \[\"|"
     r"String(Greater|Less)Than(Equals)? operator \[(1|null),|Wait type can (use SecondsPath|change the output|"
     r"use TimestampPath)", "AWS rejects this definition at creation (it is invalid ASL: "
     "Next and End together, an unknown field or state, a bad operand); Squall does too"),
    (r"use a variable (path |array )?from a previous state using JSONPath",
     "behave-asl writes variables as $$Name; AWS's syntax is $Name ($$ is the context)"),
    (r"supports the Or operator", "a missing Variable is States.Runtime on AWS"),
    (r"caught \[.*DataLimitExceeded\]", "AWS: States.ALL and States.TaskFailed do not catch "
     "States.DataLimitExceeded"),
    (r"ArrayRange is supported \[1(\.1)?, 9", "behave-asl's expectation disagrees with "
     "AWS's documented ArrayRange (integers, inclusive end)"),
    (r"MathAdd is supported \[1\.2", "AWS rounds MathAdd operands (localstack's AWS "
     "recordings); behave-asl adds floats"),
    (r"single quote in the value", "behave-asl keeps the backslash of \\' in the result; "
     "AWS unescapes it"),
)


class Mocks:
    def __init__(self) -> None:
        self.returns: dict[str, Any] = {}
        self.fails: dict[str, str] = {}
        self.expect: dict[str, Any] = {}

    def run(self, req: TaskRequest) -> Any:
        r = req.resource
        if r in self.expect:
            assert req.parameters == self.expect[r], (req.parameters, self.expect[r])
        if r in self.fails:
            raise StatesError(self.fails[r], f"mocked failure: {self.fails[r]}")
        if r in self.returns:
            return self.returns[r]
        raise StatesError("States.TaskFailed", f"no mock for {r}")


def _definition(doc: str | None) -> Any:
    """behave-asl reads definitions leniently (some upstream ones are YAML flow style,
    e.g. `"Type": Pass`); strict JSON first, YAML as the fallback."""
    assert doc is not None
    try:
        json.loads(doc)
        return doc
    except ValueError:
        yaml = pytest.importorskip("yaml")
        try:
            return yaml.safe_load(doc)
        except yaml.YAMLError:
            return doc


def _doc_json(doc: str | None) -> Any:
    assert doc is not None
    try:
        return json.loads(doc)
    except ValueError:
        return doc.strip()


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _at(data: Any, path: str, variables: bool = False) -> Any:
    if variables and path.startswith("$") and path[1:2] not in (".", "["):
        path = path[1:]  # "$MyVar.x" names variable MyVar
    p = path if path.startswith("$") else "$." + path
    return paths.get(p, data)


def _same(got: Any, want: str) -> bool:
    return got == _value(want) or str(got) == want or json.dumps(got) == want or (
        isinstance(got, bool) and str(got).lower() == want.lower())


# behave-asl compares the rule's value against the Variable (value > Variable), where the
# ASL spec and AWS compare Variable > value. Its tables are still good tests once the
# operator is mirrored (a > b is b < a), so those scenarios run with the mirror image.
# (only the literal operators: behave-asl's …Path tables already follow the spec)
_MIRRORED = re.compile(r"supports the (Numeric|String|Timestamp)(GreaterThan|LessThan)"
                       r"(Equals)? operator")


def _mirror(definition: str) -> str:
    def swap(m: re.Match[str]) -> str:
        other = {"GreaterThan": "LessThan", "LessThan": "GreaterThan"}[m.group(2)]
        return m.group(1) + other + (m.group(3) or "")
    return re.sub(r"(Numeric|String|Timestamp)(GreaterThan|LessThan)(Equals)?(?!Path)", swap,
                  definition)


def run_scenario(sc: Scenario) -> None:
    steps = sc.steps
    if _MIRRORED.search(sc.name):
        steps = [(t, _mirror(d) if d and t.startswith("a state machine defined") else d)
                 for t, d in steps]
    for pattern, why in SKIP_SCENARIOS:
        if re.search(pattern, sc.name):
            pytest.skip(why)
    for text, _ in steps:
        for pattern, why in SKIP_STEPS:
            if re.search(pattern, text):
                pytest.skip(why)
    definition: Any = None
    invalid = False
    state_input: Any = None
    exec_input: Any = None
    current: str | None = None
    variables: dict[str, Any] = {}
    mocks = Mocks()
    clock = FakeClock()
    machine = None
    ex = None
    compile_error: Exception | None = None
    for text, doc in steps:
        q = re.findall(r'"([^"]*)"', text)
        if re.match(r"(a|an invalid) state machine defined by", text):
            definition, invalid = doc, text.startswith("an invalid")
            if "JSONata" in (doc or ""):
                pytest.skip("QueryLanguage JSONata is out of scope")
        elif text.startswith("the current state data is"):
            state_input = _doc_json(doc)
        elif text.startswith("the execution input is"):
            exec_input = _doc_json(doc)
        elif text.startswith("the current variables are"):
            variables = _doc_json(doc)
        elif re.match(r"the (state machine|execution) is current(ly)? at the state", text):
            current = q[0]
        elif text.startswith(f'the resource "{q[0] if q else ""}" will be called with any '
                             'parameters and fail with error'):
            mocks.fails[q[0]] = q[1]
        elif re.match(r'the resource ".*" will (be called with any parameters and )?return',
                      text):
            mocks.returns[q[0]] = _doc_json(doc)
        elif re.match(r'the resource ".*" will be called with:', text):
            mocks.expect[q[0]] = _doc_json(doc)
        elif text == "the state machine executes" and ex is not None:
            machine.step(ex, Env(mocks, now=clock.now, sleep=clock.sleep))  # type: ignore
        elif text == "the state machine executes":
            try:
                machine = StateMachine("behave", _definition(definition))
            except DefinitionError as exc:
                compile_error = exc
                continue
            ex = machine.start(exec_input if exec_input is not None else state_input,
                               name="behave", now=clock.now())
            ex.state_input = state_input if state_input is not None else (
                exec_input if exec_input is not None else {})
            ex.variables = dict(variables)
            if current is not None:
                ex.current = current
            env = Env(mocks, now=clock.now, sleep=clock.sleep)
            machine.step(ex, env)
        elif text == "the state machine failed to compile" or (
                invalid and text.startswith("the execution failed") and ex is None):
            assert compile_error is not None, "the definition compiled"
        else:
            assert ex is not None or compile_error is not None, f"no execution for: {text}"
            if compile_error is not None:
                raise compile_error
            _then(text, doc, q, ex, clock)


def _then(text: str, doc: str | None, q: list[str], ex: Any, clock: FakeClock) -> None:
    out = ex.output if ex.status == "SUCCEEDED" else ex.state_input
    if text.startswith("the next state is"):
        assert ex.current == q[0], (ex.current, ex.status, ex.error, ex.cause)
    elif text == "the execution ended":
        assert ex.status != "RUNNING"
    elif text == "the execution succeeded":
        assert ex.status == "SUCCEEDED", (ex.status, ex.error, ex.cause)
    elif text == "the execution failed":
        assert ex.status == "FAILED", ex.status
    elif re.match(r"the step result data is not", text):
        assert out != _doc_json(doc)
    elif re.match(r"the step result data is", text):
        assert out == _doc_json(doc), out
    elif re.match(r'the step result data path ".*" matches', text):
        assert _same(_at(out, q[0]), q[1]), (_at(out, q[0]), q[1])
    elif re.match(r'the step result data path ".*" is a string', text):
        assert isinstance(_at(out, q[0]), str)
    elif re.match(r'the step result data path ".*" is a list', text):
        assert isinstance(_at(out, q[0]), list)
    elif re.match(r'the step result data path ".*" is a dict', text):
        assert isinstance(_at(out, q[0]), dict)
    elif re.match(r'the step result data path ".*" is an int', text):
        assert isinstance(_at(out, q[0]), int)
    elif re.match(r'the step result data path ".*" is (true|false|null)', text):
        assert _at(out, q[0]) == json.loads(text.rsplit(" ", 1)[1])
    elif re.match(r'the step result data path ".*" has length', text):
        assert len(_at(out, q[0])) == int(q[1])
    elif re.match(r'the step result data path ".*" has ".*" entr', text):
        assert len(_at(out, q[0])) == int(q[1])
    elif re.match(r'the step result data path ".*" contains', text):
        v = _at(out, q[0])
        assert q[1] in v or _value(q[1]) in v, (v, q[1])
    elif re.match(r'the step result data path ".*" does not exist', text):
        with pytest.raises(paths.PathNotFound):
            _at(out, q[0])
    elif re.match(r'the variable path ".*" matches', text):
        assert _same(_at(ex.variables, q[0], True), q[1])
    elif re.match(r'the variable path ".*" does not exist', text):
        with pytest.raises(paths.PathNotFound):
            _at(ex.variables, q[0], True)
    elif text == "the execution error was null":
        assert ex.error is None
    elif text.startswith("the execution error was"):
        assert ex.error == q[0], (ex.error, ex.cause)
    elif text == "the execution error cause was null":
        assert ex.cause is None
    elif text.startswith("the execution error cause was"):
        assert ex.cause == q[0], ex.cause
    elif text.startswith("the execution error cause contained"):
        assert q[0] in (ex.cause or ""), ex.cause
    elif text.startswith("the last state waited for"):
        assert clock.slept and clock.slept[-1] == float(q[0]), clock.slept
    elif text.startswith("the last state waited until"):
        assert clock.t == pytest.approx(_epoch(q[0])), clock.t
    elif re.match(r'the context path ".*" matches', text):
        pytest.skip("the context object is not kept after a step")
    elif re.match(r'the states ".*" field was', text):
        pytest.skip("behave-asl's own state model")
    else:
        pytest.skip(f"unsupported step: {text}")


def _epoch(ts: str) -> float:
    from squall.asl.choice import parse_timestamp

    when = parse_timestamp(ts)
    assert when is not None
    return when.timestamp()


SCENARIOS = scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_behave_asl_scenario(conformance_dir: Path, scenario: Scenario) -> None:
    run_scenario(scenario)

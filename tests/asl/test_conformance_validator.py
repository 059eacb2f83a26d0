"""Conformance: asl-validator's definitions (../shared/conformance/asl-validator). The
file name says the expected verdict: `valid-*` must validate, `invalid-*` must be
rejected by `squall.asl.validate` (what `app.state_machine` runs at declaration time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import conformance_root

from squall.asl import DefinitionError, validate

FOLDER = "asl-validator/src/__tests__/definitions"

SKIP = {
    "invalid-assign.asl.json": "needs a JSONata parser ('420.' is bad JSONata)",
    "invalid-json-surround-syntax-extra-spaces.json": "JSONata whitespace rules",
    "invalid-jsonata-surround-syntax-no-spaces.json": "JSONata whitespace rules",
    "invalid-jsonata-syntax-arithmetic.json": "needs a JSONata parser",
    "invalid-jsonata-syntax-jsonpath-in-jsonata-surround.json": "needs a JSONata parser",
    "valid-task-intrisic-function.json": "a CloudFormation Fn::GetAtt/Ref as Resource is "
                                         "resolved by CloudFormation, never run",
}


def _files() -> list[str]:
    root = conformance_root()
    if root is None or not (root / FOLDER).is_dir():
        return []
    return sorted(p.name for p in (root / FOLDER).glob("*.json"))


@pytest.mark.parametrize("name", _files())
def test_asl_validator_definition(conformance_dir: Path, name: str) -> None:
    if name in SKIP:
        pytest.skip(SKIP[name])
    text = (conformance_dir / FOLDER / name).read_text()
    if name.startswith("valid-"):
        validate(text, name)
    else:
        with pytest.raises(DefinitionError):
            validate(text, name)

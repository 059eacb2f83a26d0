"""Shared fixtures: where the conformance material lives, and which services are up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def conformance_root() -> Path | None:
    env = os.environ.get("SQUALL_CONFORMANCE_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "conformance"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    path = conformance_root()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ../shared/conformance is missing")
        pytest.skip(
            "conformance material not found: put shared/conformance beside the checkout "
            "(../shared/conformance) or set SQUALL_CONFORMANCE_DIR"
        )
    return path

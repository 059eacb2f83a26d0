"""The file pipeline example (examples/files/app.py): upload -> object event -> validate
-> resize (Pillow) -> table -> notify, each step its own function."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

from squall.testing import TestClient
from squall.testing.conformance import FakeClock

PIL = pytest.importorskip("PIL.Image", reason="the example needs Pillow: "
                                                 "pip install -e '.[examples]'")
APP = Path(__file__).resolve().parents[1] / "examples" / "files" / "app.py"


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("files_example", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def _png(w: int, h: int) -> bytes:
    out = io.BytesIO()
    PIL.new("RGB", (w, h), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_an_image_goes_through_every_step(client):
    # Given an uploaded 640x480 PNG
    r = client.post("/files/cat.png", data=_png(640, 480), headers={"content-type": "image/png"})
    assert r.status_code == 202 and r.json()["status"] == "uploaded"
    assert client.get("/files/cat.png").json()["status"] == "uploaded"
    # When the events run (object created -> validate -> resize -> table change -> notify)
    client.drain()
    # Then the table says ready, with a thumbnail that fits 128x128
    item = client.get("/files/cat.png").json()
    assert item["status"] == "ready" and item["format"] == "PNG"
    assert (item["width"], item["height"]) == (640, 480)
    assert item["thumbnail_size"] == [128, 96]
    thumb = client.get("/files/cat.png/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert PIL.open(io.BytesIO(thumb.content)).size == (128, 96)
    # and each step ran as its own function, once
    for fn in ("upload", "validate", "resize", "notify"):
        assert len(client.invocations(fn)) >= 1, fn
    assert "file ready: cat.png (thumbnail thumbnails/cat.png.png)" in client.logs("notify")
    usage = client.storage_usage()["uploads"]["standard"]
    assert usage["objects"] == 2


def test_a_file_that_is_not_an_image_is_rejected(client):
    client.post("/files/evil.png", data=b"#!/bin/sh\nrm -rf /\n")
    client.drain()
    item = client.get("/files/evil.png").json()
    assert item["status"] == "rejected" and "cannot identify image" in item["reason"]
    assert client.invocations("resize") == []
    assert client.get("/files/evil.png/thumbnail").status_code == 404


def test_keys_cannot_escape_through_the_url(client):
    # an uncaught state error in a native HTTP handler answers with its own status
    r = client.post("/files/..", data=b"x")
    assert r.status_code == 400 and r.json()["code"] == "InvalidKey"
    assert "'.' or '..' path segment" in r.json()["message"]

"""examples/media: an upload fans out to thumbnail, transcode, metadata and content check
in parallel (one workflow decision), and fans in to one step that updates the table and
notifies the user."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from squall.backends.workflow_store import SUCCEEDED
from squall.runtime.loader import load_app
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

Image = pytest.importorskip("PIL.Image", reason="the example needs Pillow: "
                                               "pip install -e '.[examples]'")
APP = Path(__file__).resolve().parents[1] / "examples" / "media"
FAN_OUT = ("thumbnail", "transcode", "extract_metadata", "check_content")


@pytest.fixture
def client():
    with TestClient(load_app(str(APP)), clock=FakeClock()) as c:
        yield c


def gradient_png(w: int, h: int) -> bytes:
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "Squall Camera"  # Make
    out = io.BytesIO()
    img.save(out, "PNG", exif=exif)
    return out.getvalue()


def test_an_upload_fans_out_in_parallel_and_fans_in(client):
    # Given an uploaded 640x480 photo
    r = client.post("/media/cat.png?user=ada", data=gradient_png(640, 480))
    assert r.status_code == 202 and r.json()["status"] == "processing"
    # When the object event and the workflow run
    client.drain()
    # Then the four jobs ran once each, and all four were started by ONE decision: the
    # workflow function replayed once at the start, once after the fan-out, once at the end
    for fn in FAN_OUT + ("combine",):
        assert len(client.invocations(fn)) == 1, fn
    assert len(client.invocations("process_upload")) == 3
    (ex,) = client.workflows.list(name="process_upload")
    assert ex["status"] == SUCCEEDED and ex["id"].startswith("cat.png-")
    # and the fan-in step wrote everything to the table
    item = client.get("/media/cat.png").json()
    assert item["status"] == "ready" and item["user"] == "ada"
    assert item["metadata"]["format"] == "PNG" and item["metadata"]["width"] == 640
    assert item["metadata"]["exif"]["Make"] == "Squall Camera"
    assert (item["thumbnail"]["width"], item["thumbnail"]["height"]) == (128, 96)
    assert set(item["renditions"]) == {"jpeg", "webp", "png"}
    for ext, fmt in (("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG"), ("thumbnail", "PNG")):
        got = client.get(f"/media/cat.png/{ext}")
        assert got.status_code == 200, ext
        assert Image.open(io.BytesIO(got.content)).format == fmt
    assert client.get("/media/cat.png/gif").status_code == 404
    assert client.get("/users/ada/notifications").json() == [
        {"name": "cat.png", "message": "cat.png is ready"}]


@pytest.mark.parametrize("data, reason", [
    (b"#!/bin/sh\necho not an image\n", "cannot identify image"),
    (None, "blank"),
    ("tiny", "smaller than 16x16"),
])
def test_a_rejected_upload_keeps_nothing_and_the_user_is_told(client, data, reason):
    if data is None:
        out = io.BytesIO()
        Image.new("RGB", (200, 200), (255, 255, 255)).save(out, "PNG")
        data = out.getvalue()
    elif data == "tiny":
        data = gradient_png(8, 8)
    client.post("/media/x.png?user=bob", data=data)
    client.drain()
    item = client.get("/media/x.png").json()
    assert item["status"] == "rejected" and reason in item["reason"]
    assert client.get("/media/x.png/png").status_code == 404
    (note,) = client.get("/users/bob/notifications").json()
    assert note["message"].startswith("x.png was rejected")
    assert client.storage_usage()["media"]["standard"]["objects"] == 1  # the upload only


def test_bad_uploads_are_refused(client):
    assert client.post("/media/a.png", data=b"x").status_code == 400  # no user
    r = client.post("/media/a.png?user=ada", data=b"")
    assert r.status_code == 400 and "request body" in r.json()["message"]
    assert client.get("/media/none.png").status_code == 404

"""Buckets: puts (bytes and streamed), ranges, listings, copies, rejected keys, object
events (native and S3's shape), lifecycle tiers with an injected clock, usage."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from squall import App, ConfigError, InvalidKey, LifecycleRule
from squall.state import InvalidRange, InvalidRequest, ObjectNotFound, ObjectTooLarge
from squall.state.handles import CHUNK_BYTES
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

DAY = 86400.0


def make_app():
    app = App("objects")
    uploads = app.bucket("uploads", max_object_bytes=4 * CHUNK_BYTES, lifecycle=[
        LifecycleRule(prefix="logs/", archive_after_days=30, expire_after_days=90),
        {"prefix": "tmp/", "expire_after_days": 1}])
    app.bucket("backups")
    seen: list = []

    @app.on_object("uploads", prefix="in/", suffix=".jpg")
    def images(event, ctx):
        seen.append(("native", event.event, event.key, event.op, event.size))

    @app.on_object("uploads", format="aws-s3", events=["created", "deleted", "archived"])
    def s3(event, context):
        seen.append(event)

    @app.function()
    def upload(event, ctx):
        return uploads.put(event["key"], event["text"]).etag

    return app, uploads, seen


@pytest.fixture
def env():
    app, uploads, seen = make_app()
    clock = FakeClock()
    with TestClient(app, clock=clock) as client:
        yield client, uploads, seen, clock, app


def test_put_get_ranges_head_and_etags(env):
    _, uploads, _, clock, _ = env
    info = uploads.put("docs/readme.txt", "hello world", metadata={"Owner": "ann"})
    assert info.etag == hashlib.md5(b"hello world").hexdigest()
    assert info.content_type == "text/plain" and info.metadata == {"owner": "ann"}
    assert info.size == 11 and info.last_modified == clock.now and info.tier == "standard"
    obj = uploads.get("docs/readme.txt")
    assert obj.body == b"hello world" and obj.etag == info.etag and obj.range is None
    part = uploads.get("docs/readme.txt", range=(6, 10))
    assert part.body == b"world" and part.range == (6, 10) and part.size == 11
    assert uploads.get("docs/readme.txt", range=(6, None)).body == b"world"
    assert uploads.get("docs/readme.txt", range=(0, 10_000)).body == b"hello world"
    with pytest.raises(InvalidRange, match="not satisfiable"):
        uploads.get("docs/readme.txt", range=(11, None))
    with pytest.raises(InvalidRange):
        uploads.get("docs/readme.txt", range=(5, 2))
    assert uploads.head("docs/readme.txt") == info
    with pytest.raises(ObjectNotFound, match="bucket 'uploads' has no object 'nope'"):
        uploads.get("nope")
    assert not uploads.exists("nope") and uploads.exists("docs/readme.txt")
    assert uploads.put("data.bin", b"\x00\x01").content_type == "application/octet-stream"
    with pytest.raises(InvalidRequest, match="metadata name"):
        uploads.put("x", b"", metadata={"bad name": "v"})


def test_streamed_puts_from_files_and_iterators(env, tmp_path):
    _, uploads, _, _, _ = env
    data = bytes(range(256)) * (CHUNK_BYTES // 256) * 2 + b"tail"  # > 2 upload pieces
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    from_file = uploads.put_file("big/file.bin", path)
    assert from_file.size == len(data) and from_file.etag == hashlib.md5(data).hexdigest()
    with open(path, "rb") as f:
        assert uploads.put("big/fileobj.bin", f).etag == from_file.etag
    chunks = (data[i:i + 100_000] for i in range(0, len(data), 100_000))
    assert uploads.put("big/iter.bin", chunks).etag == from_file.etag
    assert uploads.put("big/bytes.bin", io.BytesIO(data).getvalue()).etag == from_file.etag
    assert b"".join(uploads.iter_bytes("big/iter.bin", chunk_size=300_000)) == data
    out = tmp_path / "out.bin"
    uploads.download("big/file.bin", out)
    assert out.read_bytes() == data
    # the bucket's size limit holds for streamed uploads too, and nothing is left behind
    with pytest.raises(ObjectTooLarge, match="max_object_bytes"):
        uploads.put("big/too-big.bin", iter([b"x" * CHUNK_BYTES] * 5))
    assert not uploads.exists("big/too-big.bin")


def test_list_with_prefix_delimiter_and_pagination(env):
    _, uploads, _, _, _ = env
    keys = ["photos/2023/a.jpg", "photos/2024/b.jpg", "photos/2024/c.jpg", "photos/top.jpg",
            "videos/v.mp4", "readme"]
    for k in keys:
        uploads.put(k, b"x")
    assert uploads.list().keys == sorted(keys)
    root = uploads.list(delimiter="/")
    assert root.keys == ["readme"] and root.prefixes == ["photos/", "videos/"]
    photos = uploads.list("photos/", delimiter="/")
    assert photos.keys == ["photos/top.jpg"]
    assert photos.prefixes == ["photos/2023/", "photos/2024/"]
    got, token = [], None
    while True:
        page = uploads.list("photos/", limit=2, continuation_token=token)
        got += page.keys
        token = page.next_token
        assert page.is_truncated == (token is not None)
        if token is None:
            break
    assert got == sorted(k for k in keys if k.startswith("photos/"))
    entries, token = [], None
    while True:  # delimiter and pages together: each folder once
        page = uploads.list("", delimiter="/", limit=1, continuation_token=token)
        entries += page.keys + page.prefixes
        token = page.next_token
        if token is None:
            break
    assert entries == ["photos/", "readme", "videos/"]
    assert [o.key for o in uploads.list_all("photos/2024/")] == ["photos/2024/b.jpg",
                                                                 "photos/2024/c.jpg"]


def test_copy_and_delete(env):
    _, uploads, _, _, app = env
    uploads.put("a.txt", "A", metadata={"k": "v"})
    copied = uploads.copy("a.txt", "b.txt")
    assert uploads.get("b.txt").body == b"A" and copied.metadata == {"k": "v"}
    across = uploads.copy("a.txt", "a-copy.txt", dst_bucket="backups")
    assert app.buckets["backups"].get("a-copy.txt").etag == across.etag
    with pytest.raises(ObjectNotFound):
        uploads.copy("missing", "x")
    assert uploads.delete("a.txt") is True and uploads.delete("a.txt") is False
    assert uploads.get("b.txt").body == b"A"


@pytest.mark.parametrize("key,why", [
    ("../etc/passwd", "'.' or '..' path segment"),
    ("a/../../b", "'.' or '..' path segment"),
    ("./a", "'.' or '..' path segment"),
    ("%2e%2e/secret", "'.' or '..' path segment"),
    ("a/%2F/b", "encoded '/'"),
    ("/etc/passwd", "absolute path"),
    ("C:/windows", "drive path"),
    ("a\\..\\b", "backslash"),
    ("nul\x00byte", "NUL or another control character"),
    ("new\nline", "control character"),
    ("", "it is empty"),
    ("k" * 1025, "over the 1024-byte limit"),
    ("\ud800", "not valid UTF-8"),
])
def test_keys_that_could_escape_the_bucket_are_rejected(env, key, why):
    client, uploads, _, _, _ = env
    with pytest.raises(InvalidKey, match=f"bucket 'uploads': object key .* is not allowed: "
                                         f".*{why}"):
        uploads.put(key, b"x")
    for op in (lambda: uploads.get(key), lambda: uploads.delete(key),
               lambda: uploads.copy("ok", key)):
        with pytest.raises(InvalidKey):
            op()
    # from inside a function the same error reaches the caller, with its type
    r = client.invoke("upload", {"key": key, "text": "x"})
    assert not r.ok and r.error_type == "InvalidKey"
    assert client.storage_usage()["uploads"]["standard"]["objects"] == 0


def test_object_events_filtered_and_in_order(env):
    client, uploads, seen, _, _ = env
    uploads.put("in/cat.jpg", b"jpg")
    uploads.put("in/notes.txt", b"txt")
    uploads.put("out/cat.jpg", b"jpg")
    uploads.put("in/cat.jpg", b"jpg2")
    uploads.copy("in/cat.jpg", "in/dog.jpg")
    uploads.delete("in/cat.jpg")
    # nothing is delivered before drain, and each event after its object is durable
    assert seen == []
    client.drain()
    native = [s for s in seen if isinstance(s, tuple)]
    assert sorted(native) == [("native", "created", "in/cat.jpg", "Put", 3),
                              ("native", "created", "in/cat.jpg", "Put", 4),
                              ("native", "created", "in/dog.jpg", "Copy", 4),
                              ("native", "deleted", "in/cat.jpg", "Delete", 4)]
    cat = [s for s in native if s[2] == "in/cat.jpg"]
    assert [s[1] for s in cat] == ["created", "created", "deleted"]  # in order per key
    names = sorted(e["Records"][0]["eventName"] for e in seen if isinstance(e, dict))
    assert names == ["ObjectCreated:Copy"] + ["ObjectCreated:Put"] * 4 + \
        ["ObjectRemoved:Delete"]
    client.drain()
    assert len(seen) == 10  # delivered once each (checkpointed)


def test_lifecycle_archives_then_expires_by_the_clock(env):
    client, uploads, seen, clock, _ = env
    uploads.put("logs/app.log", b"l" * 1000)
    uploads.put("logs/new.log", b"n" * 10)
    uploads.put("tmp/scratch", b"t")
    uploads.put("keep/forever", b"k" * 5)
    client.drain()
    seen.clear()
    clock.advance(1.5 * DAY)
    assert client.sweep()["expired_objects"] == 1  # tmp/ after 1 day
    assert not uploads.exists("tmp/scratch")
    clock.advance(29 * DAY)
    uploads.put("logs/new.log", b"n" * 10)  # rewritten: its age starts again
    done = client.sweep()
    assert done["archived_objects"] == 1 and done["expired_objects"] == 0
    assert uploads.head("logs/app.log").tier == "archive"
    assert uploads.get("logs/app.log").body == b"l" * 1000  # archived objects stay readable
    usage = client.storage_usage()["uploads"]
    assert usage == {"standard": {"objects": 2, "bytes": 15},
                     "archive": {"objects": 1, "bytes": 1000}}
    assert uploads.usage() == usage
    clock.advance(60 * DAY)  # 90.5 days after it was written
    assert client.sweep()["expired_objects"] == 1
    assert not uploads.exists("logs/app.log") and uploads.exists("logs/new.log")
    # new.log, rewritten on day 30.5, is 60 days old now: archived in the same sweep
    assert client.storage_usage()["uploads"]["archive"] == {"objects": 1, "bytes": 10}
    client.drain()
    events = [e["Records"][0] for e in seen if isinstance(e, dict)]
    lifecycle = [(r["eventName"], r["s3"]["object"]["key"]) for r in events
                 if r["userIdentity"]["principalId"] == "s3.amazonaws.com"]
    assert sorted(lifecycle) == [("LifecycleExpiration:Delete", "logs/app.log"),
                                 ("LifecycleExpiration:Delete", "tmp/scratch"),
                                 ("LifecycleTransition", "logs/app.log"),
                                 ("LifecycleTransition", "logs/new.log")]
    app_log = [name for name, key in lifecycle if key == "logs/app.log"]
    assert app_log == ["LifecycleTransition", "LifecycleExpiration:Delete"]  # in order
    transition = next(r for r in events if r["eventName"] == "LifecycleTransition")
    assert transition["lifecycleEventData"]["transitionEventData"][
        "destinationStorageClass"] == "GLACIER"


def test_lifecycle_rules_are_checked():
    app = App("bad")
    with pytest.raises(ConfigError, match="expire_after_days .* must be later than"):
        app.bucket("b-1", lifecycle=LifecycleRule("x/", archive_after_days=10,
                                                  expire_after_days=5))
    with pytest.raises(ConfigError, match="needs archive_after_days or expire_after_days"):
        app.bucket("b-2", lifecycle={"prefix": "x/"})
    with pytest.raises(ConfigError, match="bucket name 'Bad_Name' is invalid"):
        app.bucket("Bad_Name")
    with pytest.raises(ConfigError, match="declare the bucket first"):
        app.on_object("nope", name="f")(lambda e: None)
    app.bucket("b-3")
    with pytest.raises(ConfigError, match="events must be a non-empty list of created"):
        app.on_object("b-3", events=["insert"], name="f")(lambda e: None)


def _s3_samples(conformance_dir):
    paths = [conformance_dir / "lambda-go-events/events/testdata/s3-event.json",
             conformance_dir / "powertools-events/tests/events/s3Event.json",
             conformance_dir / "powertools-events/tests/events/s3EventDeleteObject.json",
             conformance_dir / "lambda-go-events/events/testdata/s3-lifecycle-event.json"]
    out = [r for p in paths if p.exists() for r in json.loads(p.read_text())["Records"]]
    assert out, "no S3 samples found"
    return out


def test_aws_s3_records_have_the_shape_of_aws_samples(env, conformance_dir):
    client, uploads, seen, clock, _ = env
    uploads.put("in/red flower.jpg", b"petals")
    uploads.put("logs/a@b", b"x")
    uploads.delete("in/red flower.jpg")
    clock.advance(31 * DAY)
    client.drain()  # sweeps (archives logs/a@b), then delivers
    ours = [e["Records"][0] for e in seen if isinstance(e, dict)]
    by_kind = {}
    for r in ours:
        by_kind.setdefault(r["eventName"].split(":")[0], r)
    assert set(by_kind) == {"ObjectCreated", "ObjectRemoved", "LifecycleTransition"}
    for sample in _s3_samples(conformance_dir):
        kind = sample["eventName"].removeprefix("s3:").split(":")[0]
        mine = by_kind[kind]
        for k, v in sample.items():
            assert k in mine, (kind, k)
            assert type(mine[k]) is type(v), (kind, k)
        for part in ("bucket", "object"):
            for k, v in sample["s3"][part].items():
                if k == "urlDecodedKey":  # a field of that sample, not of S3
                    continue
                assert k in mine["s3"][part], (kind, part, k)
                assert type(mine["s3"][part][k]) is type(v), (kind, part, k)
        assert set(sample["s3"]) <= set(mine["s3"])
    created = by_kind["ObjectCreated"]
    assert created["eventVersion"] == "2.1" and created["eventSource"] == "aws:s3"
    assert created["s3"]["object"]["key"] == "in/red+flower.jpg"  # URL-encoded, as S3
    assert created["s3"]["object"]["eTag"] == hashlib.md5(b"petals").hexdigest()
    assert created["s3"]["bucket"] == {"name": "uploads", "ownerIdentity": {
        "principalId": "squall"}, "arn": "arn:aws:s3:::uploads"}
    assert created["eventTime"].endswith("Z") and created["s3"]["configurationId"] == "s3"
    assert set(by_kind["ObjectRemoved"]["s3"]["object"]) == {"key", "sequencer"}
    keys = [r["s3"]["object"]["key"] for r in ours]
    assert "logs/a%40b" in keys

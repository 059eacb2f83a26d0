"""Deployment packages, the admin token and the registry, without a server."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from squall.backends.registry import AliasRecord, RegistryConflict, VersionRecord
from squall.backends.sqlite.registry import SqliteRegistry
from squall.platform import package as pkg
from squall.platform.server import TokenError, read_token_file, server_token
from squall.platform.venvs import VenvBuilder, normalize


def _app(tmp_path):
    root = tmp_path / "app"
    (root / "lib").mkdir(parents=True)
    (root / "app.py").write_text("from squall import App\napp = App('x')\n")
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "requirements.txt").write_text("squallpin==1.0\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (root / ".venv").mkdir()
    (root / ".venv" / "big").write_bytes(b"0" * 1000)
    return root


def test_pack_is_deterministic_and_leaves_out_machine_files(tmp_path):
    root = _app(tmp_path)
    first = pkg.pack(root)
    os.utime(root / "app.py", (1, 1))  # timestamps do not change the package
    second = pkg.pack(root)
    assert first.data == second.data and first.sha256 == second.sha256
    with tarfile.open(fileobj=io.BytesIO(first.data)) as tar:
        assert sorted(tar.getnames()) == ["app.py", "lib/util.py", "requirements.txt"]
    assert pkg.requirements(first.data) == "squallpin==1.0\n"
    inspected = pkg.inspect(first.data)
    assert (inspected.files, inspected.sha256) == (3, first.sha256)
    out = tmp_path / "out"
    pkg.unpack(first.data, out)
    assert (out / "lib" / "util.py").read_text() == "X = 1\n"


def test_bad_packages_are_refused_with_the_reason(tmp_path):
    with pytest.raises(pkg.PackageError, match="has no app.py"):
        pkg.pack(tmp_path)
    with pytest.raises(pkg.PackageError, match="over the limit of 10"):
        pkg.pack(_app(tmp_path), max_bytes=10)
    with pytest.raises(pkg.PackageError, match="not a .tar.gz"):
        pkg.inspect(b"plain bytes")

    def tarball(members: dict[str, bytes], *, link: str | None = None) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            if link:
                info = tarfile.TarInfo("evil")
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
        return buf.getvalue()

    with pytest.raises(pkg.PackageError, match="no app.py"):
        pkg.inspect(tarball({"main.py": b""}))
    with pytest.raises(pkg.PackageError, match="unpacks to 2000 bytes"):
        pkg.inspect(tarball({"app.py": b"x" * 2000}), max_unpacked=1000)
    for members, link in (({"app.py": b"", "../escape.py": b"x"}, None),
                          ({"app.py": b"", "/etc/owned": b"x"}, None),
                          ({"app.py": b""}, "/etc/passwd")):
        with pytest.raises(pkg.PackageError, match="cannot be unpacked"):
            pkg.unpack(tarball(members, link=link), tmp_path / "dest")
    assert not (tmp_path / "escape.py").exists()


def test_admin_token_file_must_be_private(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUALL_ADMIN_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-some-length\n")
    token.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        read_token_file(token)
    token.chmod(0o600)
    assert read_token_file(token) == "s3cret-token-of-some-length"
    token.write_text("short")
    with pytest.raises(TokenError, match="shorter than 16"):
        read_token_file(token)
    with pytest.raises(TokenError, match="cannot read"):
        read_token_file(tmp_path / "missing")
    # none given: one is generated, private, and the same on the next start
    data = tmp_path / "data"
    generated = server_token(data)
    assert (data / "admin-token").stat().st_mode & 0o777 == 0o600
    assert server_token(data) == generated
    monkeypatch.setenv("SQUALL_ADMIN_TOKEN", "from-the-environment-123")
    assert server_token(data) == "from-the-environment-123"


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        reg = SqliteRegistry(tmp_path / "platform.db")
        yield reg
        reg.close()
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
    from pg_fixtures import postgres_url, unique_schema

    from squall.backends.postgres.registry import PgRegistry

    url = postgres_url()
    with unique_schema(url) as schema:
        reg = PgRegistry(f"{url}?schema={schema}")
        yield reg
        reg.close()


def test_registry_numbers_versions_and_keeps_packages(registry):
    reg = registry
    rev = reg.revision()
    reg.ensure_app("shop")
    record = VersionRecord("shop", 0, "abc", 10, 20, "k", 0, 1.0, 0.0, time.time())
    assert [reg.add_version(record, b"pkg").version for _ in range(2)] == [1, 2]
    assert reg.package("abc") == b"pkg" and reg.revision() > rev
    reg.set_alias(AliasRecord("shop", "prod", {1: 90, 2: 10}))
    assert reg.aliases("shop")[0].weights == {1: 90, 2: 10}
    with pytest.raises(RegistryConflict):
        reg.set_alias(AliasRecord("nope", "prod", {1: 100}))
    assert reg.delete_app("shop") and reg.versions("shop") == [] and reg.package("abc") is None
    # a deleted app's next deploy starts again at 1
    reg.ensure_app("shop")
    assert reg.add_version(record, b"pkg").version == 1
    # node reports do not count as changes
    rev = reg.revision()
    reg.report_node("n1", {"shop": {"running": []}})
    assert reg.revision() == rev
    assert [(n.node, n.apps) for n in reg.nodes(60)] == [("n1", {"shop": {"running": []}})]
    assert reg.history("shop") == []
    reg.record("shop", "deploy", {"version": 1})
    assert [(h.action, h.detail) for h in reg.history("shop")] == [("deploy", {"version": 1})]


def test_venv_key_ignores_comments_and_order_of_nothing_else(tmp_path):
    builder = VenvBuilder(tmp_path)
    assert normalize("# pins\nfoo==1  # why\n\nbar\n") == "foo==1\nbar"
    assert builder.key("foo==1\n") == builder.key("# c\nfoo==1  # x\n")
    assert builder.key("foo==1") != builder.key("foo==2")
    assert VenvBuilder(tmp_path, pip_args=("--no-index",)).key("") != builder.key("")

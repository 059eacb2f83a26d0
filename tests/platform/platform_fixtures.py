"""Helpers for the platform tests: a real `squall server` (PlatformServer on loopback, on
a thread), app directories written by the test, and wheels built by hand (no network).

Virtualenvs are slow to build, so every test of a session shares one venv cache under
pytest's session temp dir: each distinct requirements file is built once (the builder
caches by hash and locks across processes)."""

from __future__ import annotations

import base64
import hashlib
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import httpx

from servers import RunningServer

from squall.platform.package import pack
from squall.platform.server import PlatformServer
from squall.platform.service import PlatformOptions

TOKEN = "test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def venv_cache(tmp_path_factory: Any) -> Path:
    return tmp_path_factory.getbasetemp() / "platform-venvs"


def wheel(out_dir: Path, name: str, version: str, source: str) -> Path:
    """A pure-Python wheel of one module package `name`, written with zipfile."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: squall-tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    target = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return target


def write_app(root: Path, source: str, requirements: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(textwrap.dedent(source))
    if requirements:
        (root / "requirements.txt").write_text(requirements)
    return root


class RunningPlatform(RunningServer):
    """A `squall server` on a thread: RunningServer's thread and loop around a
    PlatformServer instead of a single app's Supervisor."""

    def __init__(self, data_dir: Path, venvs: Path, **opts: Any) -> None:
        super().__init__("unused", str(data_dir))
        self.sup = PlatformServer(PlatformOptions(
            data_dir=str(data_dir), venv_cache=str(venvs), expose_errors=True, **opts),
            TOKEN, port=0)

    @property
    def platform(self) -> Any:
        return self.sup.platform

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)

    def deploy(self, app: str, app_dir: Path, **query: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(f"/_platform/apps/{app}/versions", content=pack(app_dir).data,
                          params={k: v for k, v in query.items() if v is not None},
                          headers=AUTH)

    def control(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.request(method, f"/_platform{path}", headers=AUTH, **kw)

    def app_state(self, app: str) -> dict[str, Any]:
        apps = self.control("GET", "/apps").json()["apps"]
        return next(a for a in apps if a["name"] == app)

"""Per-version virtualenvs: each requirements file gets its own interpreter environment.

    CACHE/venv-<key>/      python -m venv --without-pip, then the host's pip installs the
                           requirements into it (`pip --python VENV/bin/python install`)
    CACHE/runtime-<key>/   links to the squall package and the few packages a zygote and
                           its workers import (msgpack, croniter, ...), found by a probe
    VENV/site-packages/squall-runtime.pth -> that runtime directory

The key is a hash of the requirements (comments and blank lines dropped), the pip options
and the interpreter, so identical requirements share one virtualenv, built once per
machine (an exclusive file lock around the build: concurrent deploys wait, then reuse it).

Why not `--system-site-packages`: the app would see every package of the host, and the
host's version of a package would shadow nothing but still leak in when the app forgets
a requirement. With the .pth file, an app sees the standard library, its own
requirements, and squall's runtime; its own site-packages come first on sys.path, so its
pinned versions win over the runtime's (msgpack, croniter, python-dateutil, six).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

READY = ".squall-ready"
PROBE_MODULES = ("squall", "squall.runtime.zygote", "squall.runtime.worker",
                 "squall.events.schedule", "squall.workflows")
DEFAULT_BUILD_TIMEOUT_S = 600.0


class VenvError(RuntimeError):
    """The requirements could not be installed; the message carries pip's reason."""


@dataclass(frozen=True)
class Venv:
    key: str
    path: Path
    python: str
    size_bytes: int  # what the requirements cost on disk
    build_ms: float  # 0 when it came from the cache
    cached: bool


def normalize(requirements: str) -> str:
    lines = []
    for line in requirements.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return "\n".join(lines)


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


class VenvBuilder:
    def __init__(self, cache_dir: str | Path, *, pip_args: tuple[str, ...] = (),
                 timeout_s: float = DEFAULT_BUILD_TIMEOUT_S) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self.pip_args = tuple(pip_args)  # e.g. ("--no-index", "--find-links", "/wheels")
        self.timeout_s = timeout_s

    def key(self, requirements: str) -> str:
        basis = json.dumps([normalize(requirements), self.pip_args, sys.version,
                            sys.base_prefix])
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    def build(self, requirements: str) -> Venv:
        """The virtualenv for these requirements: from the cache, or built now (blocking:
        call it from a thread)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = self.key(requirements)
        path = self.cache_dir / f"venv-{key}"
        python = str(path / "bin" / "python")
        with _locked(self.cache_dir / f"venv-{key}.lock"):
            if (path / READY).exists():
                return Venv(key, path, python, int((path / READY).read_text() or 0), 0.0, True)
            t0 = time.monotonic()
            if path.exists():  # a build that died half-way
                shutil.rmtree(path)
            self._run([sys.executable, "-m", "venv", "--without-pip", str(path)], "venv")
            site = Path(_site_packages(path))
            (site / "squall-runtime.pth").write_text(str(self.runtime_dir()) + "\n")
            reqs = normalize(requirements)
            if reqs:
                req_file = path / "requirements.txt"
                req_file.write_text(reqs + "\n")
                self._run([sys.executable, "-m", "pip", "--python", python, "install",
                           "--disable-pip-version-check", "--no-input", "--quiet",
                           "-r", str(req_file), *self.pip_args], "pip install")
            size = dir_size(site)
            (path / READY).write_text(str(size))
            return Venv(key, path, python, size, (time.monotonic() - t0) * 1000.0, False)

    def runtime_dir(self) -> Path:
        """Links to squall and what its zygote imports, for every venv's .pth file."""
        basis = f"{sys.version}|{_squall_root()}"
        path = self.cache_dir / f"runtime-{hashlib.sha256(basis.encode()).hexdigest()[:12]}"
        with _locked(self.cache_dir / "runtime.lock"):
            if (path / READY).exists():
                return path
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True)
            for name, origin in _probe().items():
                (path / name).symlink_to(origin)
            (path / READY).write_text("")
        return path

    def _run(self, argv: list[str], what: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                                  timeout=self.timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise VenvError(f"{what} took longer than {self.timeout_s:g} s") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise VenvError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _site_packages(venv: Path) -> str:
    return sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})


def _squall_root() -> str:
    import squall

    return str(Path(squall.__file__).resolve().parent)


def _probe() -> dict[str, str]:
    """Top-level name -> file or directory of every non-stdlib module the runtime imports,
    found in a fresh interpreter (this process has imported far more)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {PROBE_MODULES!r}: importlib.import_module(m)\n"
        "out = {}\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    top = name.split('.')[0]\n"
        "    if top in sys.stdlib_module_names or top.startswith('_') or '.' in name: continue\n"
        "    f = getattr(mod, '__file__', None)\n"
        "    if not f: continue\n"
        "    p = __import__('pathlib').Path(f).resolve()\n"
        "    out[top] = str(p.parent) if p.name.startswith('__init__.') else str(p)\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    found: dict[str, str] = json.loads(proc.stdout)
    return {Path(origin).name: origin for origin in found.values()}


class _locked:
    """An exclusive flock on `path` (across processes: one build per machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

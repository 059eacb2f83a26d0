"""Deployment packages: an app directory as one deterministic .tar.gz, and back.

A package holds the app's code (`app.py` and whatever it imports from its directory) and
its `requirements.txt`. Packing leaves out what is rebuilt or private to a machine
(`__pycache__`, `.git`, virtualenvs, `.squall` data); the same directory always packs to
the same bytes, so the package's sha256 names the version's code. Unpacking takes no
absolute paths, no `..`, no links or devices (tarfile's "data" filter), and stops at the
size limits.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_PACKAGE_BYTES = 50 * 1024 * 1024  # compressed, as uploaded
DEFAULT_MAX_UNPACKED_BYTES = 250 * 1024 * 1024  # Lambda's unzipped limit
MAX_FILES = 20_000
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".venv", "venv", ".squall", ".mypy_cache",
             ".pytest_cache", "node_modules"}
SKIP_SUFFIXES = (".pyc", ".pyo")
REQUIREMENTS = "requirements.txt"


class PackageError(ValueError):
    """The package cannot be built or used; the message says why and what to do."""


@dataclass(frozen=True)
class Package:
    data: bytes
    sha256: str
    files: int
    unpacked_bytes: int

    @property
    def size_bytes(self) -> int:
        return len(self.data)


def pack(app_dir: str | Path, *, max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES) -> Package:
    root = Path(app_dir)
    if not (root / "app.py").is_file():
        raise PackageError(f"{root} has no app.py: an app directory holds app.py (defining "
                           "`app`) and, optionally, requirements.txt")
    paths: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(
            ".egg-info"))
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                paths.append(Path(dirpath) / name)
    if len(paths) > MAX_FILES:
        raise PackageError(f"{root} has {len(paths)} files; a package holds at most {MAX_FILES}")
    buf = io.BytesIO()
    total = 0
    # mtime 0 in the gzip header and every member: the same tree packs to the same bytes
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            if path.is_symlink() or not path.is_file():
                continue  # links could point anywhere on the build machine
            data = path.read_bytes()
            total += len(data)
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    if len(blob) > max_bytes:
        raise PackageError(f"the package of {root} is {len(blob)} bytes, over the limit of "
                           f"{max_bytes}: leave data files out of the app directory")
    return Package(blob, hashlib.sha256(blob).hexdigest(), len(paths), total)


def inspect(data: bytes, *, max_unpacked: int = DEFAULT_MAX_UNPACKED_BYTES) -> Package:
    """Check an uploaded package without writing it anywhere."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"the upload is not a .tar.gz package: {exc}") from None
    if len(members) > MAX_FILES:
        raise PackageError(f"the package has {len(members)} files; at most {MAX_FILES}")
    for m in members:
        _check_member(m)
    names = {m.name for m in members}
    if "app.py" not in names:
        raise PackageError("the package has no app.py at its top level")
    total = sum(m.size for m in members)
    if total > max_unpacked:
        raise PackageError(f"the package unpacks to {total} bytes, over the limit of "
                           f"{max_unpacked}")
    return Package(data, hashlib.sha256(data).hexdigest(), len(members), total)


def _check_member(m: tarfile.TarInfo) -> None:
    parts = m.name.split("/")
    if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
        raise PackageError(f"the package cannot be unpacked: {m.name!r} is not a plain file "
                           "inside the app directory (absolute paths, '..' and links are "
                           "refused)")


def unpack(data: bytes, dest: Path) -> None:
    """Extract into `dest` (created): plain files and directories under it only (and
    tarfile's "data" filter as a second guard)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar.getmembers():
                _check_member(m)
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise PackageError(f"the package cannot be unpacked: {exc}") from None


def requirements(data: bytes) -> str:
    """The package's requirements.txt (empty if it has none)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            f = tar.extractfile(REQUIREMENTS)
        except KeyError:
            return ""
        return f.read().decode("utf-8") if f is not None else ""

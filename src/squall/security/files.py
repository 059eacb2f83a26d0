"""Private files: written atomically, readable by their owner only (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InsecureFile(PermissionError):
    """A key or secret file that others can read: refused, with what to do."""


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (its directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def check_private(path: Path) -> None:
    """Refuse a file that group or others may read or write (as ssh does for its keys)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureFile(f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                           f"run `chmod 600 {path}`")

"""The build step of a deploy: package -> code directory -> virtualenv -> import check.

Nothing here touches the registry or running versions: a build that fails leaves the
platform as it was, and its error says why (the package's problem, pip's output, or the
app's import traceback).

    code/<sha256>/   the unpacked package, immutable (its name is its content)
    venvs/           virtualenvs by requirements hash (squall.platform.venvs)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.zygote_client import ZygoteClient, ZygoteError
from . import package as pkg
from .venvs import Venv, VenvBuilder, VenvError

DEFAULT_IMPORT_TIMEOUT_S = 60.0


class BuildError(Exception):
    """The deploy is rejected; `detail` has pip's output or the import traceback."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Build:
    package: pkg.Package
    code_dir: Path
    venv: Venv
    manifest: dict[str, Any]
    import_ms: float
    zygote: ZygoteClient  # still running: the version's first zygote, or stop it


class Builder:
    def __init__(self, code_root: str | Path, venvs: VenvBuilder, *,
                 max_package_bytes: int = pkg.DEFAULT_MAX_PACKAGE_BYTES,
                 import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S) -> None:
        self.code_root = Path(code_root).resolve()
        self.venvs = venvs
        self.max_package_bytes = max_package_bytes
        self.import_timeout_s = import_timeout_s

    def check_size(self, size: int) -> None:
        if size > self.max_package_bytes:
            raise pkg.PackageError(f"the package is {size} bytes, over the limit of "
                                   f"{self.max_package_bytes}")

    def code_dir(self, sha256: str) -> Path:
        return self.code_root / sha256

    def materialize(self, data: bytes, sha256: str) -> tuple[Path, bool]:
        """The package unpacked under code/<sha256> (once; atomic by rename), and whether
        this call made it."""
        final = self.code_dir(sha256)
        if final.is_dir():
            return final, False
        tmp = self.code_root / f".{sha256}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pkg.unpack(data, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another build got there first
            shutil.rmtree(tmp, ignore_errors=True)
            return final, False
        return final, True

    async def build(self, data: bytes) -> Build:
        self.check_size(len(data))
        try:
            package = pkg.inspect(data)
            requirements = pkg.requirements(data)
            loop = asyncio.get_running_loop()
            code, created = await loop.run_in_executor(None, self.materialize, data,
                                                       package.sha256)
        except pkg.PackageError as exc:
            raise BuildError(str(exc)) from None
        try:
            try:
                venv = await loop.run_in_executor(None, self.venvs.build, requirements)
            except VenvError as exc:
                raise BuildError("the requirements could not be installed", str(exc)) from None
            zygote, import_ms = await self.check_import(code, venv.python)
        except BuildError:
            if created:  # a rejected deploy leaves nothing behind
                shutil.rmtree(code, ignore_errors=True)
            raise
        assert zygote.manifest is not None
        return Build(package, code, venv, zygote.manifest, import_ms, zygote)

    async def check_import(self, code: Path, python: str) -> tuple[ZygoteClient, float]:
        """Import the app in a zygote on its own interpreter: the running zygote and the
        time the import took (interpreter start included: what a cold zygote costs)."""
        zygote = ZygoteClient(str(code / "app.py"), on_exit=lambda pid, status: None,
                              python=python, cwd=str(code))
        t0 = time.monotonic()
        try:
            await zygote.start(self.import_timeout_s)
        except ZygoteError as exc:
            await zygote.stop()
            raise BuildError(f"the app failed to import: {exc}", exc.detail) from None
        return zygote, (time.monotonic() - t0) * 1000.0

"""Find the `App` a user points at: `path/to/app.py`, `path/to/app.py:attr`, or `pkg.mod:attr`.

Importing the module runs user code, so only the zygote (and the in-process test harness,
by the user's own choice) calls `load_app`; the supervisor gets the manifest instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from ..app import App


class AppLoadError(Exception):
    """The app could not be found or imported; the message says why."""


def split_ref(ref: str) -> tuple[str, str | None]:
    target, _, attr = ref.partition(":") if not _is_windows_drive(ref) else (ref, "", "")
    return target, (attr or None)


def _is_windows_drive(ref: str) -> bool:  # pragma: no cover - we run on Linux
    return len(ref) > 1 and ref[1] == ":" and ref[0].isalpha() and os.name == "nt"


def resolve_ref(ref: str) -> str:
    """An app reference with a file path made absolute (so a zygote finds it from anywhere)."""
    target, attr = split_ref(ref)
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if path.is_dir():
            path = path / "app.py"
        target = str(path.resolve())
    return f"{target}:{attr}" if attr else target


def load_app(ref: str) -> App:
    target, attr = split_ref(ref)
    if target.endswith(".py") or os.sep in target or Path(target).is_dir():
        path = Path(target)
        if path.is_dir():
            path = path / "app.py"
        if not path.is_file():
            raise AppLoadError(f"no such app file: {path}")
        module_name = f"_squall_app_{path.stem}"
        directory = str(path.resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:  # pragma: no cover
            raise AppLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name and target.startswith(exc.name):
                raise AppLoadError(f"no module named {target!r} (and no such file)") from None
            raise
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise AppLoadError(f"{target} has no App named {attr!r}")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if not apps:
        raise AppLoadError(f"{target} defines no squall.App")
    if len(apps) > 1:
        names = ", ".join(a.name for a in apps)
        raise AppLoadError(f"{target} defines several Apps ({names}): name one as {target}:ATTR")
    return apps[0]

"""Cold-start tooling (`squall coldstart APP`): where a cold start's time and memory go.

* Imports: the app is imported in a fresh interpreter under `python -X importtime`; the
  lines after squall's own imports are the app's, each with its self and cumulative
  microseconds. Top-level modules are listed by cumulative cost.
* The zygote: a real one is started and its memory read (USS, PSS, RSS, via psutil):
  what every forked worker shares.
* Per function: cold starts and their init duration (p50) from the invocation log.
* Hints: a heavy top-level import that only one function uses (found by reading the
  app's source: which names each function's body refers to), the more so if that
  function is rarely called. Importing it inside that function moves the cost off every
  other function's cold start.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .numbers import percentile

MARKER = "--squall-app-imports--"
HEAVY_MS = 20.0  # an import this slow (cumulative) is worth a hint
RARE_SHARE = 0.1  # a function with under 10 % of the invocations is rarely called
PROFILE_TIMEOUT_S = 120.0

_PROBE = f"""
import sys
from squall.runtime.loader import load_app
print({MARKER!r}, file=sys.stderr, flush=True)
load_app(sys.argv[1])
"""


@dataclass(frozen=True, slots=True)
class ImportCost:
    module: str
    self_ms: float
    cumulative_ms: float
    depth: int  # 0: imported by the app itself

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def parse_importtime(stderr: str) -> list[ImportCost]:
    """The `-X importtime` lines after MARKER (the app's own imports)."""
    lines = stderr.split(MARKER, 1)[1].splitlines() if MARKER in stderr else []
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cum_us, raw = line.split(":", 1)[1].split("|", 2)
            depth = len(raw) - len(raw.lstrip(" "))
            rows.append((raw.strip(), float(self_us) / 1000.0, float(cum_us) / 1000.0, depth))
        except ValueError:
            continue
    if not rows:
        return []
    top = min(r[3] for r in rows)
    return [ImportCost(m, s, c, (d - top) // 2) for m, s, c, d in rows]


def import_profile(app_ref: str, python: str | None = None) -> tuple[list[ImportCost], float]:
    """The app's imports as `-X importtime` reports them, and the load's wall time (ms)."""
    t0 = time.perf_counter()
    proc = subprocess.run([python or sys.executable, "-X", "importtime", "-c", _PROBE, app_ref],
                          capture_output=True, text=True, timeout=PROFILE_TIMEOUT_S)
    wall_ms = (time.perf_counter() - t0) * 1000.0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the app could not be imported for profiling:\n{tail}")
    return parse_importtime(proc.stderr), wall_ms


def top_level(imports: list[ImportCost]) -> list[ImportCost]:
    return sorted((i for i in imports if i.depth == 0), key=lambda i: -i.cumulative_ms)


# -- which function uses which import ------------------------------------------------------


def import_users(source: str, functions: list[str]) -> dict[str, set[str]]:
    """Top-level imported module -> the functions (by def name) whose bodies use it."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> top-level module
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                bound[a.asname or a.name.split(".")[0]] = a.name.split(".")[0] if not a.asname \
                    else a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                bound[a.asname or a.name] = node.module
    users: dict[str, set[str]] = {m: set() for m in bound.values()}
    wanted = set(functions)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and sub.id in bound:
                    users[bound[sub.id]].add(node.name)
    return users


def hints(imports: list[ImportCost], users: dict[str, set[str]],
          calls: dict[str, int]) -> list[str]:
    total_calls = sum(calls.values())
    out = []
    for imp in top_level(imports):
        if imp.cumulative_ms < HEAVY_MS:
            continue
        root = imp.module.split(".")[0]
        who = next((fns for mod, fns in users.items() if mod.split(".")[0] == root), None)
        if who is None:
            continue
        if not who:
            out.append(f"{imp.module} costs {imp.cumulative_ms:.0f} ms at every cold start and "
                       "no function uses it directly: drop it, or import it where needed")
        elif len(who) == 1:
            fn = next(iter(who))
            share = calls.get(fn, 0) / total_calls if total_calls else None
            rare = (f"; {fn} ran {calls.get(fn, 0)} of {total_calls} invocations"
                    if share is not None else "")
            if share is None or share < RARE_SHARE:
                out.append(f"{imp.module} costs {imp.cumulative_ms:.0f} ms at every cold start "
                           f"but only {fn} uses it{rare}: import it inside {fn}")
    return out


# -- the zygote and the invocation log ------------------------------------------------------


async def zygote_memory(app_ref: str) -> dict[str, Any]:
    """Start a zygote and read its memory: what every forked worker shares."""
    import psutil

    from ..runtime.zygote_client import ZygoteClient

    zygote = ZygoteClient(app_ref, on_exit=lambda pid, status: None)
    manifest = await zygote.start()
    try:
        assert zygote.proc is not None
        info = psutil.Process(zygote.proc.pid).memory_full_info()
        return {"manifest": manifest, "boot_ms": zygote.boot_ms,
                "uss_mb": info.uss / 2**20, "pss_mb": info.pss / 2**20, "rss_mb": info.rss / 2**20}
    finally:
        await zygote.stop()


def cold_starts(store: Any, app: str, since: float, until: float) -> dict[str, dict[str, Any]]:
    """function -> {"invocations", "cold_starts", "init_p50_ms"} from the invocation log."""
    per: dict[str, dict[str, Any]] = {}
    inits: dict[str, list[float]] = {}
    for fn, _s, _d, _b, _m, cold, init, status, _t in store.invocation_window(app, since, until):
        row = per.setdefault(fn, {"invocations": 0, "cold_starts": 0, "init_p50_ms": None})
        if status != "throttled":
            row["invocations"] += 1
        if cold:
            row["cold_starts"] += 1
            if init is not None:
                inits.setdefault(fn, []).append(init)
    for fn, values in inits.items():
        per[fn]["init_p50_ms"] = percentile(sorted(values), 50)
    return per


def report(app_ref: str, manifest: dict[str, Any], imports: list[ImportCost], wall_ms: float,
           memory: dict[str, Any], per_function: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = [f["name"] for f in manifest.get("functions", [])]
    target = app_ref.split(":", 1)[0]
    users: dict[str, set[str]] = {}
    if target.endswith(".py") and Path(target).is_file():
        users = import_users(Path(target).read_text(), names)
    calls = {fn: v["invocations"] for fn, v in per_function.items()}
    return {
        "app": manifest.get("app"), "import_wall_ms": wall_ms,
        "imports": [i.to_dict() for i in top_level(imports)],
        "zygote": {k: v for k, v in memory.items() if k != "manifest"},
        "functions": [{"function": fn, "uses": sorted(m for m, fns in users.items() if fn in fns),
                       **per_function.get(fn, {"invocations": 0, "cold_starts": 0,
                                               "init_p50_ms": None})} for fn in names],
        "hints": hints(imports, users, calls),
    }

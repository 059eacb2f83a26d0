"""Shared helpers for the side-by-side benchmarks: statistics, machine facts, load checks,
process-tree CPU accounting, result files and tables.

Nothing here starts or stops processes; the scripts own every process they start and end
it by PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
APPS_DIR = BENCH_DIR / "apps"
# The venv's own interpreter (a symlink to the real binary), never a pyenv shim.
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


# -- statistics --------------------------------------------------------------------------

def pct(values: Sequence[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default); nan for no data."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def median(values: Iterable[float]) -> float:
    xs = [v for v in values if v == v]  # drop nan
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# -- machine and load --------------------------------------------------------------------

def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return sum(parts[:8]), idle


class CpuWindow:
    """System-wide busy CPU-seconds between `start()` and `stop()` (all cores)."""

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.j0 = _cpu_jiffies()

    def stop(self) -> tuple[float, float]:
        """Returns (wall seconds, busy CPU-seconds summed over cores)."""
        wall = time.perf_counter() - self.t0
        total1, idle1 = _cpu_jiffies()
        total0, idle0 = self.j0
        hz = os.sysconf("SC_CLK_TCK")
        return wall, ((total1 - total0) - (idle1 - idle0)) / hz


def idle_check(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the box is before we start: load average and measured CPU use."""
    w = CpuWindow()
    w.start()
    time.sleep(seconds)
    wall, busy = w.stop()
    ncpu = os.cpu_count() or 1
    return {"loadavg": loadavg(), "busy_pct": round(100.0 * busy / (wall * ncpu), 1)}


def wait_quiet(max_wait_s: float, busy_below_pct: float = 15.0) -> dict[str, Any]:
    """Wait (bounded) until the box's CPU use over one second is under the threshold.
    Returns the last check; the caller records it either way."""
    deadline = time.monotonic() + max_wait_s
    check = idle_check()
    while check["busy_pct"] >= busy_below_pct and time.monotonic() < deadline:
        log(f"box busy ({check['busy_pct']}% CPU, loadavg {check['loadavg']}); waiting")
        time.sleep(2.0)
        check = idle_check()
    return check


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in ("squall", "starlette", "uvicorn", "uvloop", "httptools", "msgpack", "psutil"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    wrk = ""
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        wrk = (out.stdout + out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": str(VENV_PYTHON.resolve()),
        "libraries": versions,
        "wrk": wrk,
    }


# -- processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for processes we start: no PYTHONSTARTUP, plus `extra`."""
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    env.update(extra)
    return env


@dataclass
class TreeCpu:
    """CPU seconds used by a process and its descendants, split root / descendants."""

    root: float
    children: float
    nprocs: int


def tree_cpu_snapshot(pid: int) -> dict[int, float]:
    import psutil

    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def tree_cpu_delta(pid: int, before: dict[int, float], after: dict[int, float]) -> TreeCpu:
    """Per-process delta; a process born in between counts from zero. Processes that died
    in between are lost (rare here: workers live for the whole run)."""
    root = after.get(pid, 0.0) - before.get(pid, 0.0)
    kids = sum(v - before.get(k, 0.0) for k, v in after.items() if k != pid)
    return TreeCpu(root=root, children=kids, nprocs=len(after))


def own_tree_cpu() -> float:
    """CPU seconds used by this process, its live descendants, and every child any of them
    has reaped (the kernel's cutime/cstime): everything we started, whether alive or not."""
    import psutil

    def total(p: "psutil.Process") -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    me = psutil.Process()
    out = total(me)
    for child in me.children(recursive=True):
        try:
            out += total(child)
        except psutil.NoSuchProcess:
            pass
    return out


class NoiseWindow:
    """How much CPU the rest of the box used over a window: all busy CPU (/proc/stat)
    minus our own process tree. Tick-based accounting makes it good to a few percent."""

    def start(self) -> None:
        self.window = CpuWindow()
        self.ours0 = own_tree_cpu()
        self.window.start()

    def stop(self) -> dict[str, float]:
        wall, busy = self.window.stop()
        ours = own_tree_cpu() - self.ours0
        cap = wall * (os.cpu_count() or 1)
        return {"box_busy_pct": 100.0 * busy / cap,
                "other_cpu_pct": 100.0 * max(0.0, busy - ours) / cap}


def end_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM our own child by PID, wait, then SIGKILL it if it is still there."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)


# -- the code under test ---------------------------------------------------------------

def src_fingerprint(src_root: Path | None = None) -> dict[str, Any]:
    """Which Squall is measured: git HEAD, whether src/ differs from it, and a hash of the
    package's files where Python finds them (src/ through the editable install, a
    snapshot, or whatever PYTHONPATH names)."""
    if src_root is None:
        import importlib.util

        spec = importlib.util.find_spec("squall")
        src_root = Path(spec.origin).parent.parent if spec and spec.origin else REPO / "src"
    h = hashlib.sha1()
    for p in sorted((src_root / "squall").rglob("*.py")):
        h.update(str(p.relative_to(src_root)).encode())
        h.update(p.read_bytes())

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"git_head": git("rev-parse", "--short", "HEAD"),
            "src_dirty_vs_head": bool(git("status", "--porcelain", "--", "src")),
            "src_ref": None,
            "src_sha1": h.hexdigest()[:12], "src_root": str(src_root)}


def snapshot_src(ref: str | None = None) -> Path:
    """Copy src/ (the working tree, or git commit `ref`) to a temporary directory and put
    it first on the import path, for this process and every process it starts
    (PYTHONPATH), so that edits other engineers make to src/ during a run cannot mix two
    versions of Squall into one result. Call before anything imports squall. Returns the
    copy's src directory. $SQUALL_BENCH_SRC_REF is the default `ref` (for the profilers)."""
    if "squall" in sys.modules:
        raise RuntimeError("snapshot_src() must run before squall is imported")
    ref = ref or os.environ.get("SQUALL_BENCH_SRC_REF") or None
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-src-"))
    if ref:
        archive = subprocess.run(["git", "archive", "--format=tar", ref, "src"], cwd=REPO,
                                 capture_output=True, timeout=60)
        if archive.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"git archive {ref} src failed: {archive.stderr.decode()[-300:]}")
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True,
                       timeout=60)
    else:
        shutil.copytree(REPO / "src", tmp / "src", ignore=shutil.ignore_patterns("__pycache__"))
    src = tmp / "src"
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src) + (os.pathsep + old if old else "")
    sys.path.insert(0, str(src))
    return src


def drop_snapshot(src: Path | None) -> None:
    if src is not None:
        shutil.rmtree(src.parent, ignore_errors=True)


# -- output ------------------------------------------------------------------------------

def begin_measurement(args: Any, snapshot: Path | None) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Describe the Squall code being measured, log it, and wait for a quiet machine."""
    code = src_fingerprint(snapshot) if snapshot else src_fingerprint()
    live_src_at_start = src_fingerprint(REPO / "src")["src_sha1"]
    if args.src_ref:
        code["src_ref"] = args.src_ref
        code["src_dirty_vs_head"] = False
    log(f"measuring Squall at {args.src_ref or code['git_head']}"
        f"{' + uncommitted src changes' if code['src_dirty_vs_head'] else ''} "
        f"(src sha1 {code['src_sha1']}{', snapshot ' + str(snapshot) if snapshot else ''})")
    before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else idle_check()
    log(f"load before: loadavg {before['loadavg']}, CPU busy {before['busy_pct']}%")
    return code, live_src_at_start, before


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=True)
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__dict__"):
        return vars(obj)
    return str(obj)


def fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
        print(f"\n{title}")
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for r in cells:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        return
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in cells:
        table.add_row(*r)
    Console(width=220).print(table)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_WS = re.compile(r"\s+")


def one_line(text: str, limit: int = 300) -> str:
    return _WS.sub(" ", text).strip()[:limit]

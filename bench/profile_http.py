"""Where does a warm HTTP request's CPU go in Squall? Sample it under load with py-spy.

Starts one server config (as warm_http.py does, unpinned), drives it with wrk, and samples
the supervisor (and, with --worker, one worker) with `py-spy record --nonblocking`. Prints
the functions with the most self time and the src/squall functions with the most
inclusive time, as a share of all samples of that process, and keeps the collapsed stacks
(bench/results/profile-*.txt) for flame graphs.

Needs py-spy in the venv (`.venv/bin/pip install py-spy`).

    .venv/bin/python bench/profile_http.py --config squall --seconds 8 --worker
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, RESULTS_DIR, drop_snapshot, log, print_table, snapshot_src
from warm_http import HarnessError, make_server

PY_SPY = REPO / ".venv" / "bin" / "py-spy"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m.group("file")
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in f:
            f = f.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({f})"


def analyse(path: Path, title: str, top: int) -> dict:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [short(f) for f in stack.split(";")]
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        print(f"{title}: no samples")
        return {}
    print_table(f"{title}: top self time ({total} samples)", ["function", "self %"],
                [[f, f"{100 * c / total:.1f}"] for f, c in self_t.most_common(top)])
    ours = [(f, c) for f, c in incl.most_common() if "squall/" in f]
    print_table(f"{title}: src/squall functions, inclusive", ["function", "incl %"],
                [[f, f"{100 * c / total:.1f}"] for f, c in ours[:top]])
    return {"samples": total,
            "self": {f: c / total for f, c in self_t.most_common(top)},
            "squall_inclusive": {f: c / total for f, c in ours[:top]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="squall")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--worker", action="store_true", help="also sample one worker")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not PY_SPY.exists():
        ap.error(f"{PY_SPY} not found: .venv/bin/pip install py-spy")
    snapshot = snapshot_src()
    workdir = Path(tempfile.mkdtemp(prefix="squall-bench-prof-"))
    server = make_server(args.config, "none", workdir)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    spies: list[tuple[str, Path, subprocess.Popen]] = []
    wrk: subprocess.Popen | None = None
    try:
        server.start()
        assert server.proc is not None
        url = f"http://127.0.0.1:{server.port}/echo"
        lua = str(Path(__file__).parent / "wrk" / "post_echo.lua")
        # warm up (grows the worker pool), then sample while wrk runs
        subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d2s", "-s", lua, url],
                       capture_output=True, timeout=60, check=True)
        targets = [("supervisor", server.proc.pid)]
        if args.worker:
            import psutil

            kids = psutil.Process(server.proc.pid).children(recursive=True)
            workers = [k for k in kids if k.ppid() != server.proc.pid]  # zygote's children
            if workers:
                targets.append(("worker", workers[0].pid))
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds + 2:.0f}s",
                                "-s", lua, url], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        for name, pid in targets:
            out = RESULTS_DIR / f"profile-{args.config}-{name}-{stamp}.txt"
            spy = subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--duration",
                                    str(int(args.seconds)), "--rate", str(args.rate),
                                    "--format", "raw", "--nonblocking", "-o", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            spies.append((name, out, spy))
        for name, out, spy in spies:
            _, err = spy.communicate(timeout=args.seconds + 30)
            if spy.returncode != 0:
                raise HarnessError(f"py-spy failed for {name}: {err.decode()[-300:]}")
        wrk_out, _ = wrk.communicate(timeout=args.seconds + 30)
        rps = next((ln for ln in wrk_out.splitlines() if "Requests/sec" in ln), "")
        log(f"{args.config} under wrk -c{args.conns}: {rps.strip()}")
        for name, out, _ in spies:
            analyse(out, f"{args.config} {name}", args.top)
            log(f"collapsed stacks: {out}")
    except HarnessError as exc:
        log(f"harness failure: {exc}")
        return 2
    finally:
        for proc in [spy for _, _, spy in spies] + ([wrk] if wrk else []):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_snapshot(snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Warm HTTP throughput and latency, side by side, plus dispatch latency without HTTP.

Part 1, HTTP. The same JSON echo (POST /echo answers with the parsed body) through:
  * squall: `squall run bench/apps/echoapp.py` (the raw-ASGI gateway on uvicorn +
    httptools + uvloop, a forked worker per concurrent slot, the invocation log on);
  * bare:   bare Starlette in-process, `uvicorn --loop uvloop --http httptools
    --workers 1 --no-access-log` (bench/apps/bare_starlette.py).
Optional extra configs (--configs): `raw-asgi`, a bare raw-ASGI echo on the same
uvicorn stack (the floor of this HTTP stack), and `squall-quiet`, `squall-norec`,
`squall-norec-w2`: Squall with the invocation-log echo, the whole invocation log, or also
pool growth switched off from the outside (bench/squall_variant_server.py), to attribute cost. Both servers stay up for the whole pin mode;
for each rep and concurrency the configs run back to back in alternating order, each with
a wrk warm-up (--warmup s) and a measured run (--duration s): `wrk -t1 -cC --latency -s
bench/wrk/post_echo.lua`, 127.0.0.1 only. Pin modes: `split` = server process tree on CPU 0
(`taskset -c 0`, inherited by Squall's zygote and workers), wrk on CPU 1; `none` = no
pinning (Squall's workers may use the second core, which wrk also needs).
Ratios are computed inside each rep, then the median over reps is reported. If other
processes used more than --max-other % of the box during any run of a rep (at one
concurrency), those runs are discarded and repeated (up to --retries times).

CPU per request is the server process tree's user+system time over the measured window
(psutil) divided by requests; `other CPU %` is the box's busy CPU (/proc/stat) minus
everything this harness started (servers, wrk, itself), as a share of all cores: a noise
indicator for other engineers' test suites, good to a few percent.

Part 2, dispatch. In this process, on uvloop: sequential `Runtime.invoke("noop", "event",
"null")` round trips to one warm worker; for reference, in the same run, a raw blocking
socketpair ping-pong (64 bytes) with a plain-Python echo child, and a uvloop
`asyncio.Protocol` ping-pong (future per round trip) against the same kind of child.
On this VM a wake-up across cores costs far more than one on the same core, and the
scheduler picks either, so each rep runs all three paths in three placements: unpinned,
same-core (loop thread and worker/children on CPU 0) and cross-core (CPU 0 / CPU 1).

    .venv/bin/python bench/warm_http.py                # full run (~4 min)
    .venv/bin/python bench/warm_http.py --quick        # smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    begin_measurement,
    APPS_DIR,
    BENCH_DIR,
    REPO,
    VENV_PYTHON,
    clean_env,
    end_process,
    free_port,
    drop_snapshot,
    idle_check,
    snapshot_src,
    src_fingerprint,
    wait_quiet,
    log,
    machine_info,
    median,
    one_line,
    NoiseWindow,
    print_table,
    ratio,
    summary,
    tree_cpu_delta,
    tree_cpu_snapshot,
    write_results,
)

LUA = BENCH_DIR / "wrk" / "post_echo.lua"
BODY = b'{"user":"ada","items":[{"sku":"tea","qty":2},{"sku":"mug","qty":1}],"id":17}'
CONFIGS = ("squall", "bare", "raw-asgi", "squall-quiet", "squall-norec", "squall-norec-w2")
TARGET_RPS_RATIO = 0.7
TARGET_P99_RATIO = 1.5
TARGET_DISPATCH_P50_US = 100.0

RAW_ASGI_APP = '''
import json
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = json.dumps(json.loads(body), separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
'''


class HarnessError(RuntimeError):
    pass


# -- servers -------------------------------------------------------------------------------

class Server:
    """One server we started; ended by its PID."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.workdir = workdir
        self.stderr_path = workdir / f"{name}.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        # append mode, so the file can be truncated between windows while the server writes
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, cwd=self.workdir,
                                     env=clean_env())
        err.close()
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{one_line(self.stderr_tail())}")
            try:
                status, body = post(self.port, "/echo", BODY, timeout=2)
                if status == 200:
                    if json.loads(body) != json.loads(BODY):
                        raise HarnessError(f"{self.name} echoed {body!r}, not the request body")
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise HarnessError(f"{self.name} did not answer POST /echo in {timeout_s} s ({last}); "
                           f"stderr: {one_line(self.stderr_tail())}")

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def truncate_log(self) -> int:
        try:
            size = self.stderr_path.stat().st_size
            os.truncate(self.stderr_path, 0)
            return size
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc, grace_s=10.0)


def post(port: int, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def make_server(config: str, pin: str, workdir: Path) -> Server:
    port = free_port()
    prefix = ["taskset", "-c", "0"] if pin == "split" else []
    py = str(VENV_PYTHON)
    uvicorn_flags = ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
                     "--http", "httptools", "--workers", "1", "--no-access-log",
                     "--log-level", "warning"]
    if config == "squall":
        data_dir = workdir / "squall-data"
        argv = [str(REPO / ".venv" / "bin" / "squall"), "run", str(APPS_DIR / "echoapp.py"),
                "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    elif config.startswith("squall-"):
        variant = config[len("squall-"):]
        argv = [py, str(BENCH_DIR / "squall_variant_server.py"), variant,
                str(APPS_DIR / "echoapp.py"), "--port", str(port),
                "--data-dir", str(workdir / f"{config}-data")]
    elif config == "bare":
        argv = [py, "-m", "uvicorn", "bare_starlette:app", "--app-dir", str(APPS_DIR),
                *uvicorn_flags]
    elif config == "raw-asgi":
        (workdir / "raw_asgi_echo.py").write_text(RAW_ASGI_APP)
        argv = [py, "-m", "uvicorn", "raw_asgi_echo:app", "--app-dir", str(workdir),
                *uvicorn_flags]
    else:  # pragma: no cover - argparse restricts it
        raise HarnessError(f"unknown config {config}")
    return Server(config, prefix + argv, port, workdir)


# -- wrk -----------------------------------------------------------------------------------

def wrk(port: int, conns: int, seconds: float, pin: str) -> dict[str, Any]:
    prefix = ["taskset", "-c", "1"] if pin == "split" else []
    argv = prefix + ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
                     "-s", str(LUA), f"http://127.0.0.1:{port}/echo"]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise HarnessError(f"wrk exited {proc.returncode}: {one_line(proc.stderr)}")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise HarnessError(f"wrk printed no summary: {one_line(proc.stdout)}")
    out = json.loads(line[len("BENCH_JSON "):])
    out["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return out


def measure(server: Server, conns: int, args: argparse.Namespace, pin: str) -> dict[str, Any]:
    assert server.proc is not None
    if args.warmup > 0:
        wrk(server.port, conns, args.warmup, pin)
    server.truncate_log()
    before = tree_cpu_snapshot(server.proc.pid)
    noise = NoiseWindow()
    noise.start()
    w = wrk(server.port, conns, args.duration, pin)
    box = noise.stop()
    after = tree_cpu_snapshot(server.proc.pid)
    cpu = tree_cpu_delta(server.proc.pid, before, after)
    log_bytes = server.truncate_log()
    n = w["requests"]
    errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
    secs = w["duration_us"] / 1e6
    return {
        "config": server.name, "conns": conns, "requests": n, "errors": errors,
        "non_2xx": w["status"], "rps": n / secs if secs else 0.0,
        "p50_ms": w["p50"] / 1000, "p90_ms": w["p90"] / 1000, "p99_ms": w["p99"] / 1000,
        "max_ms": w["max"] / 1000,
        "cpu_us_per_req": 1e6 * (cpu.root + cpu.children) / n if n else float("nan"),
        "cpu_main_us_per_req": 1e6 * cpu.root / n if n else float("nan"),
        "cpu_children_us_per_req": 1e6 * cpu.children / n if n else float("nan"),
        "wrk_cpu_us_per_req": 1e6 * w["wrk_cpu_s"] / n if n else float("nan"),
        "server_procs": cpu.nprocs, "other_cpu_pct": box["other_cpu_pct"],
        "box_busy_pct": box["box_busy_pct"],
        "server_log_bytes": log_bytes,
    }


def http_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pin in args.pins:
        servers = {c: make_server(c, pin, workdir) for c in args.configs}
        runs: list[dict[str, Any]] = []
        try:
            for s in servers.values():
                log(f"[{pin}] starting {s.name} on 127.0.0.1:{s.port}")
                s.start()
            deadline = time.monotonic() + args.max_seconds
            for rep in range(args.reps):
                for conns in args.conns:
                    order = list(args.configs)
                    if (rep + args.conns.index(conns)) % 2:
                        order.reverse()
                    for attempt in range(args.retries + 1):
                        batch = []
                        for name in order:
                            r = measure(servers[name], conns, args, pin)
                            r.update(rep=rep, pin=pin, attempt=attempt + 1)
                            batch.append(r)
                            log(f"[{pin}] rep {rep + 1} c={conns} {name:15s} {r['rps']:8.0f} rps"
                                f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                                f"cpu {r['cpu_us_per_req']:5.0f} us/req  errors {r['errors']}  "
                                f"other CPU {r['other_cpu_pct']:4.1f}%")
                            if r["requests"] == 0:
                                raise HarnessError(f"{name} served no requests")
                        worst = max(r["other_cpu_pct"] for r in batch)
                        if (worst <= args.max_other or attempt == args.retries
                                or time.monotonic() > deadline):
                            break
                        log(f"[{pin}] other processes used up to {worst:.1f}% of the box; "
                            "discarding this rep's runs at this concurrency and repeating them")
                        wait_quiet(60)
                    for r in batch:
                        r["noisy"] = r["other_cpu_pct"] > args.max_other
                    runs.extend(batch)
                if time.monotonic() > deadline:
                    log("time budget reached; stopping early")
                    break
            squall_pools: dict[str, Any] = {}
            for name, srv in servers.items():
                if name.startswith("squall"):
                    try:
                        squall_pools[name] = {
                            fn: p["workers"] for fn, p in
                            get_json(srv.port, "/_squall/api/functions")["pools"].items()}
                    except (OSError, ValueError, KeyError):
                        squall_pools[name] = None
        finally:
            for s in servers.values():
                s.stop()
        out[pin] = {"runs": runs, "squall_pools_at_end": squall_pools,
                    "summary": summarize_http(runs, args)}
    return out


def summarize_http(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for conns in args.conns:
        per_cfg: dict[str, Any] = {}
        for cfg in args.configs:
            rs = [r for r in runs if r["config"] == cfg and r["conns"] == conns]
            per_cfg[cfg] = {k: median(r[k] for r in rs) for k in
                            ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_main_us_per_req",
                             "cpu_children_us_per_req", "wrk_cpu_us_per_req", "other_cpu_pct")}
            per_cfg[cfg]["errors"] = sum(r["errors"] for r in rs)
            per_cfg[cfg]["noisy_runs"] = sum(1 for r in rs if r.get("noisy"))
            per_cfg[cfg]["reps"] = len(rs)
        ratios: dict[str, Any] = {}
        if "squall" in args.configs and "bare" in args.configs:
            reps = sorted({r["rep"] for r in runs if r["conns"] == conns})
            rps_r, p99_r, p50_r, cpu_r = [], [], [], []
            for rep in reps:
                sq = next((r for r in runs if r["rep"] == rep and r["conns"] == conns
                           and r["config"] == "squall"), None)
                bare = next((r for r in runs if r["rep"] == rep and r["conns"] == conns
                             and r["config"] == "bare"), None)
                if sq and bare:
                    rps_r.append(ratio(sq["rps"], bare["rps"]))
                    p99_r.append(ratio(sq["p99_ms"], bare["p99_ms"]))
                    p50_r.append(ratio(sq["p50_ms"], bare["p50_ms"]))
                    cpu_r.append(ratio(sq["cpu_us_per_req"], bare["cpu_us_per_req"]))
            ratios = {
                "rps": median(rps_r), "p99": median(p99_r), "p50": median(p50_r),
                "cpu_per_req": median(cpu_r), "rps_per_rep": rps_r, "p99_per_rep": p99_r,
            }
        res[str(conns)] = {"configs": per_cfg, "squall_over_bare": ratios}
    return res


# -- dispatch ------------------------------------------------------------------------------

ECHO_CHILD = (
    "import socket, sys\n"
    "s = socket.socket(fileno=int(sys.argv[1])); s.setblocking(True)\n"
    "while True:\n"
    "    d = s.recv(65536)\n"
    "    if not d: break\n"
    "    s.sendall(d)\n"
)
PING = b"x" * 64


def _echo_child() -> tuple[socket.socket, subprocess.Popen]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen([str(VENV_PYTHON), "-c", ECHO_CHILD, str(theirs.fileno())],
                            pass_fds=[theirs.fileno()], env=clean_env())
    theirs.close()
    return ours, proc


def raw_pingpong(sock: socket.socket, n: int, deadline: float) -> list[float]:
    out = []
    perf = time.perf_counter_ns
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = perf()
        sock.sendall(PING)
        got = 0
        while got < len(PING):
            got += len(sock.recv(65536))
        out.append((perf() - t0) / 1000.0)
    return out


class _Ping(asyncio.Protocol):
    def __init__(self) -> None:
        self.fut: asyncio.Future | None = None
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= len(PING) and self.fut is not None and not self.fut.done():
            self.got = 0
            self.fut.set_result(None)


async def proto_pingpong(proto: _Ping, n: int, deadline: float) -> list[float]:
    loop = asyncio.get_running_loop()
    out = []
    perf = time.perf_counter_ns
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = perf()
        proto.fut = loop.create_future()
        proto.transport.write(PING)
        await proto.fut
        out.append((perf() - t0) / 1000.0)
    return out


async def invoke_loop(rt: Any, n: int, deadline: float) -> list[float]:
    out = []
    perf = time.perf_counter_ns
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = perf()
        r = await rt.invoke("noop", "event", "null")
        out.append((perf() - t0) / 1000.0)
        if not r.ok:
            raise HarnessError(f"noop failed: {r.error_type}: {r.error_message}")
    return out


PLACEMENTS = {
    # name: (CPUs of this process's loop thread, CPUs of the worker / echo children)
    "unpinned": (None, None),
    "same-core": ({0}, {0}),
    "cross-core": ({0}, {1}),
}


def _place(placement: str, child_pids: list[int]) -> None:
    ours, theirs = PLACEMENTS[placement]
    every = set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, ours or every)
    for pid in child_pids:
        os.sched_setaffinity(pid, theirs or every)


async def dispatch_part(args: argparse.Namespace) -> dict[str, Any]:
    from squall.runtime.runtime import Runtime

    loop = asyncio.get_running_loop()
    raw_sock, raw_proc = _echo_child()
    a_sock, a_proc = _echo_child()
    a_sock.setblocking(False)
    rt = Runtime(str(APPS_DIR / "echoapp.py"))
    placements = list(PLACEMENTS) if args.placements == "all" else args.placements.split(",")
    samples = {pl: {"raw": [], "proto": [], "invoke": []} for pl in placements}
    per_rep: list[dict[str, Any]] = []
    proto = None
    try:
        _, proto = await loop.create_unix_connection(_Ping, sock=a_sock)
        await rt.start()
        deadline = time.monotonic() + args.max_seconds
        # warm-up: fork the worker, fault in code paths
        raw_pingpong(raw_sock, 500, float("inf"))
        await proto_pingpong(proto, 500, float("inf"))
        await invoke_loop(rt, 500, float("inf"))
        if len(rt.pools["noop"].workers) != 1:
            raise HarnessError("expected exactly one warm noop worker")
        children = [rt.pools["noop"].workers[0].pid, raw_proc.pid, a_proc.pid]
        for rep in range(args.reps):
            rep_out: dict[str, Any] = {}
            noise = NoiseWindow()
            noise.start()
            for placement in (placements if rep % 2 == 0 else placements[::-1]):
                _place(placement, children)
                order = ["raw", "proto", "invoke"] if rep % 2 == 0 else ["invoke", "proto", "raw"]
                rep_s: dict[str, list[float]] = {}
                for kind in order:
                    if kind == "raw":
                        rep_s[kind] = raw_pingpong(raw_sock, args.dispatch_n, deadline)
                    elif kind == "proto":
                        rep_s[kind] = await proto_pingpong(proto, args.dispatch_n, deadline)
                    else:
                        rep_s[kind] = await invoke_loop(rt, args.dispatch_n, deadline)
                    samples[placement][kind].extend(rep_s[kind])
                r = {k: summary(v) for k, v in rep_s.items()}
                rep_out[placement] = r
                log(f"dispatch rep {rep + 1} {placement:10s}: invoke p50 "
                    f"{r['invoke']['p50']:6.1f} us, Protocol p50 {r['proto']['p50']:5.1f} us, "
                    f"raw p50 {r['raw']['p50']:5.1f} us")
            rep_out["other_cpu_pct"] = noise.stop()["other_cpu_pct"]
            log(f"dispatch rep {rep + 1}: other processes used {rep_out['other_cpu_pct']:.1f}% "
                "of the box")
            per_rep.append(rep_out)
            if time.monotonic() > deadline:
                break
        _place("unpinned", children)
        workers = len(rt.pools["noop"].workers)
    finally:
        await rt.stop()
        if proto is not None:
            proto.transport.close()
        raw_sock.close()
        for p in (raw_proc, a_proc):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    out: dict[str, Any] = {"workers_used": workers, "per_rep": per_rep}
    for pl in placements:
        out[pl] = {
            "runtime_invoke_noop_us": summary(samples[pl]["invoke"]),
            "uvloop_protocol_pingpong_us": summary(samples[pl]["proto"]),
            "raw_socketpair_pingpong_us": summary(samples[pl]["raw"]),
            "invoke_p50_median_of_reps_us": median(r[pl]["invoke"]["p50"] for r in per_rep),
            "invoke_p99_median_of_reps_us": median(r[pl]["invoke"]["p99"] for r in per_rep),
        }
    return out


# -- report --------------------------------------------------------------------------------

def report(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for pin, data in res.get("http", {}).items():
        rows = []
        for conns, s in data["summary"].items():
            for cfg, m in s["configs"].items():
                rows.append([f"c={conns} {cfg}", m["rps"], m["p50_ms"], m["p99_ms"],
                             m["cpu_us_per_req"], m["cpu_main_us_per_req"],
                             m["cpu_children_us_per_req"], m["other_cpu_pct"], m["errors"],
                             m["reps"], m["noisy_runs"]])
        print_table(f"Warm HTTP, pin={pin} (medians over reps)",
                    ["config", "rps", "p50 ms", "p99 ms", "server CPU us/req", "main proc",
                     "children", "other CPU %", "errors", "reps", "noisy"], rows)
        rrows = []
        for conns, s in data["summary"].items():
            q = s["squall_over_bare"]
            if not q:
                continue
            rrows.append([f"c={conns}", f"{q['rps']:.2f}", f"{q['p50']:.2f}", f"{q['p99']:.2f}",
                          f"{q['cpu_per_req']:.2f}",
                          " ".join(f"{x:.2f}" for x in q["rps_per_rep"]),
                          " ".join(f"{x:.2f}" for x in q["p99_per_rep"])])
            targets[f"pin={pin} c={conns}: rps >= 0.7x bare"] = {
                "value": q["rps"], "met": q["rps"] >= TARGET_RPS_RATIO}
            targets[f"pin={pin} c={conns}: p99 <= 1.5x bare"] = {
                "value": q["p99"], "met": q["p99"] <= TARGET_P99_RATIO}
        if rrows:
            print_table(f"Squall / bare Starlette, pin={pin} (median of per-rep ratios)",
                        ["conns", "rps", "p50", "p99", "CPU/req", "rps per rep",
                         "p99 per rep"], rrows)
        if data.get("squall_pools_at_end"):
            print(f"Squall workers per function after the pin={pin} runs: "
                  f"{data['squall_pools_at_end']}")
    if "dispatch" in res:
        d = res["dispatch"]
        rows = []
        for pl in PLACEMENTS:
            if pl not in d:
                continue
            for name, key in (("Runtime.invoke(noop), sequential", "runtime_invoke_noop_us"),
                              ("uvloop Protocol ping-pong", "uvloop_protocol_pingpong_us"),
                              ("raw socketpair ping-pong, blocking", "raw_socketpair_pingpong_us")):
                s_ = d[pl][key]
                rows.append([f"{pl}: {name}", s_["n"], s_["p50"], s_["p90"], s_["p99"],
                             s_["mean"], s_["max"]])
            p50 = d[pl]["runtime_invoke_noop_us"]["p50"]
            targets[f"dispatch p50 < 100 us ({pl})"] = {"value": p50,
                                                        "met": p50 < TARGET_DISPATCH_P50_US}
        print_table("Dispatch round trip without HTTP (us); placement of the supervisor's loop "
                    "and the worker / echo child",
                    ["placement: path", "n", "p50", "p90", "p99", "mean", "max"], rows)
    if targets:
        print_table("Targets", ["target", "measured", "met"],
                    [[k, f"{v['value']:.2f}", "yes" if v["met"] else "NO"]
                     for k, v in targets.items()])
    return targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved reps (>= 3)")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds per run")
    ap.add_argument("--conns", default="64,16", help="wrk connection counts, comma-separated")
    ap.add_argument("--configs", default="squall,bare",
                    help="servers, comma-separated: " + ", ".join(CONFIGS) +
                    " (the squall-* variants are for attribution: squall_variant_server.py)")
    ap.add_argument("--pin", default="split,none",
                    help="pin modes: split (server CPU0, wrk CPU1), none; comma-separated")
    ap.add_argument("--dispatch-n", type=int, default=5000,
                    help="round trips per rep, placement and path")
    ap.add_argument("--placements", default="all",
                    help="dispatch placements: all, or some of " + ",".join(PLACEMENTS))
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-dispatch", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=600,
                    help="time budget per part; reps stop early past it")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 s warm-up, 2 s runs, c=64 only, split only")
    ap.add_argument("--max-other", type=float, default=15.0, metavar="PCT",
                    help="runs during which other processes used more than PCT%% of the box "
                         "are discarded and repeated, with their peers (up to --retries times)")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--src-ref", default=None, metavar="COMMIT",
                    help="measure Squall as of this git commit (git archive into a temporary "
                         "directory) instead of the working tree")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import Squall where Python finds it (src/, or PYTHONPATH) instead "
                         "of from a copy of src/ taken at the start (other engineers may edit "
                         "src/ during a run)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for the box to be under 15%% CPU")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.duration, args.conns, args.pin = 1.0, 2.0, "64", "split"
        args.dispatch_n = 1000
    args.conns = [int(c) for c in args.conns.split(",") if c]
    args.configs = [c for c in args.configs.split(",") if c]
    args.pins = [p for p in args.pin.split(",") if p]
    for c in args.configs:
        if c not in CONFIGS:
            ap.error(f"unknown config {c!r}")
    for p in args.pins:
        if p not in ("split", "none"):
            ap.error(f"unknown pin mode {p!r}")
    if not shutil.which("wrk") and not args.skip_http:
        ap.error("wrk is not installed")
    if (os.cpu_count() or 1) < 2 and "split" in args.pins:
        ap.error("pin mode 'split' needs 2 CPUs")

    snapshot = None if args.no_snapshot and not args.src_ref else snapshot_src(args.src_ref)
    try:
        return measure_and_report(args, snapshot)
    finally:
        drop_snapshot(snapshot)


def measure_and_report(args: argparse.Namespace, snapshot: Path | None) -> int:
    code, live_src_at_start, before = begin_measurement(args, snapshot)
    t0 = time.time()
    res: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="squall-bench-http-"))
    try:
        if not args.skip_dispatch:
            import uvloop

            res["dispatch"] = uvloop.run(dispatch_part(args))
        if not args.skip_http:
            res["http"] = http_part(args, workdir)
    except HarnessError as exc:
        log(f"harness failure: {exc}")
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    after = idle_check()
    targets = report(res, args)
    data = {
        "benchmark": "warm_http",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
        "elapsed_s": round(time.time() - t0, 1),
        "args": vars(args),
        "machine": machine_info(),
        "squall_code": code,
        # src/ edited by someone while this ran (harmless when a snapshot was measured)
        "src_changed_during_run": src_fingerprint(REPO / "src")["src_sha1"] != live_src_at_start,
        "load_before": before,
        "load_after": after,
        "body_bytes": len(BODY),
        "results": res,
        "targets": targets,
    }
    path = write_results("warm_http", data)
    log(f"load after: loadavg {after['loadavg']}, CPU busy {after['busy_pct']}%")
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

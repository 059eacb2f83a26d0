"""Where does a Squall cold start's time go? A timeline of one fork, step by step.

Runs the real Runtime and the real zygote, with timestamps taken from the outside
(bench/_probe_zygote.py in the zygote and its workers, wrappers on Runtime/pool methods
here; CLOCK_MONOTONIC in every process), for --n cold starts done as cold_start.py does
them. Prints the median and p90 of each step, in milliseconds from the supervisor's
invoke() call. Also prints the zygote's memory (fork cost grows with it).

    .venv/bin/python bench/profile_cold.py --n 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess as real_subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from _common import APPS_DIR, BENCH_DIR, drop_snapshot, pct, print_table, snapshot_src

ns = time.monotonic_ns
SUP: dict[str, int] = {}


def patch_supervisor(probe_dir: str) -> None:
    from squall.runtime import pool as pool_mod
    from squall.runtime import runtime as runtime_mod
    from squall.runtime import zygote_client as zc

    def popen(argv, *a, **k):
        argv = list(argv)
        i = argv.index("-m")
        argv[i:i + 2] = [str(BENCH_DIR / "_probe_zygote.py")]
        env = dict(k.pop("env", None) or os.environ)
        env["SQUALL_PROBE_DIR"] = probe_dir
        return real_subprocess.Popen(argv, *a, env=env, **k)

    zc.subprocess = types.SimpleNamespace(Popen=popen, DEVNULL=real_subprocess.DEVNULL)

    fork = runtime_mod.Runtime.zygote_fork

    def zygote_fork(self, function):
        SUP["s_fork_req"] = ns()
        r = fork(self, function)
        SUP["s_fork_req_sent"] = ns()
        return r

    runtime_mod.Runtime.zygote_fork = zygote_fork
    spawn = pool_mod.FunctionPool.spawn

    async def spawn_probe(self):
        r = await spawn(self)
        SUP["s_connected"] = ns()
        return r

    pool_mod.FunctionPool.spawn = spawn_probe
    submit = pool_mod.WorkerConn.submit

    def submit_probe(self, pending):
        SUP.setdefault("s_request_written", 0)
        submit(self, pending)
        if not SUP["s_request_written"]:
            SUP["s_request_written"] = ns()

    pool_mod.WorkerConn.submit = submit_probe
    received = pool_mod.WorkerConn.data_received

    def data_received(self, data):
        t = ns()
        received(self, data)
        if self.ready:
            SUP.setdefault("s_ready_seen", t)
        if self.served:
            SUP.setdefault("s_result_seen", t)

    pool_mod.WorkerConn.data_received = data_received


STEPS = [
    ("s_fork_req", "supervisor: socketpair + memfd, send FORK"),
    ("s_fork_req_sent", "supervisor: FORK sent"),
    ("z_wake", "zygote: select() returned"),
    ("z_recv", "zygote: recv_fds returned"),
    ("z_fork_call", "zygote: calls os.fork()"),
    ("c_running", "child: fork() returned in the child"),
    ("c_run_worker", "child: run_worker entered (after zygote cleanup)"),
    ("c_setup_start", "child: Worker.setup starts"),
    ("c_ready_send", "child: READY about to be sent (setup done)"),
    ("c_ready_sent", "child: READY sent"),
    ("s_connected", "supervisor: worker connection set up"),
    ("s_request_written", "supervisor: INVOKE written"),
    ("s_ready_seen", "supervisor: READY received"),
    ("c_first_read", "child: INVOKE frame read"),
    ("c_call_start", "child: handler call starts"),
    ("c_call_end", "child: handler call returns"),
    ("c_result_send", "child: RESULT about to be sent"),
    ("c_result_sent", "child: RESULT sent"),
    ("s_result_seen", "supervisor: RESULT received"),
    ("s_done", "supervisor: invoke() returned"),
]


async def run(args: argparse.Namespace, probe_dir: str) -> list[dict[str, int]]:
    import psutil

    from squall.runtime.runtime import Runtime

    rt = Runtime(str(APPS_DIR / "coldmod.py"))
    await rt.start()
    z = psutil.Process(rt.zygote.proc.pid)
    mem = z.memory_full_info()
    print(f"zygote: RSS {mem.rss / 2**20:.1f} MiB, USS {mem.uss / 2**20:.1f} MiB, "
          f"VMS {mem.vms / 2**20:.1f} MiB, {len(z.memory_maps())} mappings")
    timelines = []
    payload = json.dumps({"amount": "21.5"})
    try:
        names = rt.function_names()
        for i in range(args.n + 3):
            name = names[i % len(names)]
            pool = rt.pools[name]
            SUP.clear()
            t0 = ns()
            res = await rt.invoke(name, "event", payload)
            SUP["s_done"] = ns()
            pids = [w.pid for w in pool.workers]
            for w in list(pool.workers):
                w.close()
            for pid in pids:
                deadline = time.monotonic() + 3
                while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
            while pool.workers:
                await asyncio.sleep(0.001)
            path = Path(probe_dir) / f"{pids[0]}.json"
            child = json.loads(path.read_text())
            if i < 3 or not res.ok:
                continue
            tl = {**child, **SUP}
            timelines.append({k: (v - t0) / 1e6 for k, v in tl.items() if k != "t_request"})
    finally:
        await rt.stop()
    return timelines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", action="store_true",
                    help="also fork from this process and time the child's steps one by one")
    args = ap.parse_args()
    probe_dir = tempfile.mkdtemp(prefix="squall-probe-")
    snapshot = snapshot_src()
    try:
        if args.steps:
            for freeze in (True, False):
                print_fork_steps(fork_steps(args.n, freeze),
                                 f"Fork from an app-importing process, gc.freeze()={freeze}")
        patch_supervisor(probe_dir)
        import uvloop

        tls = uvloop.run(run(args, probe_dir))
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
        drop_snapshot(snapshot)
    rows = []
    prev = None
    for key, label in STEPS:
        xs = [t[key] for t in tls if key in t]
        p50 = pct(xs, 50)
        delta = pct([t[key] - t[prev] for t in tls if key in t and prev in t], 50) if prev else 0.0
        rows.append([label, key, p50, pct(xs, 90), delta])
        prev = key
    print_table(f"Cold start timeline, ms since invoke() ({len(tls)} cold starts)",
                ["step", "key", "p50", "p90", "p50 of step delta"], rows)
    return 0


# -- a step-by-step fork in this process, using Squall's own functions -------------------

def fork_steps(n: int, freeze: bool) -> list[dict[str, float]]:
    """Fork `n` children from a process that imported the app as the zygote does, and time
    in each child the steps the zygote and worker take after fork (Worker.setup's lines are
    mirrored here one group at a time, since it is one method)."""
    import gc
    import logging
    import signal
    import socket

    from squall.runtime import adapters, worker as W
    from squall.runtime.loader import load_app
    from squall.runtime.zygote import die_with_parent
    from squall.types import Context

    app = load_app(str(APPS_DIR / "coldmod.py"))
    fn = app.functions["f0"]
    gc.collect()
    if freeze:
        gc.freeze()
    out = []
    for _ in range(n):
        r, w = os.pipe()
        a, b = socket.socketpair()
        log_fd = os.memfd_create("probe-log", os.MFD_CLOEXEC)
        t0 = ns()
        pid = os.fork()
        if pid == 0:
            t = {"fork": ns()}
            try:
                os.close(r)
                die_with_parent()
                t["die_with_parent"] = ns()
                for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
                    signal.signal(sig, signal.SIG_DFL)
                sock = socket.socket(fileno=b.detach())
                sock.setblocking(True)
                t["signals+socket"] = ns()
                wk = W.Worker(app, fn, sock, log_fd)
                t["Worker()"] = ns()
                cfg = fn.config
                os.environ.update({"AWS_LAMBDA_FUNCTION_NAME": cfg.name, "SQUALL_APP": app.name,
                                   "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
                                   "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                                   "AWS_LAMBDA_LOG_GROUP_NAME": "x", "AWS_LAMBDA_LOG_STREAM_NAME": "y",
                                   "AWS_REGION": "local", "AWS_EXECUTION_ENV": "squall",
                                   "SQUALL_FUNCTION": cfg.name})
                t["setup: os.environ.update"] = ns()
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                sys.stdout = W._stream(1)
                sys.stderr = W._stream(2)
                t["setup: dup2 + text streams"] = ns()
                root = logging.getLogger()
                for h in list(root.handlers):
                    root.removeHandler(h)
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter(W._LOG_FORMAT.rstrip("\n"), "%Y-%m-%dT%H:%M:%S"))
                handler.addFilter(wk.log_filter)
                root.addHandler(handler)
                t["setup: logging handler"] = ns()
                app.bind(W._WorkerInvoker(wk))
                wk.send([20, os.getpid(), 0.0])
                t["setup: bind + send READY"] = ns()
                ctx = Context(request_id="r1", function_name=cfg.name, app_name=app.name)
                adapters.call(fn, "event", '{"amount": "21.5"}', ctx, wk._loop)
                t["first handler call"] = ns()
                wk._drain_logs()
                t["first _drain_logs"] = ns()
                adapters.call(fn, "event", '{"amount": "21.5"}', ctx, wk._loop)
                t["second handler call"] = ns()
                with open(f"/proc/{os.getpid()}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                t["minor faults so far"] = int(fields[7]) * 1_000_000 + t0  # so the ms shows the count
                os.write(w, json.dumps({k: (v - t0) / 1e6 for k, v in t.items()}).encode())
            finally:
                os._exit(0)
        os.close(w)
        os.close(b.detach())
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        os.close(log_fd)
        a.close()
        os.waitpid(pid, 0)
        out.append(json.loads(data))
    gc.unfreeze()
    return out


def print_fork_steps(samples: list[dict[str, float]], title: str) -> None:
    keys = list(samples[0])
    rows, prev = [], None
    for k in keys:
        if k == "minor faults so far":
            rows.append([k, pct([s[k] for s in samples], 50), "", ""])
            continue
        xs = [s[k] for s in samples]
        d = [s[k] - s[prev] for s in samples] if prev else xs
        rows.append([k, pct(xs, 50), pct(xs, 90), pct(d, 50)])
        prev = k
    print_table(title, ["step (in the child)", "p50 ms since fork call", "p90", "p50 step"], rows)


if __name__ == "__main__":
    sys.exit(main())

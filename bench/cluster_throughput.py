"""Distributed mode: queue throughput with 1, 2 and 3 `squall worker` nodes on a shared
broker and store, against one node on the embedded default, in one run.

Each configuration: start the nodes (each `squall worker bench/apps/cluster_work.py`,
4 batches of 10 in flight per node), wait until all are listening, then send N messages
in bulk (100-message sends, all concurrent) and time until the last one is done (its line
is in the output file). Throughput = N / (last done - first send). Every configuration
runs --reps times, interleaved; medians are reported, with the ratio to the embedded
single node. The work per message is ~0.5 ms of CPU plus a 5 ms wait (CLUSTER_BENCH_IO_MS),
a function calling some outside service.

Backends (``--backends``, comma separated): embedded (SQLite files, 1 node only),
postgres (PostgreSQL broker + store at --pg), nats (NATS JetStream broker at --nats,
PostgreSQL store). Nodes of one configuration share the machine's 2 cores with the broker
server: see docs/benchmarks.md for what limits scaling here.

Usage:
  .venv/bin/python bench/cluster_throughput.py                     # full run
  .venv/bin/python bench/cluster_throughput.py --n 500 --reps 1 --no-wait   # quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (APPS_DIR, REPO, VENV_PYTHON, begin_measurement, clean_env,  # noqa: E402
                     end_process, log, machine_info, median, print_table, write_results)

APP = str(APPS_DIR / "cluster_work.py")
PG = "postgresql://postgres@127.0.0.1:5432/test"
NATS = "nats://127.0.0.1:4222"


IO_MS = "5"


def start_node(name: str, broker: str, store: str, work: Path, out: Path) -> tuple[Any, str]:
    log_path = work / f"{name}.log"
    with open(log_path, "a") as err:
        proc = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "squall.cli.main", "worker", APP, "--broker", broker,
             "--store", store, "--port", "0", "--data-dir", str(work / name)],
            stderr=err, stdout=subprocess.DEVNULL, cwd=REPO,
            env=clean_env(SQUALL_NODE_ID=name, CLUSTER_BENCH_OUT=str(out),
                          CLUSTER_BENCH_IO_MS=IO_MS))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if '"msg": "listening"' in line:
                return proc, json.loads(line)["url"]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    end_process(proc)
    raise SystemExit(f"node {name} did not start:\n{log_path.read_text()[-2000:]}")


async def send_all(broker_url: str, n: int) -> float:
    from squall.backends import open_broker
    from squall.backends.broker import OutMessage

    b = open_broker(broker_url)
    try:
        await b.stats("jobs")  # connect before the clock starts
        t0 = time.time()
        await asyncio.gather(*[
            b.send("jobs", [OutMessage(body=json.dumps({"t": time.time(), "i": i}).encode())
                            for i in range(s, min(n, s + 100))]) for s in range(0, n, 100)])
        return t0
    finally:
        await b.close()


def drop_namespace(backend: str, ns: str) -> None:
    if backend in ("postgres", "nats"):
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
    if backend == "nats":
        async def purge() -> None:
            import nats

            nc = await nats.connect(NATS)
            js = nc.jetstream()
            for info in await js.streams_info():
                if info.config.name.startswith(ns.upper()) or \
                        info.config.name.startswith(f"KV_{ns.upper()}"):
                    await js.delete_stream(info.config.name)
            await nc.close()
        asyncio.run(purge())


def one_run(backend: str, nodes: int, n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="squall-cluster-bench-"))
    ns = f"b_{uuid.uuid4().hex[:8]}"
    if backend == "embedded":
        broker, store = f"sqlite:///{work / 'broker.db'}", f"sqlite:///{work / 'store.db'}"
    elif backend == "postgres":
        broker = store = f"{PG}?schema={ns}"
    else:
        broker, store = f"{NATS}?prefix={ns.upper()}", f"{PG}?schema={ns}"
    out = work / "done.txt"
    procs = []
    try:
        for i in range(nodes):
            procs.append(start_node(f"node{i}", broker, store, work, out)[0])
        time.sleep(1.0)  # let the consumers reach their first long poll
        t0 = asyncio.run(send_all(broker, n))
        deadline = time.monotonic() + 300
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) >= n:
                break
            time.sleep(0.05)
        done = [ln.split() for ln in lines]
        if len(done) < n:
            raise SystemExit(f"{backend} x{nodes}: only {len(done)} of {n} done in time")
        last = max(float(d[1]) for d in done)
        per_node: dict[str, int] = {}
        for d in done:
            per_node[d[2]] = per_node.get(d[2], 0) + 1
        return {"backend": backend, "nodes": nodes, "n": n, "seconds": last - t0,
                "msgs_per_s": n / (last - t0), "per_node": per_node}
    finally:
        for p in procs:
            end_process(p, 20)
        drop_namespace(backend, ns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", default="embedded,postgres,nats")
    ap.add_argument("--wait-quiet", type=float, default=60.0)
    ap.add_argument("--no-wait", dest="wait_quiet", action="store_const", const=0.0)
    ap.add_argument("--io-ms", default="5", help="the wait per message (0: CPU only)")
    ap.add_argument("--src-ref", default=None)
    args = ap.parse_args()
    global IO_MS
    IO_MS = args.io_ms
    code, _, before = begin_measurement(args, None)
    configs = [(b, k) for b in args.backends.split(",")
               for k in ((1,) if b == "embedded" else (1, 2, 3))]
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for backend, nodes in configs:
            r = one_run(backend, nodes, args.n)
            r["rep"] = rep
            log(f"rep {rep} {backend} x{nodes}: {r['msgs_per_s']:.0f} msg/s {r['per_node']}")
            runs.append(r)
    base = median(r["msgs_per_s"] for r in runs if r["backend"] == "embedded") \
        if any(r["backend"] == "embedded" for r in runs) else float("nan")
    rows = []
    for backend, nodes in configs:
        rate = median(r["msgs_per_s"] for r in runs
                      if r["backend"] == backend and r["nodes"] == nodes)
        rows.append([backend, nodes, f"{rate:.0f}", f"{rate / base:.2f}x"])
    print_table(f"queue throughput, {args.n} messages, {args.io_ms} ms wait per message, "
                f"median of {args.reps}",
                ["backend", "nodes", "msg/s", "vs embedded x1"], rows)
    path = write_results("cluster_throughput", {
        "machine": machine_info(), "code": code, "load_before": before, "args": vars(args),
        "runs": runs, "table": rows})
    log(f"results: {path}")


if __name__ == "__main__":
    main()

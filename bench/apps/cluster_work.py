"""Cluster benchmark app for bench/cluster_throughput.py: a queue consumer doing a
function's typical work per message — a little CPU (hashing, ~0.5 ms) and a wait on an
outside service (CLUSTER_BENCH_IO_MS, default 5 ms, a sleep) — then appending
"<t_sent> <t_done> <node>" per message to CLUSTER_BENCH_OUT in one O_APPEND write.
"""

import hashlib
import json
import os
import time

from squall import App

app = App("cluster-work")
_fd = None
IO_S = float(os.environ.get("CLUSTER_BENCH_IO_MS", "5")) / 1000


@app.queue("jobs", batch_size=10, concurrency=4, visibility_timeout_s=30)
def jobs(batch, ctx):
    global _fd
    if _fd is None:  # opened in the worker, never in the zygote
        _fd = os.open(os.environ["CLUSTER_BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    node = os.environ.get("SQUALL_NODE_ID", "-")
    lines = []
    for m in batch:
        digest = m.body.encode()
        for _ in range(200):  # ~0.5 ms of CPU
            digest = hashlib.sha256(digest).digest()
        time.sleep(IO_S)
        lines.append(f"{json.loads(m.body)['t']!r} {time.time()!r} {node}\n")
    os.write(_fd, "".join(lines).encode())

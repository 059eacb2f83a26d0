"""Queue benchmark app for bench/queue_throughput.py: a no-op queue consumer.

Each batch appends one line per message, "<t_sent> <t_done> <pid>\n", to QUEUE_BENCH_OUT in a
single O_APPEND write (the side channel the benchmark counts). `t_sent` is the producer's
wall clock, carried in the body; `t_done` is when the handler ran.
QUEUE_BENCH_BATCH sets batch_size; QUEUE_BENCH_PROVISIONED keeps that many workers warm.
"""

import json
import os
import time

from squall import App

app = App("queue-noop")
_fd = None
_loads = json.loads


@app.queue("jobs", batch_size=int(os.environ.get("QUEUE_BENCH_BATCH", "10")), concurrency=2,
           provisioned=int(os.environ.get("QUEUE_BENCH_PROVISIONED", "0")))
def jobs(batch, ctx):
    global _fd
    now = time.time()
    if _fd is None:  # opened in the worker, never in the zygote
        _fd = os.open(os.environ["QUEUE_BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    pid = os.getpid()
    os.write(_fd, "".join(f"{_loads(m.body)['t']!r} {now!r} {pid}\n" for m in batch).encode())

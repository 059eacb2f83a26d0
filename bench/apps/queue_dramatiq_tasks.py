"""Dramatiq side of bench/queue_throughput.py: the same no-op actor, Redis broker.

The actor appends "<t_sent> <t_done> <pid>\n" to QUEUE_BENCH_OUT (one O_APPEND write).
Run: dramatiq queue_dramatiq_tasks -p 2 [-t 1] (from bench/apps).
"""

import os
import time
import urllib.parse

import dramatiq
from dramatiq.brokers.redis import RedisBroker

_url = urllib.parse.urlparse(os.environ.get("QUEUE_BENCH_REDIS", "redis://127.0.0.1:6379/13"))
dramatiq.set_broker(RedisBroker(host=_url.hostname, port=_url.port or 6379,
                                db=int(_url.path.strip("/") or 0)))
_fd = None


@dramatiq.actor
def noop(t):
    global _fd
    now = time.time()
    if _fd is None:
        _fd = os.open(os.environ["QUEUE_BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"{t!r} {now!r} {os.getpid()}\n".encode())

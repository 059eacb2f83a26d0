"""Celery side of bench/queue_throughput.py: the same no-op task, Redis broker, no results.

The task appends "<t_sent> <t_done> <pid>\n" to QUEUE_BENCH_OUT (one O_APPEND write).
Run: celery -A queue_celery_tasks worker -c 2 --pool prefork (from bench/apps).
"""

import os
import time

from celery import Celery

app = Celery("queue_celery_tasks", broker=os.environ.get("QUEUE_BENCH_REDIS",
                                                          "redis://127.0.0.1:6379/13"))
app.conf.update(task_ignore_result=True, result_backend=None, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)
_fd = None


@app.task(ignore_result=True)
def noop(t):
    global _fd
    now = time.time()
    if _fd is None:
        _fd = os.open(os.environ["QUEUE_BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"{t!r} {now!r} {os.getpid()}\n".encode())

"""A worker closed on purpose (idle reap, a retired version) takes no more requests.

Closing a worker's socket is asynchronous: until its connection_lost removes it, it is
still in the pool, and looked idle. A request dispatched to it in that window was written
to a closing socket and failed as "Runtime exited with error: exit status 0" (found by
the platform's deploy-under-traffic test with keep_warm_s=0)."""

from __future__ import annotations

from pathlib import Path

from squall.testing import TestClient

APP = str(Path(__file__).parent / "apps" / "basic.py")


def test_a_request_right_after_a_reap_goes_to_a_new_worker():
    with TestClient(APP, isolated=True) as client:
        first = client.invoke("echo", {"n": 1})
        assert first.ok, first.error_message
        runtime = client.runtime
        pool = runtime.pools["echo"]
        (idle,) = pool.workers

        async def scenario():
            idle.close()  # as reap_idle does; its connection_lost comes later
            return await runtime.invoke("echo", "event", '{"n": 2}')

        second = client.call(scenario)
        assert second.ok, second.error_message
        assert second.cold is True  # a new worker, not the closed one
        assert second.output["pid"] != first.output["pid"]

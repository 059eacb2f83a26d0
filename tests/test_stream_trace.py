"""A stream hop carries the trace: the consumer's invocation runs in the producer's trace,
and the loop lineage rides along, so a consumer that feeds its own stream is stopped."""

from __future__ import annotations

from squall import App
from squall.events.lineage import MAX_HOPS
from squall.testing import TestClient
from squall.testing.conformance import FakeClock


def _app(seen: list[str]) -> App:
    app = App("stream-trace")

    @app.function()
    def produce(data):
        return app.put_records("ticks", [("k", {"n": 0})])

    @app.stream("ticks", batch_size=1, max_retries=0)
    def echo(records, ctx):  # appends to its own stream: a recursive loop
        seen.append(ctx.trace_parent)
        for r in records:
            app.put_records("ticks", [("k", {"n": r.data["n"] + 1})])

    return app


def test_a_stream_consumer_runs_in_the_producers_trace_until_the_loop_is_stopped():
    seen: list[str] = []
    with TestClient(_app(seen), clock=FakeClock()) as client:
        # Given a function that appends to a stream whose consumer appends to it again
        client.invoke("produce")
        # When the stream is drained
        client.drain()
        # Then every consumer invocation is in the producing function's trace
        (produced,) = client.invocations("produce")
        runs = client.invocations("echo")
        trace_id = seen[0][3:35]
        assert len(seen) == MAX_HOPS and {t[3:35] for t in seen} == {trace_id}
        assert len({t[36:52] for t in seen}) == MAX_HOPS  # each hop its own span
        # And the lineage counted the hops: the 17th is stopped and dead-lettered
        assert sum(1 for r in runs if r.ok) == MAX_HOPS
        (dead,) = client.dead_letters("ticks-dlq")
        assert dead.attributes["error"].startswith("Squall.RecursiveLoopDetected")
        assert dead.trace is not None and dead.trace[3:35] == trace_id
        assert f"echo:{MAX_HOPS}" in dead.trace  # the lineage it was stopped with
        assert produced.ok

"""Stream conformance beyond order and checkpoints (squall.testing.conformance): what a
stream record carries besides its data. A backend's test class mixes it in next to
`BrokerConformance`, with the same `open_broker` fixture:

    class TestMyBroker(BrokerConformance, StreamConformance): ...
"""

from __future__ import annotations

from typing import Any

from .conformance import SuiteClock, async_test

# a traceparent as a function's put_records hop hands it on: with the loop lineage
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01;loop=record_click:2"


class StreamConformance:
    @async_test
    async def test_stream_records_keep_their_traceparent(self, open_broker: Any,
                                                          clock: SuiteClock) -> None:
        # Given records appended by a traced hop, and records appended without one
        b = await open_broker(clock)
        try:
            traced = await b.append("t", [(f"k{i}", b"x") for i in range(6)], shards=2,
                                    trace=TRACE)
            plain = await b.append("t", [("k0", b"y")], shards=2)
            # When a consumer reads them back
            got = {(e.shard, e.seq): e for shard in (0, 1)
                   for e in await b.read("t", shard, 0, 100)}
            # Then each traced record has the whole traceparent, lineage included
            assert [got[p].trace for p in traced] == [TRACE] * len(traced)
            assert got[plain[0]].trace is None
        finally:
            await b.close()
        # And it is durable like the data: a broker opened again reads the same
        b2 = await open_broker(clock)
        try:
            shard, seq = traced[0]
            (again, *_) = await b2.read("t", shard, seq - 1, 1)
            assert again.seq == seq and again.trace == TRACE
        finally:
            await b2.close()

"""A model-based test of the queue semantics (Hypothesis `RuleBasedStateMachine`): random
sequences of send (with and without a deduplication key), receive, ack, nack, extend,
dead-letter, clock advance and broker restart run against a real backend and against a
plain model of what the Protocol in squall.backends.broker promises. After every step:

* each message is in exactly one of ready / in flight / done / dead-lettered: the
  queue's stats and peek, and the DLQ's peek, hold exactly the model's messages;
* nothing is delivered while its lease (visibility timeout) holds;
* a receipt from an earlier delivery (or a settled one) is rejected;
* receive counts only go up, by one per delivery;
* first deliveries come out in send order (per queue: the Protocol's ordering unit);
* a deduplication key sent again within the window gives back the first id and stores
  nothing.

Use it like the conformance suite, with the same `open_broker(clock, **opts)` callable:

    def test_queue_model(open_broker):
        run_queue_model(open_broker, FakeClock(), max_examples=60)

On a fake clock, time is exact and every check is strict. A backend whose server keeps
time (REAL_TIME) runs with the short REAL_DURATIONS and really waits; checks near a
deadline (within `margin_s`) then accept either outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..backends.broker import OutMessage, QueueBroker
from .conformance import REAL_DURATIONS, Durations, FakeClock, RealClock

OpenBroker = Callable[..., Awaitable[QueueBroker]]


@dataclass
class Msg:
    """The model of one message."""

    mid: str
    order: int  # send order on its queue
    state: str = "ready"  # ready | inflight | done | dlq
    visible_at: float = 0.0
    receipt: str | None = None
    count: int = 0
    old_receipts: list[str] = field(default_factory=list)


def run_queue_model(open_broker: OpenBroker, clock: FakeClock | RealClock, *,
                    max_examples: int = 50, steps: int = 30,
                    durations: Durations | None = None, margin_s: float = 0.3,
                    shrink: bool = True) -> None:
    """Run the state machine against the backend `open_broker` opens (`shrink=False`:
    report the first failure as found, without minimising it)."""
    real = isinstance(clock, RealClock)
    T = durations or (REAL_DURATIONS if real else Durations())
    margin = margin_s if real else 0.0
    advances = ([T.retry * 0.5, T.visibility * 1.5] if real
                else [0.5, T.retry, T.short, T.visibility, T.delay])

    class QueueModel(RuleBasedStateMachine):
        receipts = Bundle("receipts")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.queue = f"m{uuid.uuid4().hex[:10]}"
            self.dlq = f"{self.queue}-dlq"
            self.broker: QueueBroker = self.run(open_broker(clock, dedup_window_s=T.delay))
            self.msgs: dict[str, Msg] = {}
            self.by_receipt: dict[str, str] = {}
            self.dedup: dict[str, tuple[str, float]] = {}  # key -> (id, window ends)
            self.sent = 0

        def run(self, coro: Awaitable[Any]) -> Any:
            return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

        def teardown(self) -> None:
            try:
                self.run(self.broker.purge(self.queue))
                self.run(self.broker.purge(self.dlq))
                self.run(self.broker.close())
            finally:
                self.loop.close()

        # -- time --------------------------------------------------------------------

        def surely(self, moment: float) -> str:
            """"past" or "future" when `moment` is clearly so, else "edge"."""
            now = clock()
            if now >= moment + margin:
                return "past"
            if now < moment - margin:
                return "future"
            return "edge"

        # -- rules -------------------------------------------------------------------

        @rule(n=st.integers(1, 3), key=st.sampled_from([None, None, "k1", "k2"]))
        def send(self, n: int, key: str | None) -> None:
            messages = [OutMessage(body=f"{self.sent + i}".encode(), dedup_key=key)
                        for i in range(n)]
            prior = self.dedup.get(key) if key is not None else None
            when = prior and self.surely(prior[1])
            ids = self.run(self.broker.send(self.queue, messages))
            assert len(ids) == n
            if key is not None:
                # one key in one call: the first message is stored, the rest are its repeats
                assert len(set(ids)) == 1, f"one dedup key gave several ids: {ids}"
                if when == "future":
                    assert ids[0] == prior[0], "a repeat within the window was stored again"
                elif when == "past":
                    assert ids[0] != prior[0], "a send after the window was deduplicated"
                if ids[0] in self.msgs or (prior and ids[0] == prior[0]):
                    return  # deduplicated: nothing new
                self.dedup[key] = (ids[0], clock() + T.delay)
                ids = ids[:1]
            assert not set(ids) & set(self.msgs), "a new message reused an id"
            for mid in ids:
                self.msgs[mid] = Msg(mid, self.sent, visible_at=clock())
                self.sent += 1

        @rule(target=receipts, n=st.integers(1, 4),
              vt=st.sampled_from([T.short, T.visibility]))
        def receive(self, n: int, vt: float) -> Any:
            got = self.run(self.broker.receive(self.queue, n, visibility_timeout_s=vt))
            assert len(got) <= n
            fresh_order = sorted((m.order for m in self.msgs.values()
                                  if m.state == "ready" and m.count == 0), key=int)
            fresh_got = []
            for d in got:
                m = self.msgs.get(d.message_id)
                assert m is not None, f"delivered a message never sent (or gone): {d}"
                assert m.state in ("ready", "inflight"), f"delivered a {m.state} message"
                assert self.surely(m.visible_at) != "future", "delivered while hidden"
                assert d.receive_count == m.count + 1, "receive count not +1 per delivery"
                assert d.receipt and d.receipt != m.receipt
                if m.count == 0:
                    fresh_got.append(m.order)
                if m.receipt is not None:
                    m.old_receipts.append(m.receipt)
                m.state, m.count, m.receipt = "inflight", d.receive_count, d.receipt
                m.visible_at = clock() + vt
                self.by_receipt[d.receipt] = m.mid
            assert fresh_got == sorted(fresh_got), "first deliveries out of send order"
            assert fresh_got == fresh_order[:len(fresh_got)], "a newer message overtook"
            if not real:
                visible = [m for m in self.msgs.values()
                           if m.state in ("ready", "inflight") and m.visible_at <= clock()
                           and m.mid not in {d.message_id for d in got}]
                assert len(got) == n or not visible, "visible messages were not handed out"
            return got[0].receipt if got else "no-receipt"

        def _expect(self, receipt: str) -> tuple[Msg | None, str]:
            """The message a receipt is for, and whether it should work: yes | no | either."""
            mid = self.by_receipt.get(receipt)
            m = self.msgs.get(mid) if mid else None
            if m is None or m.state != "inflight" or m.receipt != receipt:
                return m, "no"
            lease = self.surely(m.visible_at)
            return m, "yes" if lease == "future" else "either"

        def _check(self, ok: bool, expect: str, what: str) -> None:
            if expect == "yes":
                assert ok, f"{what} with the current receipt was refused"
            elif expect == "no":
                assert not ok, f"{what} with a stale or settled receipt was accepted"

        @rule(receipt=consumes(receipts))
        def ack(self, receipt: str) -> None:
            m, expect = self._expect(receipt)
            (ok,) = self.run(self.broker.ack(self.queue, [receipt]))
            self._check(ok, expect, "ack")
            if ok:
                m.state, m.receipt = "done", None

        @rule(receipt=receipts, delay=st.sampled_from([0.0, T.retry]))
        def nack(self, receipt: str, delay: float) -> None:
            m, expect = self._expect(receipt)
            ok = self.run(self.broker.nack(self.queue, receipt, delay_s=delay, error="x"))
            self._check(ok, expect, "nack")
            if ok:
                m.old_receipts.append(receipt)
                m.state, m.receipt, m.visible_at = "ready", None, clock() + delay

        @rule(receipt=receipts, vt=st.sampled_from([T.short, T.visibility]))
        def extend(self, receipt: str, vt: float) -> None:
            m, expect = self._expect(receipt)
            ok = self.run(self.broker.extend(self.queue, receipt, vt))
            self._check(ok, expect, "extend")
            if ok:
                m.visible_at = clock() + vt

        @rule(receipt=consumes(receipts))
        def dead_letter(self, receipt: str) -> None:
            m, expect = self._expect(receipt)
            ok = self.run(self.broker.dead_letter(self.queue, receipt, dlq=self.dlq,
                                                  reason="max_receive", error="model"))
            self._check(ok, expect, "dead_letter")
            if ok:
                m.state, m.receipt = "dlq", None

        @rule(receipt=st.sampled_from(["", "garbage", "1.deadbeef", "999999.x"]))
        def foreign_receipt(self, receipt: str) -> None:
            assert self.run(self.broker.ack(self.queue, [receipt])) == [False]

        @rule(dt=st.sampled_from(advances))
        def advance(self, dt: float) -> None:
            self.run(clock.elapse(dt))

        @precondition(lambda self: not real)  # a server restart is the NATS tests' own
        @rule()
        def restart(self) -> None:
            self.run(self.broker.close())
            self.broker = self.run(open_broker(clock, dedup_window_s=T.delay))

        # -- invariants ---------------------------------------------------------------

        @invariant()
        def each_message_in_exactly_one_place(self) -> None:
            live = {m.mid for m in self.msgs.values() if m.state in ("ready", "inflight")}
            dead = {m.mid for m in self.msgs.values() if m.state == "dlq"}
            in_queue = [d.message_id for d in self.run(self.broker.peek(self.queue, 1000))]
            in_dlq = [d.message_id for d in self.run(self.broker.peek(self.dlq, 1000))]
            assert len(in_queue) == len(set(in_queue))
            assert set(in_queue) == live, "the queue does not hold exactly the live ones"
            assert set(in_dlq) == dead, "the DLQ does not hold exactly the dead letters"
            stats = self.run(self.broker.stats(self.queue))
            assert stats.total == len(live)
            if not real:
                visible = sum(1 for mid in live if self.msgs[mid].visible_at <= clock())
                assert stats.visible == visible

    run_state_machine_as_test(QueueModel, settings=settings(
        max_examples=max_examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=list(HealthCheck), derandomize=True,
        phases=[p for p in Phase if shrink or p is not Phase.shrink]))

"""squall.ops, the functions the CLI and the dashboard share: redrive's rate bound with an
injected clock, and lookups that say what exists."""

from __future__ import annotations

import pytest

from squall.backends.broker import Delivery
from squall.config import FunctionConfig, QueueTrigger
from squall.ops import OpsError
from squall.ops.dead_letters import dead_letter_queues, redrive, select

from .conftest import run


class FakeBroker:
    """Records redrive calls; every message moves."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def redrive(self, dlq, *, to=None, message_ids=None, limit=1000):
        self.calls.append((dlq, list(message_ids)))
        return len(message_ids)


def dead(i: int, dlq: str = "orders-dlq") -> Delivery:
    return Delivery(message_id=f"m{i}", queue=dlq, body=b"{}", attributes={}, receipt="",
                    receive_count=3, sent_at=0.0, source_queue=dlq[:-4])


def test_redrive_keeps_to_the_rate_in_batches():
    broker, now, slept, progressed = FakeBroker(), [0.0], [], []

    async def sleep(s: float) -> None:  # the injected clock moves only when we sleep
        slept.append(s)
        now[0] += s

    chosen = [dead(i) for i in range(25)] + [dead(99, "other-dlq")]
    moved = run(redrive(broker, chosen, rate=100, progress=progressed.append,
                                sleep=sleep, clock=lambda: now[0]))
    # Given 26 messages at 100/s: batches of 10 (a call per DLQ in a batch), each batch
    # waiting until its messages' time has come, and no wait after the last
    assert moved == 26 and progressed == [10, 10, 6]
    assert [len(ids) for _, ids in broker.calls] == [10, 10, 5, 1]
    assert broker.calls[-1] == ("other-dlq", ["m99"])
    assert slept == pytest.approx([0.1, 0.1])
    with pytest.raises(OpsError, match="above 0"):
        run(redrive(broker, chosen, rate=0))


def test_lookups_name_what_exists():
    configs = {"h": FunctionConfig(name="h", kind="queue", queue=QueueTrigger(queue="orders"))}
    assert dead_letter_queues(configs) == {"orders-dlq": "orders"}
    assert dead_letter_queues(configs, "orders-dlq") == {"orders-dlq": "orders"}
    with pytest.raises(OpsError, match="its queues are: orders") as err:
        dead_letter_queues(configs, "emails")
    assert err.value.code == "not_found"
    with pytest.raises(OpsError, match="no dead letter with id m7"):
        select([dead(1)], ["m1", "m7"])


def test_trigger_summary_names_what_runs_a_function():
    from squall.ops.functions import trigger_summary

    manifest = {"rules": [{"name": "on-order", "targets": ["function:charge", "queue:q"]}],
                "subscriptions": [{"topic": "orders", "target": "function:charge"}],
                "workflows": [{"name": "fulfil"}]}
    assert trigger_summary({"name": "charge", "routes": []}, manifest) == \
        "rule on-order, topic orders"
    assert trigger_summary({"name": "fulfil", "routes": []}, manifest) == "workflow"
    assert trigger_summary({"name": "h", "routes": [["GET", "/a"], ["POST", "/a"]]}) == \
        "GET /a, POST /a"
    assert trigger_summary({"name": "s", "routes": [],
                            "schedule": {"expression": "rate(1 hour)"}}) == \
        "schedule rate(1 hour)"
    assert trigger_summary({"name": "x", "routes": []}) == "invoke"

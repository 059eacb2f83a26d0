"""The chaos harness's app: one queue whose handler applies each event's effect through
the idempotency helper, recording deliveries, effects and completed runs in the side
ledger (chaos_effects.py). Messages flagged `"poison": true` always fail and must end in
the dead-letter queue. CHAOS_BREAK=ack-without-effect makes the handler report every
97th message done without applying its effect (a deliberately broken build: the harness
must report it as lost).
"""

import os

from chaos_effects import delivered, done, effect

from squall import App, BatchResult, RetryPolicy

app = App("chaos")
BREAK = os.environ.get("CHAOS_BREAK", "")


@app.idempotent(key="n", expires_s=24 * 3600, lock_s=2)
def apply_effect(n: int) -> int:
    effect(n)
    return n


# A worker crash counts as a failed delivery (a poison message may be one that kills its
# worker): with a worker killed every 200 ms, an innocent message can sit in several
# killed batches, so max_receive is set well above what the fault rate causes.
@app.queue("work", batch_size=10, concurrency=4, max_receive=16, visibility_timeout_s=3,
           retry=RetryPolicy(base_s=0.05, factor=2.0, max_s=0.4), timeout_s=3)
def work(batch, ctx):
    failed = []
    delivered([m.data["n"] for m in batch])
    for m in batch:
        n = m.data["n"]
        if m.data.get("poison"):
            failed.append(m.id)
        elif BREAK == "ack-without-effect" and n % 97 == 0:
            continue  # broken on purpose: acknowledged, never applied
        else:
            apply_effect(n)
            done(n)
    return BatchResult(failed=failed)

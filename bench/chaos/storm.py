"""The storm scenario: a burst of events through the bulk send API, a worker kill -9
every `kill_every_s` for `fault_s`, the whole platform kill -9'd once and restarted
(optionally the broker or database server too), then a bounded wait for the backlog to
drain, and the ledger: what was acknowledged, what took effect, what sits in the DLQ.

Every random choice (the poison set, which worker dies when) comes from `seed`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from squall.backends import open_broker
from squall.backends.broker import BrokerError, OutMessage

from .platform import Node, ResourceSampler
from .report import Ledger, Report, build_report
from .services import PrivateNats, PrivatePostgres

QUEUE, DLQ = "work", "work-dlq"
SHARED_PG = os.environ.get("SQUALL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BREAKS = ("drop-acked", "ack-without-effect")
BASELINE_RATE = 100.0  # events/s of the fault-free baseline (its latency is the reference)


@dataclass(frozen=True)
class StormConfig:
    backend: str = "sqlite"  # sqlite | nats (NATS broker + PostgreSQL store) | postgres
    events: int = 10_000
    batch: int = 100  # messages per bulk send
    burst_s: float = 0.0  # spread the burst's bulk sends over this long (0: all at once)
    baseline_events: int = 300  # sent at BASELINE_RATE before any fault
    fault_s: float = 30.0
    kill_every_s: float = 0.2
    platform_kill_at_s: float | None = 15.0
    broker_restart_at_s: float | None = None  # distributed: kill -9 the broker server
    store_restart_at_s: float | None = None  # distributed: kill -9 the PostgreSQL server
    nodes: int = 1
    poison_rate: float = 0.01
    seed: int = 1
    drain_timeout_s: float = 240.0
    break_mode: str | None = None  # a deliberately broken build (BREAKS)
    empty_grace_s: float = 5.0  # queue empty this long, messages unaccounted for: lost
    private_store: bool = False  # distributed: a private PostgreSQL (implied by restarts)

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "nats", "postgres"):
            raise ValueError(f"unknown backend {self.backend!r}: sqlite, nats or postgres")
        if self.break_mode not in (None, *BREAKS):
            raise ValueError(f"unknown break mode {self.break_mode!r}: one of {BREAKS}")
        if self.events < 1 or self.batch < 1 or self.nodes < 1:
            raise ValueError("events, batch and nodes must be >= 1")


@dataclass
class Timeline:
    """Wall-clock marks of the run (the effects database stamps wall-clock time)."""

    storm_start: float = 0.0
    burst_s: float = 0.0
    fault_start: float = 0.0
    fault_end: float = 0.0
    kills: int = 0
    killed_pids: set[int] = field(default_factory=set)  # every worker a kill -9 ended
    restarts: list[dict[str, float]] = field(default_factory=list)


class Producer:
    """Sends through the broker's bulk API and records what was acknowledged. A bulk send
    that failed is retried as a whole: on a backend whose bulk send is atomic (SQLite,
    PostgreSQL) nothing of it was stored; on one where it is not (JetStream 2.9) every
    message carries a deduplication key (`dedup=True`), so the retry stores nothing
    twice. Under
    break_mode="drop-acked" it reports every 97th message acknowledged without storing it
    (a broker that acknowledges before it commits)."""

    RETRIES = 8

    def __init__(self, url: str, drop: bool, dedup: bool) -> None:
        self.url, self.drop, self.dedup = url, drop, dedup
        self.attempted: set[int] = set()
        self.acked: dict[int, float] = {}  # n -> when it was enqueued (wall clock)
        self.retries = 0
        self.failed: list[str] = []  # sends that failed for good

    async def _send(self, broker: Any, items: list[tuple[int, bool]]) -> None:
        t = time.time()
        msgs = [OutMessage(body=json.dumps({"n": n, "t": t, "poison": p}).encode(),
                           dedup_key=f"e{n}" if self.dedup else None)
                for n, p in items if not (self.drop and n % 97 == 0)]
        self.attempted.update(n for n, _ in items)
        for attempt in range(self.RETRIES + 1):
            try:
                if msgs:
                    await broker.send(QUEUE, msgs)
                break
            except BrokerError as exc:
                if attempt == self.RETRIES:
                    self.failed.append(str(exc))
                    return
                self.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        for n, _ in items:  # acknowledged: the call returned
            self.acked[n] = t

    async def burst(self, items: list[tuple[int, bool]], batch: int, spread_s: float) -> float:
        """All batches at once, or spread evenly over `spread_s`; the seconds it took."""
        broker = open_broker(self.url)
        try:
            batches = [items[i:i + batch] for i in range(0, len(items), batch)]
            t0 = time.monotonic()

            async def one(i: int, chunk: list[tuple[int, bool]]) -> None:
                if spread_s > 0:
                    await asyncio.sleep(max(0.0, t0 + spread_s * i / len(batches)
                                            - time.monotonic()))
                await self._send(broker, chunk)

            await asyncio.gather(*[one(i, c) for i, c in enumerate(batches)])
            return time.monotonic() - t0
        finally:
            await broker.close()


def read_ledger(chaos_db: Path) -> Ledger:
    c = sqlite3.connect(chaos_db, timeout=60)

    def rows(sql: str) -> list[tuple]:
        try:
            return c.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet (nothing ran), or not kept
            return []

    try:
        effects: dict[int, list[tuple[float, int]]] = {}
        for n, at, pid in rows("SELECT n, at, pid FROM effects ORDER BY at"):
            effects.setdefault(n, []).append((at, pid))
        deliveries = dict(rows("SELECT n, COUNT(*) FROM deliveries GROUP BY n"))
        done = set(rows("SELECT n, pid FROM done"))
    finally:
        c.close()
    return Ledger(effects=effects, deliveries=deliveries, done=done)


async def queue_state(url: str, details: dict[int, dict] | None = None
                      ) -> tuple[int, dict[int, str]]:
    """(messages left in the queue, {n: dead-letter reason} of the DLQ); `details`, when
    given, is filled with each dead letter's attempts and last error."""
    broker = open_broker(url)
    try:
        left = (await broker.stats(QUEUE)).total
        dead: dict[int, str] = {}
        after = None
        while page := await broker.peek(DLQ, 500, after_id=after):
            for d in page:
                n = json.loads(d.body)["n"]
                dead[n] = d.dead_letter_reason or ""
                if details is not None:
                    details[n] = {"reason": d.dead_letter_reason, "attempts": d.receive_count,
                                  "last_error": (d.last_error or "")[:300]}
            after = page[-1].message_id
        return left, dead
    finally:
        await broker.close()


class Storm:
    def __init__(self, cfg: StormConfig, root: Path, *,
                 progress: Callable[[str, float, float], None] | None = None) -> None:
        self.cfg, self.root = cfg, root
        self.rand = random.Random(cfg.seed)
        self.progress = progress or (lambda what, done, total: None)
        self.chaos_db = root / "chaos.db"
        self.timeline = Timeline()
        self.nats: PrivateNats | None = None
        self.pg: PrivatePostgres | None = None
        self.schema = f"chaos_{uuid.uuid4().hex[:10]}"
        self.nodes: list[Node] = []

    # -- set-up ------------------------------------------------------------------------

    def _urls(self) -> tuple[str | None, str | None, str]:
        """(broker URL for the nodes, store URL, broker URL for the harness)."""
        c = self.cfg
        if c.backend == "sqlite":
            url = f"sqlite:///{self.root / 'node0' / 'broker.db'}"
            return None, None, url
        pg_url = SHARED_PG
        if c.private_store or c.store_restart_at_s is not None:
            self.pg = PrivatePostgres(self.root / "pg")
            self.pg.init()
            self.pg.start()
            pg_url = self.pg.url
        store = f"{pg_url}?schema={self.schema}"
        if c.backend == "postgres":
            return store, store, store
        self.nats = PrivateNats(self.root / "nats")
        self.nats.start()
        broker = f"{self.nats.url}?prefix=CHAOS"
        return broker, store, broker

    def run(self) -> Report:
        c = self.cfg
        node_broker, store, self.url = self._urls()
        env = {**os.environ, "CHAOS_DB": str(self.chaos_db)}
        if c.break_mode == "ack-without-effect":
            env["CHAOS_BREAK"] = c.break_mode
        else:
            env.pop("CHAOS_BREAK", None)
        names = ["node0"] if c.backend == "sqlite" else [f"node{i}" for i in range(c.nodes)]
        self.nodes = [Node(n, self.root, env, broker=node_broker, store=store) for n in names]
        sampler = ResourceSampler(self.nodes)
        try:
            for node in self.nodes:
                node.start()
            sampler.start()
            return self._run(sampler)
        finally:
            sampler.stop()
            for node in self.nodes:
                node.stop()
            self._teardown(store)

    def _teardown(self, store: str | None) -> None:
        if self.nats is not None:
            self.nats.kill()
        if self.pg is not None:
            self.pg.stop()
        elif store is not None:
            try:
                import psycopg

                with psycopg.connect(SHARED_PG, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            except Exception:  # noqa: BLE001 - best effort clean-up of a throw-away schema
                pass

    # -- the run -----------------------------------------------------------------------

    def _run(self, sampler: ResourceSampler) -> Report:
        c, tl = self.cfg, self.timeline
        producer = Producer(self.url, drop=c.break_mode == "drop-acked",
                            dedup=c.backend == "nats")
        # baseline: a trickle with no faults, drained before the storm
        base = [(n, False) for n in range(c.baseline_events)]
        asyncio.run(producer.burst(base, 10, len(base) / BASELINE_RATE))
        self._wait_drained(producer, 60, "baseline")
        sampler.sample()
        # the storm: c.events in one bulk burst, seeded poison set
        ids = list(range(c.baseline_events, c.baseline_events + c.events))
        poison = set(self.rand.sample(ids, int(len(ids) * c.poison_rate)))
        items = [(n, n in poison) for n in ids]
        tl.storm_start = time.time()
        fault_errors: list[BaseException] = []

        def faults_main() -> None:
            try:
                self._faults()
            except BaseException as exc:  # surfaced below: the run cannot be trusted
                fault_errors.append(exc)

        faults = threading.Thread(target=faults_main, daemon=True)
        burst_holder: list[float] = []
        sender = threading.Thread(target=lambda: burst_holder.append(asyncio.run(
            producer.burst(items, c.batch, c.burst_s))), daemon=True)
        sender.start()
        faults.start()
        sender.join(120)
        tl.burst_s = burst_holder[0] if burst_holder else float("nan")
        faults.join(c.fault_s + 120)
        if fault_errors:
            raise RuntimeError(f"the fault schedule failed: {fault_errors[0]}") from fault_errors[0]
        t_drain = time.monotonic()
        drained = self._wait_drained(producer, c.drain_timeout_s, "drain")
        drain_s = time.monotonic() - t_drain
        time.sleep(1.0)  # settle: killed workers reaped, pools refilled
        sampler.sample()
        details: dict[int, dict] = {}
        left, dead = asyncio.run(queue_state(self.url, details))
        ledger = read_ledger(self.chaos_db)
        return build_report(
            cfg=asdict(c), acked=producer.acked, attempted=producer.attempted,
            send_retries=producer.retries, send_failures=producer.failed[:5],
            poison=poison, ledger=ledger, dlq=dead,
            wrongly_dead=[{"n": n, **details[n]} for n in sorted(set(dead) - poison)][:10],
            left_in_queue=left, drained=drained, drain_s=drain_s,
            timeline=asdict(tl), baseline_ids=set(n for n, _ in base),
            peak_rss=sampler.peak_rss, fd_samples=list(sampler.fds),
            errors=[e for n in self.nodes for e in n.errors()][:20])

    def _wait_drained(self, producer: Producer, timeout: float, what: str) -> bool:
        """Until every acknowledged message took effect or is dead-lettered and the queue
        is empty (True), or `timeout`, or the queue stayed empty for `empty_grace_s` with
        messages still unaccounted for: nothing is left to deliver them, they are lost."""
        deadline = time.monotonic() + timeout
        total = len(producer.acked)
        empty_since = None
        while time.monotonic() < deadline:
            ledger = read_ledger(self.chaos_db)
            try:
                left, dead = asyncio.run(queue_state(self.url))
            except Exception:  # noqa: BLE001 - a server mid-restart: look again
                time.sleep(0.5)
                continue
            settled = sum(1 for n in producer.acked if n in ledger.effects or n in dead)
            self.progress(what, settled, total)
            if left == 0 and settled == total:
                return True
            if left == 0:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > self.cfg.empty_grace_s:
                    return False
            else:
                empty_since = None
            time.sleep(0.5)
        return False

    def _faults(self) -> None:
        c, tl = self.cfg, self.timeline
        t0 = time.monotonic()
        tl.fault_start = time.time()
        pending = sorted(
            (at, kind) for at, kind in ((c.platform_kill_at_s, "platform"),
                                        (c.broker_restart_at_s, "broker"),
                                        (c.store_restart_at_s, "store")) if at is not None)
        n = 0
        while (elapsed := time.monotonic() - t0) < c.fault_s:
            while pending and elapsed >= pending[0][0]:
                self._restart(pending.pop(0)[1])
            workers = [w for node in self.nodes for w in node.workers()]
            if workers:
                victim = self.rand.choice(workers)
                try:
                    os.kill(victim.pid, 9)
                    tl.kills += 1
                    tl.killed_pids.add(victim.pid)
                except ProcessLookupError:
                    pass
            n += 1
            self.progress("faults", min(elapsed, c.fault_s), c.fault_s)
            time.sleep(max(0.0, t0 + n * c.kill_every_s - time.monotonic()))
        for _, kind in pending:
            self._restart(kind)
        tl.fault_end = time.time()

    def _restart(self, kind: str) -> None:
        """kill -9 a part of the platform and start it again; marks when."""
        t_kill = time.time()
        if kind == "platform":
            for node in self.nodes:
                self.timeline.killed_pids.update(p.pid for p in node.tree())
                node.kill()
            up = max(node.start() for node in self.nodes)
        elif kind == "broker" and self.nats is not None:
            self.nats.kill()
            up = self.nats.start()
        elif kind == "store" and self.pg is not None:
            self.pg.kill()
            up = self.pg.start()
        else:
            return
        self.timeline.restarts.append({"what": kind, "killed_at": t_kill, "up_s": up,
                                       "up_at": t_kill + up})


def run_storm(cfg: StormConfig, root: Path | None = None, **kw: Any) -> Report:
    if root is not None:
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"{root} is not empty: a run needs a new or empty directory")
        root.mkdir(parents=True, exist_ok=True)
        return Storm(cfg, root, **kw).run()
    with tempfile.TemporaryDirectory(prefix="squall-chaos-") as tmp:
        return Storm(cfg, Path(tmp), **kw).run()

"""The embedded broker's deadlines, on the monotonic clock.

Visibility timeouts, send delays, retry backoffs and the deduplication window are
deadlines kept in broker.db (so they hold across restarts and between the processes that
share the file). Kept as wall-clock times, a clock stepped forward (NTP, a VM resumed, an
operator) would end every lease at once and one stepped back would stretch them by the
step. They are kept on CLOCK_MONOTONIC instead: on Linux it counts from boot and is the
same for every process on the machine, so the running app and `squall send` from a shell
agree on it. User-facing times (a message's `sent_at`, the bus archive, idempotency
records and leases) stay on the wall clock.

Monotonic time starts again at every boot, so a stored deadline means something only
with the boot it was taken in: broker.db records the boot id
(/proc/sys/kernel/random/boot_id) its deadlines belong to. Opened in a later boot, every
deadline is rebased below "now", relative order kept: in-flight messages become visible
again (a redelivery: at least once), delayed messages and retry backoffs are due at once,
and deduplication records start a fresh window (kept longer, never dropped early). A
database from before this scheme (wall-clock deadlines, no boot id) is converted once on
open, each deadline keeping its remaining time.

Tests inject time: a `DeadlineClock` of their own, or just a fake wall clock, which then
drives the deadlines too (SqliteBroker's `timer`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("squall.broker.sqlite")

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

_META = """
CREATE TABLE IF NOT EXISTS broker_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_NOTICE = {
    "migrated": "broker.db: converted the wall-clock deadlines of %d messages to the "
                "monotonic clock (boot %s), each keeping its remaining time",
    "rebooted": "broker.db: written in an earlier boot; the deadlines of its %d messages "
                "count as passed in boot %s (in-flight messages will be redelivered, "
                "delayed ones are due now)",
}


def boot_id() -> str:
    """This boot's id. Without /proc (not Linux): the boot time to the minute, from the wall
    clock; a clock step may then look like a reboot, which only redelivers early."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return f"boot-at-{round((time.time() - time.monotonic()) / 60)}"


@dataclass(frozen=True, slots=True)
class DeadlineClock:
    """The clock deadlines are measured on, and the boot its readings belong to."""

    now: Callable[[], float]
    boot_id: str

    @classmethod
    def system(cls) -> DeadlineClock:
        return cls(time.monotonic, boot_id())


def adopt(db: sqlite3.Connection, timer: DeadlineClock, wall: Callable[[], float],
          dedup_window_s: float) -> str:
    """Make the stored deadlines readings of `timer` (once per boot, in one transaction).
    Returns what was done: "current", "migrated" (wall-clock deadlines converted) or
    "rebooted" (an older boot's deadlines rebased)."""
    db.executescript(_META)
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM broker_meta WHERE key = 'deadline_boot'").fetchone()
        now = timer.now()
        if row is not None and row[0] == timer.boot_id:
            outcome = "current"
        elif row is None:  # wall-clock deadlines: keep each one's remaining time
            shift = now - wall()
            db.execute("UPDATE messages SET available_at = available_at + ?", (shift,))
            db.execute("UPDATE dedup SET expires_at = expires_at + ?", (shift,))
            outcome = "migrated"
        else:  # another boot's monotonic readings: all due now, in their old order
            (latest,) = db.execute("SELECT MAX(available_at) FROM messages").fetchone()
            db.execute("UPDATE messages SET available_at = available_at + ?",
                       (now - (latest or 0.0),))
            db.execute("UPDATE dedup SET expires_at = ?", (now + dedup_window_s,))
            outcome = "rebooted"
        pending = 0
        if outcome != "current":
            pending = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            db.execute("INSERT INTO broker_meta (key, value) VALUES ('deadline_boot', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (timer.boot_id,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if pending:
        log.warning(_NOTICE[outcome], pending, timer.boot_id)
    return outcome

"""`squall send` and `squall dlq …`: queues from the command line.

Both open the app's broker directly (the embedded SQLite file under --data-dir), so they
work whether or not the app is running; a running app notices new messages at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..backends.broker import Delivery
    from ..config import FunctionConfig
    from ..sources.messaging import Messaging

# The broker, the ops helpers and sources.messaging (which pulls in the scheduler and
# croniter) are imported by the commands that use them: `squall --help` and every other
# command start without them.

dlq_cli = typer.Typer(help="Inspect, edit and redrive dead-letter queues.", no_args_is_help=True)


def _broker_url(data_dir: str) -> str:
    """A cluster's broker when SQUALL_BROKER is set (as for `squall worker`), else the
    embedded one under --data-dir."""
    from ..backends import broker_url_for_data_dir

    return os.environ.get("SQUALL_BROKER") or broker_url_for_data_dir(data_dir)


def _fail(message: str) -> typer.Exit:
    from .main import fail

    return fail(message)


def _run(coro: Any) -> Any:
    """asyncio.run, with asyncio imported on first use (not at CLI start-up)."""
    import asyncio

    return asyncio.run(coro)


def _load(app: str) -> tuple[dict[str, Any], dict[str, FunctionConfig]]:
    from ..config import FunctionConfig
    from .main import load_manifest

    manifest = load_manifest(app)
    configs = {f["name"]: FunctionConfig.from_manifest(f) for f in manifest["functions"]}
    return manifest, configs


def _attrs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise _fail(f"--attr takes NAME=VALUE, got {p!r}")
        out[k] = v
    return out


def send(
    app: str = typer.Argument(..., help="The app (file or module:attr)."),
    queue: str = typer.Argument(..., help="One of the app's queues."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="The message, as JSON."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Read it from a file."),
    delay_s: float = typer.Option(0.0, min=0, max=900, help="Deliver after this many seconds."),
    dedup_key: Optional[str] = typer.Option(None, help="Drop repeats of this key in the window."),
    attr: list[str] = typer.Option([], help="A message attribute NAME=VALUE (repeatable)."),
    data_dir: str = typer.Option(".squall", help="Where the embedded store keeps its data."),
) -> None:
    """Put a message on a queue; prints its id once it is durable."""
    from ..backends import BrokerError, open_broker
    from ..backends.broker import MessageTooLarge
    from ..sources.messaging import Messaging, UnknownQueue
    from .main import _parse_data

    if data is None and data_file is None:
        raise _fail("give the message with --data JSON or --data-file FILE")
    value = _parse_data(data, data_file)
    attributes = _attrs(attr)
    _, configs = _load(app)

    async def go() -> list[str]:
        broker = open_broker(_broker_url(data_dir))
        try:
            m = Messaging(broker, _no_invoke)
            m.configure(configs)
            return await m.send(queue, [{"body": json.dumps(value), "delay_s": delay_s,
                                         "dedup_key": dedup_key, "attributes": attributes}])
        finally:
            await broker.close()

    try:
        (mid,) = _run(go())
    except (UnknownQueue, MessageTooLarge, BrokerError) as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(json.dumps({"messageId": mid, "queue": queue}) + "\n")


async def _no_invoke(*_: Any, **__: Any) -> Any:  # pragma: no cover - never consumes
    raise RuntimeError("the CLI does not run functions")


def _dlqs(configs: dict[str, FunctionConfig], queue: str | None) -> dict[str, str]:
    """Dead-letter queue -> source queue, optionally only for `queue`."""
    from ..ops import OpsError
    from ..ops.dead_letters import dead_letter_queues

    try:
        return dead_letter_queues(configs, queue)
    except OpsError as exc:
        raise _fail(exc.message) from None


async def _collect(data_dir: str, dlqs: dict[str, str], contains: str | None,
                   error: str | None, limit: int) -> list[Delivery]:
    from ..backends import open_broker
    from ..ops.dead_letters import collect

    broker = open_broker(_broker_url(data_dir))
    try:
        return await collect(broker, dlqs, contains=contains, error=error, limit=limit)
    finally:
        await broker.close()


@dlq_cli.command("list")
def dlq_list(
    app: str = typer.Argument(..., help="The app (file or module:attr)."),
    queue: Optional[str] = typer.Argument(None, help="Only this queue (or its DLQ)."),
    contains: Optional[str] = typer.Option(None, help="Only messages whose body contains this."),
    error: Optional[str] = typer.Option(None, help="Only messages whose last error contains this."),
    limit: int = typer.Option(100, min=1, max=100000),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    data_dir: str = typer.Option(".squall"),
) -> None:
    """List dead letters with why they died."""
    from rich.table import Table

    from ..ops.dead_letters import record

    _, configs = _load(app)
    items = _run(_collect(data_dir, _dlqs(configs, queue), contains, error, limit))
    if as_json:
        for d in items:
            sys.stdout.write(json.dumps(record(d)) + "\n")
        return
    table = Table(title=f"{len(items)} dead letter(s)")
    for col in ("message id", "queue", "reason", "attempts", "age", "last error", "body"):
        table.add_column(col, overflow="fold")
    now = time.time()
    for d in items:
        table.add_row(d.message_id, d.source_queue or "?", d.dead_letter_reason or "",
                      str(d.receive_count), f"{now - d.sent_at:.0f} s",
                      (d.last_error or "")[:80], d.body.decode("utf-8", "replace")[:60])
    Console().print(table)


@dlq_cli.command("show")
def dlq_show(
    app: str = typer.Argument(...),
    message_id: str = typer.Argument(...),
    data_dir: str = typer.Option(".squall"),
) -> None:
    """Print one dead letter in full, as JSON."""
    from ..ops.dead_letters import record

    _, configs = _load(app)
    items = _run(_collect(data_dir, _dlqs(configs, None), None, None, 10**6))
    for d in items:
        if d.message_id == message_id:
            sys.stdout.write(json.dumps(record(d), indent=2) + "\n")
            return
    raise _fail(f"no dead letter with id {message_id!r}")


@dlq_cli.command("edit")
def dlq_edit(
    app: str = typer.Argument(...),
    message_id: str = typer.Argument(...),
    data: str = typer.Option(..., "--data", "-d", help="The new body, as JSON."),
    data_dir: str = typer.Option(".squall"),
) -> None:
    """Replace a dead letter's body (fix it before a redrive)."""
    from ..backends import open_broker
    from ..backends.broker import MessageTooLarge

    try:
        json.loads(data)
    except ValueError as exc:
        raise _fail(f"--data is not valid JSON: {exc}") from None
    _, configs = _load(app)

    async def go() -> bool:
        broker = open_broker(_broker_url(data_dir))
        try:
            for dlq in _dlqs(configs, None):
                if await broker.update_body(dlq, message_id, data.encode()):
                    return True
            return False
        finally:
            await broker.close()

    try:
        changed = _run(go())
    except MessageTooLarge as exc:
        raise _fail(str(exc)) from None
    if not changed:
        raise _fail(f"no dead letter with id {message_id!r}")
    sys.stdout.write(json.dumps({"messageId": message_id, "edited": True}) + "\n")


@dlq_cli.command("redrive")
def dlq_redrive(
    app: str = typer.Argument(...),
    queue: Optional[str] = typer.Argument(None, help="Only this queue's dead letters."),
    ids: list[str] = typer.Option([], "--id", help="Only these message ids (repeatable)."),
    contains: Optional[str] = typer.Option(None, help="Only messages whose body contains this."),
    error: Optional[str] = typer.Option(None, help="Only messages whose last error contains this."),
    rate: float = typer.Option(100.0, min=0.1, max=100000, help="Messages per second at most."),
    limit: int = typer.Option(100000, min=1, max=10**7),
    data_dir: str = typer.Option(".squall"),
) -> None:
    """Move dead letters back to their queue, at a bounded rate."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..backends import open_broker
    from ..ops import OpsError
    from ..ops.dead_letters import redrive, select

    _, configs = _load(app)
    dlqs = _dlqs(configs, queue)
    chosen = _run(_collect(data_dir, dlqs, contains, error, limit))
    if ids:
        try:
            chosen = select(chosen, ids)
        except OpsError as exc:
            raise _fail(exc.message) from None

    async def go() -> int:
        broker = open_broker(_broker_url(data_dir))
        try:
            with Progress(TextColumn("redrive"), BarColumn(), TextColumn("{task.completed}/"
                          "{task.total}"), TimeElapsedColumn(), console=Console(stderr=True),
                          transient=False) as progress:
                task = progress.add_task("redrive", total=len(chosen))
                return await redrive(broker, chosen, rate=rate,
                                     progress=lambda n: progress.update(task, advance=n))
        finally:
            await broker.close()

    moved = _run(go())
    sys.stdout.write(json.dumps({"redriven": moved}) + "\n")


@dlq_cli.command("delete")
def dlq_delete(
    app: str = typer.Argument(...),
    message_ids: list[str] = typer.Argument(..., help="The dead letters to drop."),
    data_dir: str = typer.Option(".squall"),
) -> None:
    """Drop dead letters for good."""
    from ..backends import open_broker

    _, configs = _load(app)

    async def go() -> int:
        broker = open_broker(_broker_url(data_dir))
        try:
            return sum([await broker.delete(dlq, message_ids) for dlq in _dlqs(configs, None)])
        finally:
            await broker.close()

    sys.stdout.write(json.dumps({"deleted": _run(go())}) + "\n")


def _messaging(configs: dict[str, FunctionConfig], manifest: dict[str, Any],
               broker: Any) -> Messaging:
    from ..config import RuleConfig
    from ..sources.messaging import Messaging

    m = Messaging(broker, _no_invoke)
    m.configure(configs, [RuleConfig.from_manifest(r) for r in manifest.get("rules", [])])
    return m


def publish(
    app: str = typer.Argument(..., help="The app (file or module:attr)."),
    source: str = typer.Argument(..., help="The event's source, e.g. shop.orders."),
    detail_type: str = typer.Argument(..., help="The event's detail-type, e.g. OrderCreated."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="The detail, as JSON."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Read it from a file."),
    data_dir: str = typer.Option(".squall", help="Where the embedded store keeps its data."),
) -> None:
    """Put an event on the app's bus; matching rules deliver it (now, or when it runs)."""
    from ..backends import BrokerError, open_broker
    from ..backends.broker import MessageTooLarge
    from .main import _parse_data

    detail = _parse_data(data, data_file)
    manifest, configs = _load(app)

    async def go() -> str:
        broker = open_broker(_broker_url(data_dir))
        try:
            return await _messaging(configs, manifest, broker).publish(json.dumps(
                {"source": source, "detail-type": detail_type,
                 "detail": detail if detail is not None else {}}))
        finally:
            await broker.close()

    try:
        event_id = _run(go())
    except (MessageTooLarge, BrokerError) as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(json.dumps({"eventId": event_id}) + "\n")


def _when(text: str, option: str) -> float:
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{option} must be an ISO 8601 time like 2026-11-28T14:00:00Z, got "
                    f"{text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def replay(
    app: str = typer.Argument(..., help="The app (file or module:attr)."),
    start: str = typer.Option(..., "--from", help="Replay events archived at or after this."),
    end: str = typer.Option(..., "--to", help="... and before this (ISO 8601)."),
    rule: Optional[str] = typer.Option(None, help="Only into this rule's targets."),
    name: str = typer.Option("replay", help="Put in each replayed event as replay-name."),
    data_dir: str = typer.Option(".squall", help="Where the embedded store keeps its data."),
) -> None:
    """Deliver archived bus events from a time range again, in their original order."""
    from ..backends import open_broker
    from ..ops import OpsError
    from ..ops.bus import replay as replay_archive

    t0, t1 = _when(start, "--from"), _when(end, "--to")
    if t1 <= t0:
        raise _fail("--to must be after --from")
    manifest, configs = _load(app)

    async def go() -> int:
        broker = open_broker(_broker_url(data_dir))
        try:
            with Console(stderr=True).status("[dim]replaying…[/]"):
                return await replay_archive(_messaging(configs, manifest, broker), t0, t1,
                                            rule=rule, name=name)
        finally:
            await broker.close()

    try:
        n = _run(go())
    except OpsError as exc:
        raise _fail(exc.message) from None
    sys.stdout.write(json.dumps({"replayed": n}) + "\n")


def schedules(
    app: str = typer.Argument(..., help="The app (file or module:attr)."),
    count: int = typer.Option(3, min=1, max=100, help="How many next firings to show."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per schedule."),
) -> None:
    """Show each schedule and when it fires next."""
    from rich.table import Table

    from ..ops.schedules import schedule_rows

    _, configs = _load(app)
    rows = schedule_rows(configs, time.time(), count)
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps({k: v for k, v in r.items() if k != "key"}) + "\n")
        return
    table = Table(title=f"{len(rows)} schedule(s)")
    for col in ("function", "expression", "timezone", "missed", "next firings (UTC)"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["function"], r["expression"], r["timezone"], r["missed"],
                      "\n".join(r["next"]))
    Console().print(table)

"""Waking long-polling consumers on every node: LISTEN/NOTIFY.

Every write that can make something receivable (a send, a nack, a dead-letter, a redrive,
a stream append) calls `pg_notify(channel, key)` in its own transaction; PostgreSQL
delivers the notification to every listening session when, and only if, that transaction
commits. Each broker keeps ONE dedicated connection that LISTENs on its schema's channel,
and a task that wakes the coroutines waiting on the notified key ("q:<queue>" or
"s:<stream>"), whichever process or node committed.

A generation per key closes the race between a consumer's empty look and its wait: the
consumer reads the generation before it looks and waits only when no wake came in between.
The one hazard is a notification missed while the listening connection is down (a server
restart), so losing it wakes every waiter to look again, and so does getting it back.
Being always at the socket, this connection is also the first to see the server go:
`lost` lets the broker check its pool then.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import suppress

from ...aiocompat import wait_for
from .connect import psycopg

RECONNECT_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # then every 2 s


class Waker:
    def __init__(self, listen: Callable[[], Awaitable[psycopg.AsyncConnection]], *,
                 lost: Callable[[], Awaitable[None]]) -> None:
        """`listen` opens a connection that already LISTENs on the channel; `lost` is
        called when the listening connection broke (the server restarted, most likely)."""
        self._listen = listen
        self._lost = lost
        self._epoch = 0  # bumped by wake_all: every key's generation moves
        self._generation: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self, conn: psycopg.AsyncConnection) -> None:
        """Dispatch the notifications arriving on `conn` (a connection from `listen`)."""
        self._task = asyncio.get_running_loop().create_task(self._dispatch(conn))

    def generation(self, key: str) -> int:
        return self._epoch + self._generation[key]

    async def wait(self, key: str, timeout: float) -> None:
        """Until `key` is notified, or `timeout` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key].add(fut)
        try:
            await wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    del self._waiters[key]

    def _wake(self, key: str) -> None:
        self._generation[key] += 1
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    def wake_all(self) -> None:
        self._epoch += 1
        for key in list(self._waiters):
            self._wake(key)

    async def _dispatch(self, conn: psycopg.AsyncConnection) -> None:
        try:
            while True:
                try:
                    async for note in conn.notifies():
                        self._wake(note.payload)
                except psycopg.Error:
                    pass  # the connection broke: get another below
                self.wake_all()
                await conn.close()
                await self._lost()
                conn = await self._relisten()
                self.wake_all()
        finally:
            await conn.close()

    async def _relisten(self) -> psycopg.AsyncConnection:
        attempt = 0
        while True:
            try:
                return await self._listen()
            except psycopg.Error:
                await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
                attempt += 1

    async def close(self) -> None:
        """Stop listening and wake every waiter (they find the broker closed)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.wake_all()

"""The NATS connection of one broker: opened on first use inside the running loop,
re-established after a server restart with exponential backoff, and the JetStream
requests the broker makes.

* Opening first probes the servers over TCP, so a wrong port or a stopped server is a
  BrokerError in about a connect timeout that names host:port and says how to start
  NATS (nats-py's own connect would keep retrying), then checks that JetStream answers.
* Requests that are safe to repeat (JetStream API calls, publishes that carry a
  Nats-Msg-Id or an expected-revision header) are retried with backoff until
  `request_timeout_s`: through a reconnect, and through the seconds after a restart
  while JetStream recovers its streams ("no responders").
* A delivery that arrives after its receive gave up (timed out, was cancelled) is
  nak'ed at once rather than left invisible until its ack wait ends.

nats-py errors become BrokerError here, at the boundary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..broker import BrokerError

log = logging.getLogger("squall.broker.nats")

DEFAULT_PORT = 4222
START_HINT = ("start a server with JetStream enabled: `nats-server -js` "
              "(`-sd DIR` chooses where it keeps its data)")
PER_TRY_S = 2.0
RECONNECT_BASE_S = 0.05
RECONNECT_MAX_S = 2.0

# JetStream API error codes (nats-server errors.json) the broker acts on
STREAM_NOT_FOUND = 10059
STREAM_NAME_IN_USE = 10058
CONSUMER_NOT_FOUND = 10014
WRONG_LAST_SEQUENCE = 10071

_RETRYABLE = (nats.errors.NoRespondersError, nats.errors.TimeoutError, asyncio.TimeoutError,
              nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError,
              nats.errors.OutboundBufferLimitError, nats.errors.FlushTimeoutError,
              nats.errors.ConnectionClosedError)


class JetStreamError(BrokerError):
    """An error answer from the JetStream API."""

    def __init__(self, what: str, error: dict[str, Any]) -> None:
        self.code = int(error.get("code", 0))
        self.err_code = int(error.get("err_code", 0))
        super().__init__(f"{what}: {error.get('description', error)} "
                         f"(JetStream error {self.err_code})")


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    host: str
    port: int

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> list[Server]:
    """The servers of `nats://host[:port][,nats://host:port…]` (also tls://)."""
    servers = []
    for part in (p.strip() for p in url.split(",")):
        scheme, sep, _ = part.partition("://")
        if not sep or scheme not in ("nats", "tls"):
            raise BrokerError(f"bad NATS URL {url!r}: use nats://host:port")
        split = urllib.parse.urlsplit(part)
        try:
            host, port = split.hostname, split.port or DEFAULT_PORT
        except ValueError:
            raise BrokerError(f"bad NATS URL {url!r}: the port must be a number, as in "
                              "nats://127.0.0.1:4222") from None
        if not host:
            raise BrokerError(f"bad NATS URL {url!r}: no host; use nats://host:port")
        servers.append(Server(part, host, port))
    return servers


def reconnect_delay(attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect attempt `attempts` + 1: at once after a first
    disconnect, then doubling from RECONNECT_BASE_S up to RECONNECT_MAX_S, jittered."""
    if attempts <= 0:
        return 0.0
    return min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2.0 ** (attempts - 1)) * (0.5 + rand() / 2)


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


class Connection:
    def __init__(self, servers: list[Server], *, connect_timeout_s: float,
                 request_timeout_s: float, name: str = "squall") -> None:
        self.servers = servers
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.name = name
        self.closed = False
        self.max_payload = 0
        self._nc: NATS | None = None
        self._drains: set[asyncio.Future[None]] = set()

    @property
    def where(self) -> str:
        return ", ".join(s.where for s in self.servers)

    # -- opening and closing -----------------------------------------------------------

    async def open(self) -> None:
        await self._probe()
        nc = NATS()

        async def on_error(exc: Exception) -> None:
            log.debug("NATS connection error (%s): %s", self.where, exc)

        async def on_disconnect() -> None:
            if not self.closed:
                log.warning("lost the NATS connection to %s; reconnecting", self.where)

        async def on_reconnect() -> None:
            log.warning("reconnected to NATS at %s", self.where)

        def pick(pool: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
            s = min(pool, key=lambda s: s.reconnects)
            return s, reconnect_delay(s.reconnects)

        try:
            await asyncio.wait_for(nc.connect(
                servers=[s.url for s in self.servers], name=self.name,
                connect_timeout=max(1, round(self.connect_timeout_s)),
                allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_to_server_handler=pick, error_cb=on_error,
                disconnected_cb=on_disconnect, reconnected_cb=on_reconnect),
                self.connect_timeout_s * 2)
        except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
            await _quietly_close(nc)
            raise BrokerError(f"cannot connect to NATS at {self.where}: "
                              f"{exc or type(exc).__name__}; {START_HINT}") from exc
        self._nc = nc
        self.max_payload = nc.max_payload
        try:
            await self.api("INFO", retry=False)
        except BrokerError as exc:
            await self.close()
            raise BrokerError(f"the NATS server at {self.where} does not answer JetStream "
                              f"requests ({exc}); {START_HINT}") from exc

    async def _probe(self) -> None:
        errors = []
        for s in self.servers:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(s.host, s.port),
                                                   self.connect_timeout_s)
            except (OSError, asyncio.TimeoutError) as exc:
                errors.append(f"{s.where}: {exc or 'timed out'}")
                continue
            writer.close()
            return
        raise BrokerError(f"cannot reach NATS at {'; '.join(errors)}; {START_HINT}")

    async def close(self) -> None:
        self.closed = True
        for task in list(self._drains):
            task.cancel()
        nc, self._nc = self._nc, None
        if nc is not None:
            await _quietly_close(nc)

    def _client(self) -> NATS:
        if self._nc is None or self.closed:
            raise BrokerError("the broker is closed")
        return self._nc

    # -- requests ----------------------------------------------------------------------

    async def request(self, subject: str, payload: bytes = b"",
                      headers: dict[str, str] | None = None, *, retry: bool = True,
                      timeout: float | None = None,
                      still_wanted: Callable[[], bool] | None = None) -> Msg:
        """A request-reply, retried with backoff until `timeout` when `retry` (and while
        `still_wanted()`, for acks whose receipt may turn stale)."""
        deadline = time.monotonic() + (timeout or self.request_timeout_s)
        pause = 0.02
        while True:
            nc = self._client()
            remaining = deadline - time.monotonic()
            try:
                return await nc.request(subject, payload, headers=headers,
                                        timeout=max(0.01, min(remaining, PER_TRY_S)))
            except _RETRYABLE as exc:
                if self.closed:
                    raise BrokerError("the broker is closed") from exc
                if (not retry or time.monotonic() + pause >= deadline
                        or (still_wanted is not None and not still_wanted())):
                    raise self._failure(subject, exc) from exc
            except nats.errors.Error as exc:
                raise self._failure(subject, exc) from exc
            await asyncio.sleep(pause * (0.5 + random.random() / 2))
            pause = min(pause * 2, 0.5)

    def _failure(self, subject: str, exc: BaseException) -> BrokerError:
        if isinstance(exc, nats.errors.NoRespondersError):
            return BrokerError(f"no JetStream responder for {subject} on {self.where}: is "
                               "the server running with JetStream (`nats-server -js`)?")
        what = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
        return BrokerError(f"NATS request to {subject} on {self.where} failed: {what}")

    async def api(self, name: str, body: dict[str, Any] | None = None, *,
                  retry: bool = True) -> dict[str, Any]:
        """A JetStream API call ($JS.API.<name>); its error answer raised as JetStreamError."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self.request(f"$JS.API.{name}", payload, retry=retry)
        try:
            resp: dict[str, Any] = json.loads(msg.data)
        except ValueError as exc:
            raise BrokerError(f"bad JetStream answer to {name}: {msg.data[:200]!r}") from exc
        if "error" in resp:
            raise JetStreamError(name.split(".", 2)[0].lower(), resp["error"])
        return resp

    async def publish(self, subject: str, body: bytes,
                      headers: dict[str, str]) -> tuple[int, bool]:
        """Store a message; (stream sequence, duplicate) once the server acknowledged it.
        Retried: every publish carries a Nats-Msg-Id or an expected-revision header."""
        msg = await self.request(subject, body, headers)
        try:
            ack = json.loads(msg.data)
        except ValueError as exc:
            raise BrokerError(f"bad publish acknowledgement on {subject}: "
                              f"{msg.data[:200]!r}") from exc
        if "error" in ack:
            raise JetStreamError(f"publish to {subject}", ack["error"])
        return int(ack["seq"]), bool(ack.get("duplicate", False))

    async def direct_get(self, stream: str, query: dict[str, Any]) -> Msg | None:
        """One stored message (`seq`, `next_by_subj`, `last_by_subj`), None if none."""
        msg = await self.request(f"$JS.API.DIRECT.GET.{stream}", json.dumps(query).encode())
        status = _status(msg)
        if status == "404":
            return None
        if status is not None:
            described = (msg.headers or {}).get("Description", "")
            raise JetStreamError(f"direct get on {stream}", {"code": status,
                                                             "description": described})
        return msg

    async def settle(self, reply: str, payload: bytes, *, retry: bool = False,
                     still_wanted: Callable[[], bool] | None = None) -> bool:
        """Ack / nak on a delivery's subject; True once the server answered (it answers
        those that carry a reply subject). Retry only acks: a repeated nak could land
        after the message was handed to someone else, and re-time their delivery."""
        try:
            await self.request(reply, payload, retry=retry, still_wanted=still_wanted)
            return True
        except BrokerError:
            if self.closed:
                raise
            return False

    # -- pull requests -----------------------------------------------------------------

    async def pull(self, stream: str, consumer: str, batch: int, *,
                   wait_s: float = 0.0) -> list[Msg]:
        """Up to `batch` deliveries from a pull consumer: those available now
        (wait_s = 0), or waiting up to `wait_s` for the batch to fill.

        Each request has its own inbox (deliveries arrive under their stored subject, so
        only the subscription tells requests apart). If the caller stops before the
        server ended the request (cancelled, or no answer in time), the inbox stays
        open until the request expires and nak's whatever still arrives, so nothing
        waits out its ack wait unseen. Waiting is `asyncio.timeout` on our own queue:
        nats-py's next_msg (a task under 3.11's wait_for) can swallow a cancellation
        that races an arriving message, and a cancelled receive must stop."""
        nc = self._client()
        inbox = nc.new_inbox()
        req: dict[str, Any] = {"batch": batch}
        if wait_s > 0:
            req["expires"] = int(wait_s * 1e9)
        else:
            req["no_wait"] = True
        box: asyncio.Queue[Msg] = asyncio.Queue()

        async def arrived(msg: Msg) -> None:
            box.put_nowait(msg)

        try:
            sub = await nc.subscribe(inbox, cb=arrived)
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                             json.dumps(req).encode(), reply=inbox)
        except nats.errors.Error as exc:
            raise self._failure(f"consumer {consumer} of {stream}", exc) from exc
        out: list[Msg] = []
        ended = False
        try:
            deadline = time.monotonic() + wait_s + self.request_timeout_s
            while len(out) < batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        msg = await box.get()
                except TimeoutError:
                    break  # no answer at all: the server went away; the caller sees none
                status = _status(msg)
                if status is None:
                    out.append(msg)
                elif status == "503":
                    ended = True
                    raise self._failure(f"consumer {consumer} of {stream}",
                                        nats.errors.NoRespondersError())
                elif status != "100":
                    ended = True  # 404 / 408: no (more) messages; 409: ended by the server
                    break
            else:
                ended = True  # the batch is full: the request is done
            return out
        finally:
            if ended:
                await _quietly_unsubscribe(sub)
            else:
                task = asyncio.ensure_future(
                    self._drain(sub, box, wait_s + self.request_timeout_s))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)

    async def _drain(self, sub: Any, box: asyncio.Queue[Msg], seconds: float) -> None:
        """Release deliveries of an abandoned pull request until the server ends it."""
        deadline = time.monotonic() + seconds
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        msg = await box.get()
                except TimeoutError:
                    break
                if _status(msg) is None:
                    await self._release(msg)
                elif _status(msg) != "100":
                    break
        finally:
            await _quietly_unsubscribe(sub)

    async def _release(self, msg: Msg) -> None:
        if msg.reply and self._nc is not None and not self.closed:
            try:
                await self._nc.publish(msg.reply, b"-NAK")
            except nats.errors.Error:
                pass  # it becomes visible again when its ack wait ends


async def _quietly_unsubscribe(sub: Any) -> None:
    try:
        await sub.unsubscribe()
    except (nats.errors.Error, OSError):
        pass


async def _quietly_close(nc: NATS) -> None:
    try:
        await nc.close()
    except (nats.errors.Error, OSError, asyncio.TimeoutError):
        pass

"""Test an app from pytest without starting servers.

    from squall.testing import TestClient
    from myapp import app

    def test_create_order():
        with TestClient(app) as client:
            r = client.post("/orders", json={"id": "o1", "items": [...]})
            assert r.status_code == 201
            assert client.invoke("quote", {"items": [...]}).output == {...}
            assert "created o1" in client.logs("create_order")

Two modes, one API:

* `TestClient(app)` runs handlers in the test process (like Chalice's test client): fast,
  and monkeypatching, breakpoints and coverage work. Timeouts are enforced by abandoning
  the call (the thread cannot be killed); memory limits and crashes are not simulated.
* `TestClient(app, isolated=True)` runs the real runtime: the zygote, forked workers,
  timeouts that kill, memory limits, crash recovery. The app must live in an importable
  file (it is imported again in the zygote).

Either way requests go through the real gateway (routing, 404/405/413, JSON errors,
request ids), called in-process as an ASGI app.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..app import App
from ..backends.sqlite.broker import SqliteBroker
from ..config import RuleConfig, Subscription
from ..gateway.asgi import Gateway
from ..sources.access import AccessPolicy
from ..sources.ingress import Ingress, IngressSettings
from ..sources.messaging import Messaging
from ..sources.queue import BatchOutcome
from ..sources.state import StateService
from ..sources.webhooks import Webhooks
from ..types import InvocationResult
from .local import LocalInvoker

__all__ = ["TestClient", "TestResponse", "FunctionFailed"]


class FunctionFailed(AssertionError):
    """`invoke(..., check=True)` and the function failed."""


class TestResponse:
    __test__ = False  # not a pytest test class

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = status
        self.header_list = headers
        self.headers = {k: v for k, v in headers}
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")

    def __repr__(self) -> str:
        return f"<TestResponse {self.status_code}>"


class _Loop:
    """A private event loop on a thread, so sync tests can drive async machinery."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="squall-testing",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class TestClient:
    __test__ = False

    def __init__(self, app: App | str, *, isolated: bool = False,
                 expose_errors: bool = True, max_workers: int = 16,
                 clock: Any = None, seed: int = 0, cache_url: str | None = None) -> None:
        self.app = app
        self.isolated = isolated
        # time for queues, delays and retries: a FakeClock makes them deterministic
        self.clock = clock if clock is not None else time.time
        self._rand = random.Random(seed).random
        self.expose_errors = expose_errors
        self.max_workers = max_workers
        self.results: list[InvocationResult] = []
        self.cache_url = cache_url  # None: the embedded cache; "redis://…" for Redis
        self.state: Any = None
        self._loop: _Loop | None = None
        self._invoker: Any = None
        self._gateway: Gateway | None = None
        self._ingress: list[Ingress] = []

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> TestClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self.isolated and not isinstance(self.app, App):
            raise TypeError("an in-process TestClient needs an App object; pass "
                            "isolated=True to load one by reference")
        self._loop = _Loop()
        self._tmp = tempfile.TemporaryDirectory(prefix="squall-test-")
        self.broker = SqliteBroker(Path(self._tmp.name) / "broker.db", clock=self.clock,
                                   synchronous="NORMAL")
        app_name = self.app.name if isinstance(self.app, App) else "app"
        self.state = StateService.for_data_dir(
            Path(self._tmp.name) / "state", cache_url=self.cache_url, clock=self.clock,
            app=f"{app_name}:{uuid.uuid4().hex[:12]}", synchronous="NORMAL")
        if self.isolated:
            from ..runtime.runtime import Runtime

            ref = self.app if isinstance(self.app, str) else _ref_of(self.app)
            runtime = Runtime(ref, on_result=self._record, max_workers=self.max_workers)
            manifest = self._loop.run(runtime.start(), 60)
            self._invoker = runtime
            configs = runtime.configs
            runtime.services["send"] = lambda payload: self.messaging.send(*payload)
            runtime.services["invoke_async"] = lambda p: self.messaging.invoke_async(*p)
            runtime.services["publish"] = lambda entry: self.messaging.publish(entry)
            runtime.services["notify"] = lambda m: self.messaging.notify(m)
            runtime.services["idempotency"] = lambda p: self.messaging.idempotency(*p)
            runtime.services["put_records"] = lambda p: self.messaging.put_records(*p)
            runtime.caller_services["state"] = self.state.serve
        else:
            services = {
                "send": lambda q, msgs: self._loop.run(self.messaging.send(q, msgs)),
                "invoke_async": lambda f, b, t=None: self._loop.run(
                    self.messaging.invoke_async(f, b, t)),
                "publish": lambda e: self._loop.run(self.messaging.publish(e)),
                "notify": lambda m: self._loop.run(self.messaging.notify(m)),
                "idempotency": lambda op, a: self._loop.run(self.messaging.idempotency(op, a)),
                "put_records": lambda st, it, t=None: self._loop.run(
                    self.messaging.put_records(st, it, t)),
                "state": self.state.call,
            }
            self._invoker = LocalInvoker(self.app, on_result=self._record, services=services)
            manifest = self.app.manifest()
            configs = {f.name: f.config for f in self.app.functions.values()}
        self.messaging = Messaging(self.broker, self._invoker.invoke, clock=self.clock,
                                   rand=self._rand)
        self.messaging.configure(
            configs, [RuleConfig.from_manifest(r) for r in manifest.get("rules", [])],
            [Subscription(**s) for s in manifest.get("subscriptions", [])])
        self.manifest = manifest
        self.state.configure(manifest)
        self.state.attach(self._invoker.invoke, self.broker, configs, clock=self.clock,
                          rand=self._rand)
        # feeds are not run live here: drain() runs them (and the sweepers) deterministically
        self._loop.run(self.state.start(live=False, sweep_interval_s=None))
        self.configs = configs
        self.policy = AccessPolicy(configs)  # least privilege (uses=), as in the supervisor
        self.state.policy = self.policy
        self._invoker.authorize = self.policy.check_call
        self.webhooks = Webhooks(self.messaging, configs, clock=self.clock)
        from ..security.wiring import attach_security  # keys, secrets: under the temp dir
        from .local import current_function

        self.security = attach_security(self._invoker, manifest, self._tmp.name,
                                        caller=None if self.isolated else current_function)
        self._gateway = Gateway(self._invoker, manifest, expose_errors=self.expose_errors,
                                webhooks=self.webhooks, security=self.security)
        from ..workflows.wiring import Orchestration  # workflows and the event store

        self.orchestration = Orchestration(
            Path(self._tmp.name) / "orchestration", self._invoker.invoke, manifest,
            clock=self.clock, synchronous="NORMAL")
        self.workflows, self.events = self.orchestration.engine, self.orchestration.events
        if self.isolated:
            self.orchestration.attach_runtime(self._invoker.services)
        else:
            self.orchestration.attach_local(self._invoker.services, self._loop.run)
        self.orchestration.attach_messaging(self.messaging)
        self._loop.run(self.orchestration.start(live=False))

    def start_sources(self, *, mqtt_url: str | None = None, smtp_port: int = 0,
                      smtp_max_bytes: int | None = None, mqtt_client_id: str | None = None,
                      shared: bool = False) -> Ingress:
        """Start the app's MQTT subscriptions and SMTP server (port 0: any free port, see
        `.smtp.port`), as `squall dev` does. Received messages wait durably on the
        functions' queues: `drain()` runs them. Stopped when the client closes."""
        assert self._loop is not None, "use `with TestClient(...)`"
        settings = IngressSettings.from_env(
            {}, mqtt_url=mqtt_url, smtp_port=smtp_port, smtp_max_bytes=smtp_max_bytes,
            mqtt_client_id=mqtt_client_id or f"squall-test-{uuid.uuid4().hex[:12]}",
            shared=shared)
        ingress = Ingress(self.broker, self.state, self.configs, settings,
                          app=self.manifest["app"], clock=self.clock)
        self._ingress.append(ingress)
        self._loop.run(ingress.start(), 30)
        return ingress

    def close(self) -> None:
        if self._loop is None:
            return
        for ingress in self._ingress:
            self._loop.run(ingress.stop(), 30)
        self._ingress.clear()
        if getattr(self, "orchestration", None) is not None:
            self._loop.run(self.orchestration.stop(), 30)
            self.orchestration.close()
        if self.state is not None:
            self._loop.run(self.state.stop(), 30)
            if self.cache_url:  # a shared cache (Redis): leave nothing of this test behind
                for name in self.manifest.get("state", {}).get("caches", []):
                    self.state.cache.cache_clear(name["name"])
            self.state.close()
        self._loop.run(self.broker.close(), 30)
        self._tmp.cleanup()
        if self.isolated and self._invoker is not None:
            self._loop.run(self._invoker.stop(), 30)
        elif self._invoker is not None:
            self._invoker.close()
        self._loop.close()
        self._loop = None

    @property
    def runtime(self) -> Any:
        """The real `Runtime` (isolated mode only): pools, workers, stats."""
        if not self.isolated:
            raise AttributeError("only an isolated TestClient has a runtime")
        return self._invoker

    def call(self, fn: Any, timeout: float = 60.0) -> Any:
        """Run `fn()` (sync or returning a coroutine) on the client's event loop."""
        assert self._loop is not None

        async def go() -> Any:
            out = fn()
            return await out if asyncio.iscoroutine(out) else out

        return self._loop.run(go(), timeout)

    def _record(self, result: InvocationResult, kind: str) -> None:
        self.results.append(result)

    # -- HTTP ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, data: bytes | str | None = None,
                headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                timeout: float = 60.0) -> TestResponse:
        assert self._loop is not None and self._gateway is not None, "use `with TestClient(...)`"
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs.setdefault("content-type", "application/json")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else data
        hdrs.setdefault("host", "testserver")
        hdrs["content-length"] = str(len(body))
        path, _, query = path.partition("?")
        if params:
            query = (query + "&" if query else "") + urlencode(params, doseq=True)
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method.upper(), "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in hdrs.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        return self._loop.run(_call_asgi(self._gateway, scope, body), timeout)

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> TestResponse:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> TestResponse:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> TestResponse:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> TestResponse:
        return self.request("DELETE", path, **kw)

    # -- functions -------------------------------------------------------------------

    def invoke(self, function: str, data: Any = None, *, check: bool = False,
               timeout: float = 60.0) -> InvocationResult:
        """Invoke a function with `data`; the result carries output, error and metering."""
        assert self._loop is not None, "use `with TestClient(...)`"
        result = self._loop.run(
            self._invoker.invoke(function, "event", jsonlib.dumps(data),
                                 request_id=str(uuid.uuid4())),
            timeout,
        )
        if check and not result.ok:
            raise FunctionFailed(f"{function} failed: {result.error_type}: {result.error_message}")
        return result

    # -- queues --------------------------------------------------------------------

    def send(self, queue: str, data: Any, *, delay_s: float = 0, dedup_key: str | None = None,
             attributes: dict[str, str] | None = None) -> str:
        """Put a message on one of the app's queues (as `app.send` would)."""
        assert self._loop is not None, "use `with TestClient(...)`"
        body = jsonlib.dumps(data)
        (mid,) = self._loop.run(self.messaging.send(queue, [
            {"body": body, "delay_s": delay_s, "dedup_key": dedup_key,
             "attributes": attributes or {}}]))
        return mid

    def invoke_async(self, function: str, data: Any = None) -> str:
        """Queue an asynchronous invocation (run it with `drain()`); returns its id."""
        assert self._loop is not None, "use `with TestClient(...)`"
        return self._loop.run(self.messaging.invoke_async(function, jsonlib.dumps(data)))

    def publish(self, source: str, detail_type: str, detail: Any = None) -> str:
        """Put an event on the bus (as `app.publish` would); run deliveries with `drain()`."""
        assert self._loop is not None, "use `with TestClient(...)`"
        entry = jsonlib.dumps({"source": source, "detail-type": detail_type,
                               "detail": detail if detail is not None else {}})
        return self._loop.run(self.messaging.publish(entry))

    def notify(self, topic: str, message: Any, *, subject: str | None = None,
               attributes: dict[str, Any] | None = None) -> str:
        """Publish to a topic (as `app.notify` would); run deliveries with `drain()`."""
        assert self._loop is not None, "use `with TestClient(...)`"
        body = jsonlib.dumps({"topic": topic, "message": message, "subject": subject,
                              "attributes": attributes or {}})
        return self._loop.run(self.messaging.notify(body))

    def put_records(self, stream: str, records: list[tuple[str, Any]]) -> list[str]:
        """Append (partition_key, data) records to a stream; run consumers with `drain()`."""
        assert self._loop is not None, "use `with TestClient(...)`"
        items = [[k, jsonlib.dumps(d)] for k, d in records]
        return self._loop.run(self.messaging.put_records(stream, items))

    def replay(self, start: float, end: float, *, rule: str | None = None) -> int:
        """Replay archived bus events from [start, end) (epoch seconds of the clock)."""
        assert self._loop is not None, "use `with TestClient(...)`"
        return self._loop.run(self.messaging.replay(start, end, rule=rule))

    def drain(self) -> Any:
        """Run every queued message that is visible now, and whatever that causes, to
        completion; returns counts of succeeded, retried and dead-lettered messages.
        Retries wait for their backoff, and durable timers (a workflow's `wf.sleep` or
        signal timeout, a state machine's long Wait) for their time: advance the clock,
        then drain again (each round fires what is due by the clock, once)."""
        assert self._loop is not None, "use `with TestClient(...)`"
        total = BatchOutcome()
        while True:
            queued = self._loop.run(self.messaging.drain(), 300)
            fed = self._loop.run(self.state.drain(), 300)
            # durable timers fired, outcomes handed to destinations: either may have
            # queued something
            fired = self._loop.run(self.orchestration.drain(), 300)
            total = BatchOutcome(*(a + b + c for a, b, c in zip(
                (total.succeeded, total.retried, total.dead_lettered),
                (queued.succeeded, queued.retried, queued.dead_lettered),
                (fed.succeeded, fed.retried, fed.dead_lettered))))
            # quiet only when a whole round did nothing: a workflow step run by the
            # orchestration drain (a timer fired) may have published or sent something
            if not any((fired, fed.succeeded, fed.retried, fed.dead_lettered,
                        queued.succeeded, queued.retried, queued.dead_lettered)):
                return total

    def sweep(self) -> dict[str, int]:
        """Run the state sweepers now, by the client's clock: TTL expiry of table items,
        bucket lifecycle rules, feed retention, expired cache entries."""
        assert self._loop is not None, "use `with TestClient(...)`"
        return self._loop.run(self.state.sweep(), 300)

    def storage_usage(self) -> dict[str, dict[str, dict[str, int]]]:
        """Bytes and objects per bucket and storage tier."""
        return self.state.usage()

    def dead_letters(self, queue: str) -> list[Any]:
        """What is in `queue`'s dead-letter queue (`queue` may name either)."""
        consumer = self.messaging.consumers.get(queue)
        dlq = consumer.trigger.dead_letter_queue if consumer else queue
        return self._loop.run(self.broker.peek(dlq, 10000))

    def queue_stats(self, queue: str) -> Any:
        return self._loop.run(self.broker.stats(queue))

    def invocations(self, function: str | None = None) -> list[InvocationResult]:
        return [r for r in self.results if function is None or r.function == function]

    def logs(self, function: str | None = None) -> str:
        """Everything the function(s) printed or logged, across invocations, in order."""
        return "".join(r.logs for r in self.invocations(function))


def _ref_of(app: App) -> str:
    if app.file:
        return app.file
    if app.module and app.module != "__main__":
        return app.module
    raise ValueError(f"cannot tell where app {app.name!r} is defined; pass its file path")


async def _call_asgi(app: Any, scope: dict, body: bytes) -> TestResponse:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a disconnect never comes
        return {"type": "http.disconnect"}  # pragma: no cover

    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def send(message: dict) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return TestResponse(status, headers, b"".join(chunks))

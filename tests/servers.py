"""Run a real Squall supervisor (uvicorn on loopback) on a thread, for tests."""

from __future__ import annotations

import asyncio
import threading

from squall.observe import logs
from squall.server import ServeOptions, Supervisor


class RunningServer:
    def __init__(self, app_ref: str, data_dir: str, **opts) -> None:
        self.sup = Supervisor(app_ref, ServeOptions(port=0, data_dir=data_dir, **opts))
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def go() -> None:
            waiter = asyncio.ensure_future(self._signal_ready())
            try:
                await self.sup.run()
            finally:
                waiter.cancel()
                self.ready.set()

        try:
            self.loop.run_until_complete(go())
        except BaseException as exc:  # surfaced to the test
            self.error = exc
        finally:
            self.loop.close()

    async def _signal_ready(self) -> None:
        await self.sup.started.wait()
        self.ready.set()

    def __enter__(self) -> RunningServer:
        logs.setup("warning")
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError(f"the server did not start: {self.error!r}")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sup.port}"

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.sup.stop)
        self.thread.join(30)


def wait_until(predicate, timeout: float, what: str, *, every: float = 0.05) -> None:
    """Poll a condition on another process's state (files, databases), bounded in time."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)

"""Where the dashboard's data comes from: the running app's own backends.

`Sources` reads a started `squall.stack.AppStack` (or anything with the same attributes:
runtime, broker, messaging, orchestration, opts), through properties, so a hot reload's
new manifest and configs show at once. The invocation log is opened per request (it is
written by the log-writer process; a short-lived reader holds nothing across requests).
"""

from __future__ import annotations

import asyncio
from contextlib import closing
from typing import Any, Callable, TypeVar

from ..backends import open_store
from ..config import FunctionConfig

T = TypeVar("T")


class Sources:
    def __init__(self, stack: Any) -> None:
        self.stack = stack

    @property
    def manifest(self) -> dict[str, Any]:
        return self.stack.runtime.manifest

    @property
    def app(self) -> str:
        return self.manifest["app"]

    @property
    def configs(self) -> dict[str, FunctionConfig]:
        return self.stack.runtime.configs

    @property
    def broker(self) -> Any:
        return self.stack.broker

    @property
    def messaging(self) -> Any:
        return self.stack.messaging

    @property
    def workflow_store(self) -> Any:
        return self.stack.orchestration.workflow_store

    def pools(self) -> dict[str, Any]:
        return self.stack.runtime.stats()

    async def with_store(self, read: Callable[[Any], T]) -> T:
        """Run `read(store)` on the invocation log, off the event loop."""
        url = self.stack.opts.store

        def go() -> T:
            with closing(open_store(url)) as store:
                return read(store)

        return await asyncio.to_thread(go)

    async def with_workflows(self, read: Callable[[Any], T]) -> T:
        store = self.workflow_store
        return await asyncio.to_thread(read, store)

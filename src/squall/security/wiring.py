"""Attach gateway security to a running app: the key and secret stores (under its data
directory, or in the app store the nodes share: squall.security.stores), the `secret`
service workers call, and redaction of secret values from the invocation log and traces.
Called by squall.stack (squall run/dev/worker) once the manifest is known."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from .guard import GatewaySecurity
from .redact import Redactor
from .secrets import SecretService
from .stores import SecurityStores, open_security


def declared_secrets(manifest: dict[str, Any]) -> dict[str, list[str]]:
    return dict((manifest.get("security") or {}).get("secrets") or {})


def attach_security(runtime: Any, manifest: dict[str, Any], data_dir: str | Path, *,
                    caller: Callable[[], str | None] | None = None,
                    stores: SecurityStores | None = None) -> GatewaySecurity:
    """`caller`: for an in-process invoker (squall.testing), which function is calling;
    a real runtime knows it from the worker's pool. `stores`: opened already (the shared
    ones, checked at start: squall.stack); None: the files under `data_dir`."""
    if stores is None:
        stores = open_security(data_dir)
    store = stores.secrets
    declared = declared_secrets(manifest)
    service = SecretService(store, declared)

    redactor = Redactor(store.values({n for names in declared.values() for n in names}))

    def serve(who: str | None, name: Any) -> str:
        value = service.get(who, name)
        redactor.add([value])  # whatever a function was given is masked from then on
        return value

    async def secret(payload: Any, who: str | None) -> str:  # a file or store read: off the loop
        return await asyncio.get_running_loop().run_in_executor(
            None, serve, who, payload[0] if isinstance(payload, list) and payload else None)

    if caller is None:
        runtime.caller_services["secret"] = secret
    else:
        runtime.services["secret"] = lambda payload: serve(caller(), payload[0])
    if not declared:  # no function may read a secret: nothing to mask, no cost
        pass
    elif hasattr(runtime, "redact"):  # the real runtime: logs, traces, errors
        runtime.redact = redactor.result
    elif runtime.on_result is not None:  # in-process tests: the invocation log
        record = runtime.on_result
        runtime.on_result = lambda result, kind: record(redactor.result(result), kind)
    security = GatewaySecurity(runtime, keys=stores.keys, secrets=store, quotas=stores.quotas)
    security.on_close = stores.close
    security.on_configure = lambda manifest: setattr(service, "declared",
                                                     declared_secrets(manifest))
    return security

"""Attach gateway security to a running app: the key and secret stores under its data
directory, the `secret` service workers call, and redaction of secret values from the
invocation log and traces. Called by squall.stack (squall run/dev) once the manifest is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .guard import GatewaySecurity
from .keys import KeyStore
from .redact import Redactor
from .secrets import SecretService, SecretStore


def declared_secrets(manifest: dict[str, Any]) -> dict[str, list[str]]:
    return dict((manifest.get("security") or {}).get("secrets") or {})


def attach_security(runtime: Any, manifest: dict[str, Any], data_dir: str | Path, *,
                    caller: Callable[[], str | None] | None = None) -> GatewaySecurity:
    """`caller`: for an in-process invoker (squall.testing), which function is calling;
    a real runtime knows it from the worker's pool."""
    keys = KeyStore.for_data_dir(data_dir)
    store = SecretStore.for_data_dir(data_dir)
    declared = declared_secrets(manifest)
    service = SecretService(store, declared)

    redactor = Redactor(store.values({n for names in declared.values() for n in names}))

    def serve(who: str | None, name: Any) -> str:
        value = service.get(who, name)
        redactor.add([value])  # whatever a function was given is masked from then on
        return value

    async def secret(payload: Any, who: str | None) -> str:
        return serve(who, payload[0] if isinstance(payload, list) and payload else None)

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
    security = GatewaySecurity(runtime, keys=keys, secrets=store)
    security.on_configure = lambda manifest: setattr(service, "declared",
                                                     declared_secrets(manifest))
    return security

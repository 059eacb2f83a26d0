"""`@app.idempotent`: run a piece of work once per key, however often its event arrives.

    @app.idempotent(key=lambda order, msg_id: msg_id, expires_s=24 * 3600)
    def charge(order, msg_id):
        ...                                  # runs once per msg_id; repeats get the result

The key is a function of the call's arguments (default: a hash of all of them, as JSON).
The first call claims the key (locked for `lock_s`), runs, and stores its JSON result for
`expires_s`; a repeat gets the stored result without running; a concurrent repeat raises
`IdempotencyInProgress` (so a queue retries it later); a failed run releases the key. A
run that died holding the claim is taken over once the lock expires; inside a function
the lock never outlasts the invocation's timeout. Reusing a key with
different arguments raises `IdempotencyKeyMismatch`. The records live in the app's store.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from typing import Any, Callable


class IdempotencyInProgress(RuntimeError):
    """Another run holds this key; retry later."""


class IdempotencyKeyMismatch(ValueError):
    """The key was already used with different arguments."""


def _canonical(args: tuple, kwargs: dict) -> str:
    return json.dumps([list(args), kwargs], sort_keys=True, separators=(",", ":"), default=str)


LOCK_MARGIN_S = 0.5


def _lock_for(binding: Any, lock_s: float) -> float:
    """The claim lasts at most until the invocation's timeout (plus the time its kill takes):
    a run killed at its deadline cannot hold a key past it (as Powertools does with the
    Lambda context's remaining time), so the retry that follows may take the key over."""
    remaining = getattr(binding, "remaining_s", None)
    left = remaining() if remaining is not None else None
    if left is None:
        return lock_s
    return max(0.001, min(lock_s, left + LOCK_MARGIN_S))


def make_decorator(app: Any, key: Callable[..., Any] | str | None, expires_s: float,
                   lock_s: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if expires_s <= 0 or lock_s <= 0:
        raise ValueError("expires_s and lock_s must be > 0")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("@app.idempotent wraps plain functions; call async work from one")
        scope = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"

        def key_for(*args: Any, **kwargs: Any) -> tuple[str, str, Any]:
            """(record key, payload hash, user key) for a call."""
            payload_hash = hashlib.sha256(_canonical(args, kwargs).encode()).hexdigest()
            if callable(key):
                k = key(*args, **kwargs)
            elif isinstance(key, str):  # the name of an argument
                k = inspect.signature(fn).bind(*args, **kwargs).arguments[key]
            else:
                k = payload_hash
            return f"{app.name}:{scope}:{k}", payload_hash, k

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            full_key, payload_hash, k = key_for(*args, **kwargs)
            binding = app._invoker
            if binding is None:
                raise RuntimeError(f"app {app.name!r} is not running here: idempotent work "
                                   "needs a running app or squall.testing")
            state, stored = binding.idempotency("begin", [full_key, payload_hash,
                                                          _lock_for(binding, lock_s)])
            if state == "done":
                return json.loads(stored) if stored else None
            if state == "in_progress":
                raise IdempotencyInProgress(f"{scope}: key {k!r} is being processed by "
                                            "another run; retry later")
            if state == "mismatch":
                raise IdempotencyKeyMismatch(f"{scope}: key {k!r} was already used with "
                                             "different arguments")
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                binding.idempotency("release", [full_key])
                raise
            binding.idempotency("complete", [full_key, json.dumps(result, default=str),
                                             expires_s])
            return result

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return wrapper

    return decorate

"""The cache on Redis (`redis://host:port/db`): for several nodes, or a cache shared
with other programs. Each entry is a hash {v: value, e: expiry} under
`<prefix><namespace>:<key>`; every operation is one Lua script, so `incr` and
set-if-absent are atomic, and expiry is decided by the caller's clock (injectable, as in
the embedded cache) while Redis' own PEXPIRE, a minute later, reclaims the memory.

The `redis` package is imported here only (backends/ is the only place that talks to a
database client).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .base import StoreError
from .state import NotAnInteger

GC_MARGIN_MS = 60_000

_GET = """
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return false end
return redis.call('HGET', KEYS[1], 'v')
"""
_SET = """
local e = redis.call('HGET', KEYS[1], 'e')
local live = redis.call('EXISTS', KEYS[1]) == 1 and not (e and tonumber(e) <= tonumber(ARGV[1]))
if ARGV[4] == '1' and live then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'e', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
"""
_DEL = """
local e = redis.call('HGET', KEYS[1], 'e')
local live = redis.call('EXISTS', KEYS[1]) == 1 and not (e and tonumber(e) <= tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
if live then return 1 end
return 0
"""
_INCR = """
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'v', '0')
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'e', ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
end
local v = redis.call('HGET', KEYS[1], 'v')
if not string.match(v, '^%-?%d+$') then return redis.error_reply('NOTINT ' .. string.sub(v, 1, 40)) end
return redis.call('HINCRBY', KEYS[1], 'v', ARGV[2])
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCache:
    def __init__(self, url: str, *, prefix: str = "squall:",
                 clock: Callable[[], float] = time.time) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - a declared dependency
            raise StoreError("a redis:// cache needs the redis package: "
                             "pip install 'redis>=5'") from None
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._response_error = redis.exceptions.ResponseError
        self.url = url
        self.prefix = prefix
        self.clock = clock
        self._r = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self._get = self._r.register_script(_GET)
        self._set = self._r.register_script(_SET)
        self._del = self._r.register_script(_DEL)
        self._incr = self._r.register_script(_INCR)

    def _key(self, ns: str, key: str) -> str:
        return f"{self.prefix}{ns}:{key}"

    def _run(self, script: Any, ns: str, key: str, *args: Any) -> Any:
        try:
            return script(keys=[self._key(ns, key)], args=list(args))
        except self._errors as exc:
            from . import redact_url

            raise StoreError(f"cache at {redact_url(self.url)} is unreachable: {exc}") from exc
        except self._response_error as exc:
            if "NOTINT" in str(exc):
                raise NotAnInteger(f"cache {ns!r}: key {key!r} holds a value that is not a "
                                   "whole number; incr cannot add to it") from None
            raise StoreError(f"cache {ns!r}: {exc}") from exc

    def _expiry(self, now: float, ttl_s: float | None) -> tuple[str, int]:
        if ttl_s is None:
            return "", 0
        return repr(now + ttl_s), int(ttl_s * 1000) + GC_MARGIN_MS

    def cache_get(self, ns: str, key: str) -> bytes | None:
        value = self._run(self._get, ns, key, repr(self.clock()))
        return None if value is None else bytes(value)

    def cache_set(self, ns: str, key: str, value: bytes, ttl_s: float | None, *,
                  only_if_absent: bool = False) -> bool:
        now = self.clock()
        expires, gc_ms = self._expiry(now, ttl_s)
        return bool(self._run(self._set, ns, key, repr(now), value, expires,
                              "1" if only_if_absent else "0", gc_ms))

    def cache_delete(self, ns: str, key: str) -> bool:
        return bool(self._run(self._del, ns, key, repr(self.clock())))

    def cache_incr(self, ns: str, key: str, by: int, ttl_s: float | None) -> int:
        now = self.clock()
        expires, gc_ms = self._expiry(now, ttl_s)
        return int(self._run(self._incr, ns, key, repr(now), by, expires, gc_ms))

    def cache_clear(self, ns: str) -> int:
        pattern = _glob_escape(f"{self.prefix}{ns}:") + "*"
        n = 0
        try:
            batch = []
            for k in self._r.scan_iter(match=pattern, count=500):
                batch.append(k)
                if len(batch) >= 500:
                    n += self._r.delete(*batch)
                    batch = []
            if batch:
                n += self._r.delete(*batch)
        except self._errors as exc:
            raise StoreError(f"cache at {self.url}: {exc}") from exc
        return n

    def ping(self) -> None:
        try:
            self._r.ping()
        except self._errors as exc:
            from . import redact_url

            raise StoreError(f"cache at {redact_url(self.url)} is unreachable: {exc}") from exc

    def close(self) -> None:
        self._r.close()

"""The cache on a real Redis (127.0.0.1:6379) against the shared cache suite, and an app
using it through the TestClient. Skips when Redis is not running (fails under CI=true)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from squall import App
from squall.backends.redis_cache import RedisCache
from squall.testing import TestClient
from squall.testing.conformance import FakeClock
from squall.testing.state_conformance import CacheConformance

REDIS_URL = os.environ.get("SQUALL_TEST_REDIS", "redis://127.0.0.1:6379/0")
START = ("redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
         "--appendonly no")


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Redis is not answering on 127.0.0.1:6379 "
                        "(.ci/services starts it)")
        pytest.skip(f"Redis is not running on 127.0.0.1:6379; start it with: {START}")
    return REDIS_URL


class TestRedisCache(CacheConformance):
    @pytest.fixture
    def open_cache(self, redis_url):
        prefix = f"squall-test:{uuid.uuid4().hex}:"  # each test its own keys
        return lambda clock: RedisCache(redis_url, prefix=prefix, clock=clock)


def test_unreachable_redis_is_a_clear_error():
    from squall.backends.base import StoreError

    cache = RedisCache("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(StoreError, match=r"cache at redis://127.0.0.1:1/0 is unreachable"):
            cache.cache_get("ns", "k")
    finally:
        cache.close()


def test_an_app_cache_on_redis(redis_url):
    # Given an app whose cache is configured to be Redis
    app = App("redisapp")
    cache = app.cache("sessions", default_ttl_s=60)
    calls = []

    @app.function()
    def profile(event, ctx):
        def load():
            calls.append(event["user"])
            return {"user": event["user"], "plan": "pro"}

        return {"profile": cache.get_or_compute(f"profile:{event['user']}", load),
                "visits": cache.incr(f"visits:{event['user']}")}

    clock = FakeClock()
    with TestClient(app, clock=clock, cache_url=redis_url) as client:
        # When the function runs twice
        first = client.invoke("profile", {"user": "ann"}, check=True).output
        second = client.invoke("profile", {"user": "ann"}, check=True).output
        # Then the profile was computed once and the counter is shared
        assert first == {"profile": {"user": "ann", "plan": "pro"}, "visits": 1}
        assert second["visits"] == 2 and calls == ["ann"]
        # and the cache's default TTL (60 s) applies, by the client's clock
        clock.advance(61)
        assert client.invoke("profile", {"user": "ann"}, check=True).output["visits"] == 1
        assert calls == ["ann", "ann"]
        assert isinstance(client.state.cache, RedisCache)

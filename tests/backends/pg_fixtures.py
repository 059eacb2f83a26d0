"""The PostgreSQL the backend tests run against, and a throw-away schema per test.

The server is the one on this machine (127.0.0.1:5432, database `test`), or the URL in
SQUALL_TEST_POSTGRES_URL. When it is unreachable the PostgreSQL tests skip, saying how to
start it, except under CI=true where that is a failure.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

_reachable: dict[str, str | None] = {}  # url -> why it is unreachable (None: it is fine)


def postgres_url() -> str:
    """The test server's URL; skips (or fails under CI=true) when it is unreachable."""
    url = os.environ.get("SQUALL_TEST_POSTGRES_URL", DEFAULT_URL)
    if url not in _reachable:
        try:
            psycopg.connect(url, connect_timeout=3).close()
            _reachable[url] = None
        except psycopg.Error as exc:
            _reachable[url] = " ".join(str(exc).split())
    problem = _reachable[url]
    if problem is not None:
        message = (f"PostgreSQL is not reachable at {url} ({problem}): start it with "
                   "`pg_ctlcluster 15 main start`, or point SQUALL_TEST_POSTGRES_URL at one")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def unique_schema(url: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped afterwards, if made."""
    name = f"squall_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def terminate(url: str, application_name: str) -> int:
    """End every session with this application_name, as a server restart would, and wait
    until the server has ended them (it does so asynchronously). Returns how many."""
    with psycopg.connect(url, autocommit=True) as admin:
        pids = [pid for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,))]
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                            (pids,)).fetchone()[0]:
            time.sleep(0.005)
    return len(pids)

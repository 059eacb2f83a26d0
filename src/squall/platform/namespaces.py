"""Where each app's data lives on the shared backends (distributed mode).

On one machine an app's namespace is its own directory, `DATA_DIR/apps/NAME/` (its own
SQLite files). On shared backends it is a schema or prefix derived from the server's:

    postgresql://…?schema=squall   ->  …?schema=squall_app_shop     (tables, queues, log)
    nats://…?prefix=SQUALL         ->  …?prefix=SQUALL_APP_SHOP     (streams, subjects)

The registry itself stays in the server's own schema. Names that would pass PostgreSQL's
limit are cut and given a hash, so two long app names never share a schema.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode

MAX_SCHEMA = 48  # squall.backends.postgres.connect: room for "squall." in channel names


def _fit(name: str) -> str:
    if len(name) <= MAX_SCHEMA:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_SCHEMA - 9]}_{digest}"


def app_url(url: str | None, app: str) -> str | None:
    """The app's own namespace on the backend at `url` (None: the embedded default)."""
    if url is None or url.startswith("sqlite:"):
        return None
    base, _, query = url.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    ident = app.replace("-", "_")
    if url.split(":", 1)[0] in ("postgresql", "postgres"):
        params["schema"] = _fit(f"{params.get('schema', 'squall')}_app_{ident}")
    else:  # nats:// and tls://: every subject and stream name starts with the prefix
        params["prefix"] = f"{params.get('prefix', 'SQUALL')}_APP_{ident.upper()}"
    return f"{base}?{urlencode(params)}"


def schema_of(url: str) -> str | None:
    """The `?schema=` of a postgresql:// URL (as app_url made it), else None."""
    if url.split(":", 1)[0] not in ("postgresql", "postgres"):
        return None
    return dict(parse_qsl(url.partition("?")[2])).get("schema")

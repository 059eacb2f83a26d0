"""The broker's tables. Times are seconds since the epoch (double precision), from the
injected clock or the server's (see broker.py). Created idempotently on first use, in the
broker's schema, under the advisory lock of connect.ddl_prologue."""

from __future__ import annotations

# "now" in a statement: the injected clock's value when the `now` parameter is set, else
# the server's clock at the start of the transaction (broker.py says why)
NOW = "COALESCE(%(now)s::float8, extract(epoch FROM transaction_timestamp())::float8)"

TABLES = (
    # One row per message, in its queue or dead-letter queue. `receipt` is set for each
    # delivery ("<seq>.<random>") and compared on ack/nack/extend/dead_letter, so the
    # receipt of an earlier delivery no longer matches.
    """CREATE TABLE IF NOT EXISTS messages (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        queue text NOT NULL,
        body bytea NOT NULL,
        attributes jsonb NOT NULL,
        trace text,
        sent_at double precision NOT NULL,
        available_at double precision NOT NULL,
        receive_count integer NOT NULL DEFAULT 0,
        receipt text,
        last_error text,
        dlq_reason text,
        source_queue text)""",
    "CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, available_at, seq)",
    "CREATE INDEX IF NOT EXISTS messages_in_order ON messages (queue, seq)",
    """CREATE TABLE IF NOT EXISTS dedup (
        queue text NOT NULL,
        key text NOT NULL,
        message_id text NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (queue, key))""",
    """CREATE TABLE IF NOT EXISTS archive (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        time double precision NOT NULL,
        source text NOT NULL,
        detail_type text NOT NULL,
        body text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS archive_by_time ON archive (time, seq)",
    """CREATE TABLE IF NOT EXISTS schedule_ticks (
        schedule text PRIMARY KEY,
        last_tick double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS idempotency (
        key text PRIMARY KEY,
        status text NOT NULL,
        payload_hash text NOT NULL,
        result text,
        locked_until double precision NOT NULL,
        expires_at double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires_at double precision NOT NULL)""",
    # The last seq handed out per shard: appenders lock its row, so seqs are unique and
    # committed in order even with appenders on many nodes.
    """CREATE TABLE IF NOT EXISTS stream_shards (
        stream text NOT NULL,
        shard integer NOT NULL,
        last_seq bigint NOT NULL,
        PRIMARY KEY (stream, shard))""",
    """CREATE TABLE IF NOT EXISTS stream_records (
        stream text NOT NULL,
        shard integer NOT NULL,
        seq bigint NOT NULL,
        partition_key text NOT NULL,
        data bytea NOT NULL,
        arrival double precision NOT NULL,
        trace text,  -- the producer hop's traceparent; added on first use to older schemas
        PRIMARY KEY (stream, shard, seq))""",
    """CREATE TABLE IF NOT EXISTS stream_checkpoints (
        stream text NOT NULL,
        consumer text NOT NULL,
        shard integer NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (stream, consumer, shard))""",
)

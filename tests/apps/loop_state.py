"""Functions that write to the bucket or table that triggers them (recursive loops Squall
must stop after 16 passes), and a legitimate fan-out that must not be stopped; used by
tests/test_loop_objects_tables.py in-process and in real workers (isolated)."""

from __future__ import annotations

from squall import App


def make_app() -> App:
    app = App("loops")
    spins = app.bucket("spins")
    app.bucket("uploads")  # the fan-out's trigger (declared, not written here)
    parts = app.bucket("parts")
    counters = app.table("counters", key="id")
    tallies = app.table("tallies", key="id")

    @app.on_object("spins", prefix="put/", events=["created"])
    def spin(event, ctx):  # a bug: every object it writes triggers it again
        n = int(event.key.rsplit("/", 1)[1])
        spins.put(f"put/{n + 1}", b"again")

    @app.on_object("spins", prefix="copy/", events=["created"])
    def spin_copy(event, ctx):  # the same loop through copy
        n = int(event.key.rsplit("/", 1)[1])
        spins.copy(event.key, f"copy/{n + 1}")

    @app.on_change("counters", events=["insert"], batch_size=1)
    def count(changes, ctx):  # a bug: each insert inserts the next item
        for c in changes:
            counters.put({"id": c.new["id"] + 1})

    @app.on_change("tallies", events=["insert", "modify"], batch_size=1)
    def tally(changes, ctx):  # a bug: it updates the item whose change it handles
        for c in changes:
            tallies.update(c.keys["id"], increment={"n": 1})

    @app.on_object("uploads", events=["created"])
    def scatter(event, ctx):  # one upload, 20 distinct writes: a fan-out, not a loop
        for i in range(20):
            parts.put(f"{event.key}/part-{i:02d}", b"x")

    @app.on_object("parts", events=["created"])
    def gather(event, ctx):
        return event.key

    @app.function()
    def ping(data):
        return "pong"

    return app


app = make_app()

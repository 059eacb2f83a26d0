"""The multi-node state test's app: orders written and read over HTTP on any node, an
audit on_change that records each change it handles (with the node that ran it) in
COUNT_DB, a SQLite file shared by the nodes of this machine; and a bucket."""

import os
import sqlite3

from squall import App

app = App("clusterstate")
orders = app.table("orders", key="id")
files = app.bucket("files")


@app.http("PUT", "/orders/{id}")
def put_order(request):
    item = orders.put({**request.json(), "id": request.path_params["id"]})
    return 200, {"item": dict(item), "version": item.version}


@app.http("GET", "/orders/{id}")
def get_order(request):
    item = orders.get(request.path_params["id"])
    if item is None:
        return 404, {"error": "no such order"}
    return 200, {"item": dict(item), "version": item.version}


@app.http("PUT", "/files/{name}")
def put_file(request):
    info = files.put(request.path_params["name"], request.body)
    return 200, {"etag": info.etag}


@app.http("GET", "/files/{name}")
def get_file(request):
    obj = files.get(request.path_params["name"], range=(2, 5))
    return 200, {"range": obj.body.decode(), "etag": obj.etag}


@app.on_change("orders")
def audit(changes, ctx):
    db = sqlite3.connect(os.environ["COUNT_DB"], timeout=30, isolation_level=None)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS runs (sequence TEXT, event TEXT, id TEXT, "
                   "node TEXT)")
        for c in changes:
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (
                c.sequence, c.event, c.keys["id"], os.environ.get("SQUALL_NODE_ID", "")))
    finally:
        db.close()

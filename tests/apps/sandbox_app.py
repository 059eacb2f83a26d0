"""A function that reports which user it runs as and whether it can read a file."""

import os
from squall import App
app = App("sandbox")

@app.function()
def whoami(event, ctx):
    out = {"uid": os.getuid(), "gid": os.getgid()}
    try:
        open(event, "rb").read()
        out["read"] = True
    except PermissionError:
        out["read"] = False
    return out

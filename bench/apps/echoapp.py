"""The warm-HTTP benchmark's Squall app: a JSON echo route and a no-op function.

`echo` does exactly what the bare Starlette peer (bare_starlette.py) does: parse the
request body as JSON and answer with it as JSON. `noop` is for the dispatch benchmark
(supervisor -> worker round trips without HTTP).
"""

from squall import App

app = App("echobench")


@app.http("POST", "/echo")
def echo(request):
    return request.json()


@app.function()
def noop(event, ctx):
    return None

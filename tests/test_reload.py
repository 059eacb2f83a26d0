"""`squall dev` hot reload: an edit takes effect; a broken edit keeps the old version."""

from __future__ import annotations

import asyncio

import httpx

from servers import RunningServer

V1 = '''
from squall import App
app = App("reloadable")

@app.http("GET", "/version")
def version(request):
    return {"version": VERSION}

VERSION = 1
'''


def _wait_reload(server: RunningServer) -> None:
    async def wait() -> None:
        await asyncio.wait_for(server.sup.reloaded.wait(), 20)
        server.sup.reloaded.clear()

    server.run(wait(), timeout=25)


def test_edit_is_served_and_a_broken_edit_keeps_the_old_version(tmp_path):
    app_file = tmp_path / "app.py"
    app_file.write_text(V1)
    with RunningServer(str(app_file), str(tmp_path / "data"), reload=True) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/version").json() == {"version": 1}
            # Given a running dev server, When the file changes, Then the new code serves
            app_file.write_text(V1.replace("VERSION = 1", "VERSION = 2") + '''
@app.http("GET", "/new")
def new(request):
    return "new route"
''')
            _wait_reload(server)
            assert http.get("/version").json() == {"version": 2}
            assert http.get("/new").text == "new route"
            # When the edit does not import, Then the previous version keeps serving
            app_file.write_text(V1 + "\nthis is not python(\n")
            # a failed reload does not set `reloaded`; a later good edit does
            app_file.write_text(V1.replace("VERSION = 1", "VERSION = 3"))
            _wait_reload(server)
            assert http.get("/version").json() == {"version": 3}
            assert http.get("/new").status_code == 404


def test_broken_edit_does_not_take_the_server_down(tmp_path):
    app_file = tmp_path / "app.py"
    app_file.write_text(V1)
    with RunningServer(str(app_file), str(tmp_path / "data"), reload=True) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/version").json() == {"version": 1}
            gen = server.sup.runtime.generation
            app_file.write_text(V1 + "\nraise RuntimeError('broken on purpose')\n")

            server.run(asyncio.wait_for(server.sup.reload_failed.wait(), 20), timeout=25)
            assert server.sup.runtime.generation == gen
            assert http.get("/version").json() == {"version": 1}

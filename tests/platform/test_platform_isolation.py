"""Many apps side by side: each version on its own virtualenv (conflicting dependency
versions at once, none of the host's packages), its own zygote, its own data namespace;
and the quotas that bound what one app can take."""

from __future__ import annotations

import subprocess

import pytest
from platform_fixtures import RunningPlatform, venv_cache, wheel, write_app

from squall.platform.venvs import VenvBuilder

PINNED = """
from squall import App
import squallpin

app = App("{name}")

@app.http("GET", "/dep")
def dep(request):
    try:
        import starlette  # the host has it; an app that did not ask for it must not
        host = "visible"
    except ImportError:
        host = "hidden"
    return 200, {{"squallpin": squallpin.VERSION, "host_package": host}}
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "platform-wheels"
    for version in ("1.0", "2.0"):
        wheel(out, "squallpin", version, f'VERSION = "{version}"\n')
    return out


@pytest.mark.slow
def test_two_apps_with_conflicting_dependency_versions_run_side_by_side(
        tmp_path, tmp_path_factory, wheels):
    with pytest.raises(ImportError):
        import squallpin  # noqa: F401  (only the apps' virtualenvs have it)
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory),
                         pip_args=("--no-index", "--find-links", str(wheels))) as plat:
        # Given two apps pinning different versions of one package
        for name, pin in (("alpha", "1.0"), ("beta", "2.0")):
            app = write_app(tmp_path / name, PINNED.format(name=name),
                            requirements=f"squallpin=={pin}\n")
            r = plat.deploy(name, app)
            assert r.status_code == 201, r.text
            assert r.json()["venv_bytes"] > 0
        # and a third with the same requirements as the first: it shares its virtualenv
        same = plat.deploy("gamma", write_app(tmp_path / "gamma", PINNED.format(name="gamma"),
                                              requirements="# pinned\nsquallpin==1.0\n"))
        assert same.status_code == 201
        versions = {a: plat.control("GET", f"/apps/{a}/versions").json()["versions"][0]
                    for a in ("alpha", "beta", "gamma")}
        assert versions["alpha"]["venv"] == versions["gamma"]["venv"] != versions["beta"]["venv"]
        assert versions["gamma"]["venv_build_ms"] == 0  # from the cache
        # Then each serves its own version, and none sees the host's packages
        with plat.client() as c:
            assert c.get("/alpha/dep").json() == {"squallpin": "1.0", "host_package": "hidden"}
            assert c.get("/beta/dep").json() == {"squallpin": "2.0", "host_package": "hidden"}
        running = {a["name"]: a["node"]["running"][0]["zygote_pid"]
                   for a in plat.control("GET", "/apps").json()["apps"]}
        assert len(set(running.values())) == 3  # a zygote each
        # a requirement that cannot be installed rejects the deploy with pip's reason
        r = plat.deploy("alpha", write_app(tmp_path / "alpha3", PINNED.format(name="alpha"),
                                           requirements="squallpin==9.9\n"))
        assert r.status_code == 422
        assert "could not be installed" in r.json()["errorMessage"]
        assert "9.9" in r.json()["detail"]
        assert len(plat.control("GET", "/apps/alpha/versions").json()["versions"]) == 1


def test_venv_sees_squall_but_not_the_host_site_packages(tmp_path_factory):
    venv = VenvBuilder(venv_cache(tmp_path_factory)).build("")
    out = subprocess.run(
        [venv.python, "-c", "import squall.runtime.zygote, msgpack, importlib.util as u; "
         "print(u.find_spec('starlette') is None, u.find_spec('httpx') is None)"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


TABLES = """
from squall import App

app = App("{name}")
orders = app.table("orders", key="id")

@app.http("PUT", "/orders/{{id}}")
def put(request):
    orders.put({{"id": request.path_params["id"], "owner": "{name}"}})
    return 200, {{"ok": True}}

@app.http("GET", "/orders/{{id}}")
def get(request):
    return 200, {{"item": orders.get(request.path_params["id"])}}

@app.function()
def {name}_only(event, ctx):
    return "{name}"

@app.http("GET", "/invoke")
def invoke(request):
    try:
        return 200, {{"result": app.invoke(request.query["fn"], {{}})}}
    except Exception as exc:
        return 200, {{"error": str(exc)}}
"""


@pytest.mark.slow
def test_an_app_cannot_reach_another_apps_table_or_functions(tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as plat:
        for name in ("red", "blue"):
            assert plat.deploy(name, write_app(tmp_path / name, TABLES.format(name=name))
                               ).status_code == 201
        with plat.client() as c:
            # Given red wrote order 1 to its table "orders"
            assert c.put("/red/orders/1").status_code == 200
            assert c.get("/red/orders/1").json()["item"]["owner"] == "red"
            # Then blue's table of the same name does not have it
            assert c.get("/blue/orders/1").json() == {"item": None}
            assert c.put("/blue/orders/1").status_code == 200
            assert c.get("/red/orders/1").json()["item"]["owner"] == "red"
            # and blue cannot invoke red's function: it is not in blue's namespace
            assert c.get("/blue/invoke?fn=blue_only").json() == {"result": "blue"}
            err = c.get("/blue/invoke?fn=red_only").json()["error"]
            assert "no function 'red_only'" in err
            # nor by the app's name, unless red grants it
            err = c.get("/blue/invoke?fn=red/red_only").json()["error"]
            assert "may not invoke red/red_only" in err and "squall grant red blue" in err
            r = plat.control("PUT", "/apps/red/grants/blue", json={"functions": ["red_only"]})
            assert r.status_code == 200, r.text
            assert c.get("/blue/invoke?fn=red/red_only").json() == {"result": "red"}
            assert "may not invoke red/put" in c.get("/blue/invoke?fn=red/put").json()["error"]
            assert "may not invoke blue/blue_only" in c.get(
                "/red/invoke?fn=blue/blue_only").json()["error"]  # grants go one way
            assert plat.control("DELETE", "/apps/red/grants/blue").status_code == 200
            assert "may not invoke" in c.get("/blue/invoke?fn=red/red_only").json()["error"]
        # each app's data lives in its own directory
        data = tmp_path / "data" / "apps"
        assert sorted(p.name for p in data.iterdir()) == ["blue", "red"]


STORE = """
from squall import App

app = App("hog")
blobs = app.table("blobs", key="id")

@app.http("PUT", "/blob/{id}")
def put(request):
    blobs.put({"id": request.path_params["id"], "data": "x" * 200_000})
    return 200, {"ok": True}
"""


@pytest.mark.slow
def test_storage_and_concurrency_quotas_are_enforced_with_clear_errors(
        tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as plat:
        assert plat.deploy("hog", write_app(tmp_path / "hog", STORE)).status_code == 201
        r = plat.control("PUT", "/apps/hog/quotas", json={"storage_mb": 1})
        assert r.status_code == 200 and r.json()["storage_mb"] == 1
        bad = plat.control("PUT", "/apps/hog/quotas", json={"disk": 1})
        assert bad.status_code == 400 and "unknown quota disk" in bad.json()["errorMessage"]
        host = plat.platform.hosts["hog"]
        with plat.client() as c:
            assert c.put("/hog/blob/1").status_code == 200
            for i in range(2, 12):
                c.put(f"/hog/blob/{i}")
            host.storage.measure()  # the meter's next sweep, now
            assert host.storage.used_mb > 1
            r = c.put("/hog/blob/99")
            assert r.status_code == 507  # an uncaught state error keeps its status
            assert r.json()["code"] == "QuotaExceeded"  # squall.backends.state
            assert "1 MB storage quota" in r.json()["message"]
            # concurrency: at the quota, the next request is throttled with a JSON 429
            plat.control("PUT", "/apps/hog/quotas", json={"concurrency": 1})
            host.inflight = 1  # as if one request were in flight
            try:
                r = c.put("/hog/blob/1")
            finally:
                host.inflight = 0
            assert r.status_code == 429 and "concurrency quota of 1" in r.json()["errorMessage"]
        # a function declaring more memory than the app's quota is rejected at deploy
        plat.control("PUT", "/apps/hog/quotas", json={"memory_mb": 64})
        r = plat.deploy("hog", write_app(tmp_path / "hog2", STORE))
        assert r.status_code == 422 and "memory quota of 64 MB" in r.json()["errorMessage"]

"""Platform mode, end to end on a real `squall server`: deploy, zero-downtime activation,
draining, rollback, rejected deploys, the admin token, scale-to-zero, delete."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest
from platform_fixtures import AUTH, RunningPlatform, venv_cache, write_app
from servers import wait_until

from squall.platform.package import pack

WEB = """
import time
from squall import App

app = App("web")
VERSION = {version}

@app.http("GET", "/v", keep_warm_s=0)
def v(request):
    return 200, {{"v": VERSION}}

@app.http("GET", "/slow", keep_warm_s=0)
def slow(request):
    time.sleep(0.4)
    return 200, {{"v": VERSION}}
"""


def web(tmp_path: Path, version: int) -> Path:
    return write_app(tmp_path / f"web{version}", WEB.format(version=version))


@pytest.fixture
def plat(tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as p:
        yield p


def zygote_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


def slow_in_flight(plat) -> bool:
    """Version 1's `slow` function is running a request (read from the server's state)."""
    pools = plat.platform.hosts["web"].versions[1].stack.runtime.pools
    return any(w.inflight for w in list(pools["slow"].workers))


@pytest.mark.slow
def test_deploy_under_traffic_has_zero_failed_requests(plat, tmp_path):
    failures: list[str] = []
    # Given version 1 serving
    r = plat.deploy("web", web(tmp_path, 1))
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    old_zygote = plat.app_state("web")["node"]["running"][0]["zygote_pid"]
    v2 = pack(web(tmp_path, 2)).data

    async def drive() -> tuple[list[int], list[int], dict, httpx.Response]:
        statuses: list[int] = []
        seen: list[int] = []
        deployed: dict = {}
        async with httpx.AsyncClient(base_url=plat.url, timeout=30) as c:
            async def load() -> None:  # bounded: 5000 requests per loop or 30 s
                deadline = time.monotonic() + 30
                for _ in range(5000):
                    resp = await c.get("/web/v")
                    statuses.append(resp.status_code)
                    if resp.status_code != 200:
                        failures.append(resp.text)
                    if resp.status_code == 200:
                        seen.append(resp.json()["v"])
                    if (deployed and seen[-1:] == [2] and seen.count(2) >= 20) \
                            or time.monotonic() > deadline:
                        return

            loops = [asyncio.ensure_future(load()) for _ in range(4)]
            deadline = time.monotonic() + 20
            while len(statuses) < 20:  # traffic is flowing
                assert time.monotonic() < deadline, "traffic did not start"
                await asyncio.sleep(0.005)
            slow = asyncio.ensure_future(c.get("/web/slow"))  # 0.4 s on version 1
            while not slow.done() and not slow_in_flight(plat):
                await asyncio.sleep(0.002)
            assert not slow.done(), "the slow request ended before the deploy began"
            # When version 2 is deployed with traffic flowing
            resp = await c.post("/_platform/apps/web/versions", content=v2, headers=AUTH)
            deployed.update(resp.json())
            await asyncio.gather(*loops)
            return statuses, seen, deployed, await slow

    statuses, seen, deployed, slow = asyncio.run(drive())
    # Then no request failed, and traffic moved from 1 to 2 for good
    assert deployed["version"] == 2
    assert statuses and all(s == 200 for s in statuses), failures[:3]
    assert 1 in seen and seen.count(2) >= 20, (len(seen), seen.count(2))
    last_one = max(i for i, v in enumerate(seen) if v == 1)
    assert all(v == 2 for v in seen[last_one + 1:])
    # the request in flight during the switch finished on version 1
    assert slow.status_code == 200 and slow.json() == {"v": 1}
    # and version 1's zygote and workers are drained away
    wait_until(lambda: [r["version"] for r in plat.app_state("web")["node"]["running"]] == [2],
               10, "version 1 to be stopped")
    wait_until(lambda: not zygote_alive(old_zygote), 10, "version 1's zygote to exit")


@pytest.mark.slow
def test_rejected_deploy_changes_nothing_and_rollback_goes_back(plat, tmp_path):
    assert plat.deploy("web", web(tmp_path, 1)).status_code == 201
    assert plat.deploy("web", web(tmp_path, 2)).status_code == 201
    broken = write_app(tmp_path / "broken", "from squall import App\napp = App('web')\n"
                       "import not_a_module_anywhere\n")
    r = plat.deploy("web", broken)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "deploy_rejected"
    assert "not_a_module_anywhere" in body["errorMessage"]
    assert "Traceback" in body["detail"]
    code = plat.platform.root / "code"
    assert len(list(code.iterdir())) == 2  # the rejected package was not kept
    versions = plat.control("GET", "/apps/web/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["aliases"] == {"prod": 100}
    assert versions[0]["package_bytes"] > 0 and versions[0]["import_ms"] > 0
    with plat.client() as c:
        assert c.get("/web/v").json() == {"v": 2}
        r = plat.control("POST", "/apps/web/rollback", json={})
        assert r.status_code == 200 and r.json()["weights"] == {"1": 100}
        assert c.get("/web/v").json() == {"v": 1}
        # a named version, through another alias
        assert plat.control("PUT", "/apps/web/aliases/beta", json={"weights": "2"}
                            ).status_code == 200
        assert c.get("/web@beta/v").json() == {"v": 2}
        assert c.get("/web/v").json() == {"v": 1}
        missing = plat.control("PUT", "/apps/web/aliases/beta", json={"weights": "9"})
        assert missing.status_code == 404 and "no version 9" in missing.json()["errorMessage"]
        bad = plat.control("PUT", "/apps/web/aliases/beta", json={"weights": "1:50,2:40"})
        assert bad.status_code == 400 and "add up to 90" in bad.json()["errorMessage"]
    history = [h["action"] for h in plat.control("GET", "/apps/web/history").json()["history"]]
    assert history.count("deploy") == 2


def test_control_api_requires_the_admin_token(plat, tmp_path):
    with plat.client() as c:
        assert c.get("/_platform/health").status_code == 200
        r = c.get("/_platform/apps")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        r = c.get("/_platform/apps", headers={"authorization": "Bearer wrong-token-xxxxxxxx"})
        assert r.status_code == 401
        r = c.post("/_platform/apps/Bad_Name/versions", content=b"x", headers=AUTH)
        assert r.status_code == 400 and "app name" in r.json()["errorMessage"]
        r = c.post("/_platform/apps/web/versions", content=b"not a tarball", headers=AUTH)
        assert r.status_code == 422 and "not a .tar.gz" in r.json()["errorMessage"]
        r = c.get("/nothing/here")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert plat.control("GET", "/apps").json() == {"apps": []}


def test_package_over_the_limit_is_refused(tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory),
                         max_package_bytes=1000) as plat:
        app = web(tmp_path, 1)
        (app / "blob.bin").write_bytes(random.Random(1).randbytes(20_000))  # incompressible
        r = plat.deploy("web", app)
        assert r.status_code == 413
        assert "over the limit of 1000" in r.json()["errorMessage"]


@pytest.mark.slow
def test_idle_app_scales_to_zero_and_alias_provisions_workers(plat, tmp_path):
    assert plat.deploy("web", web(tmp_path, 1)).status_code == 201
    with plat.client() as c:
        assert c.get("/web/v").status_code == 200

    def workers() -> int:
        return sum(r["workers"] for r in plat.app_state("web")["node"]["running"])

    # keep_warm_s=0: the worker is reaped at the next sweep (once a second)
    wait_until(lambda: workers() == 0, 5, "the idle worker to be reaped")
    r = plat.control("PUT", "/apps/web/aliases/prod", json={"weights": "1", "provisioned": 2})
    assert r.status_code == 200, r.text
    wait_until(lambda: workers() == 4, 10, "2 provisioned workers for each of 2 functions")
    r = plat.control("PUT", "/apps/web/aliases/prod", json={"weights": "1", "provisioned": 99})
    assert r.status_code == 400 and "max_workers" in r.json()["errorMessage"]
    assert plat.control("DELETE", "/apps/web").status_code == 200
    assert plat.control("GET", "/apps").json() == {"apps": []}
    with plat.client() as c:
        assert c.get("/web/v").status_code == 404

"""Aliases and canaries: the weight syntax, the exact split, the canary's verdicts on an
injected clock, and a live canary whose failing version is rolled back automatically."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from platform_fixtures import RunningPlatform, venv_cache, write_app

from squall.platform.traffic import (Canary, CanaryMonitor, Splitter, TrafficError,
                                     check_alias_name, parse_weights)


def test_weights_parse_and_refuse_what_does_not_add_up():
    assert parse_weights("7") == {7: 100}
    assert parse_weights("7:90, 8:10") == {7: 90, 8: 10}
    for bad, why in [("", "give a version"), ("7:90,8:20", "add up to 110"),
                     ("x", "not VERSION"), ("0", "start at 1"), ("7:50,7:50", "twice"),
                     ("7:101", "0 to 100")]:
        with pytest.raises(TrafficError, match=why):
            parse_weights(bad)
    assert check_alias_name("prod") == "prod"
    with pytest.raises(TrafficError, match="lower-case"):
        check_alias_name("Prod!")


def test_split_is_exact_and_spread_out():
    picks = [Splitter({7: 90, 8: 10}).pick for _ in range(1)][0]
    seq = [picks() for _ in range(100)]
    assert Counter(seq) == {7: 90, 8: 10}
    # spread: never two canary requests in a row
    assert all(not (a == b == 8) for a, b in zip(seq, seq[1:]))
    three = Splitter({1: 50, 2: 25, 3: 25})
    assert Counter(three.pick() for _ in range(40)) == {1: 20, 2: 10, 3: 10}


def test_canary_rolls_back_past_the_error_bound_and_promotes_at_the_window_end():
    # Given a canary of version 8 against 7, watched for 60 s on a clock we move
    canary = Canary.from_weights({7: 90, 8: 10}, started_at=1000.0, window_s=60,
                                 max_error_rate=0.2, min_requests=5)
    assert (canary.baseline, canary.candidate) == (7, 8)
    failing = CanaryMonitor(canary)
    for ok in (True, False, True, False):
        failing.observe(8, ok)
        failing.observe(7, False)  # the baseline's errors are not the candidate's
    assert failing.verdict(1001.0) is None  # 4 requests: under min_requests
    failing.observe(8, True)
    assert failing.error_rate == pytest.approx(0.4)
    assert failing.verdict(1001.0) == "rollback"
    healthy = CanaryMonitor(canary)
    for _ in range(20):
        healthy.observe(8, True)
    healthy.observe(8, False)  # 1 in 21: under the bound
    assert healthy.verdict(1059.9) is None
    assert healthy.verdict(1060.0) == "promote"
    with pytest.raises(TrafficError, match="exactly two"):
        Canary.from_weights({7: 100}, started_at=0)
    with pytest.raises(TrafficError, match="fraction"):
        Canary.from_weights({7: 50, 8: 50}, started_at=0, max_error_rate=2)


SHOP = """
from squall import App

app = App("shop")

@app.http("GET", "/v")
def v(request):
    if {fail}:
        raise RuntimeError("version {version} is broken")
    return 200, {{"v": {version}}}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_failing_canary_rolls_back_automatically_and_a_good_one_is_promoted(
        tmp_path, tmp_path_factory):
    clock = FakeClock()
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory), clock=clock,
                         canary_check_s=0.05) as plat:
        def version(n: int, fail: bool = False):
            return write_app(tmp_path / f"shop{n}", SHOP.format(version=n, fail=fail))

        assert plat.deploy("shop", version(1)).status_code == 201
        # Given a good version 2, promoted when its window ends
        r = plat.deploy("shop", version(2), canary=50, window_s=30, min_requests=3,
                        max_error_rate=0.2)
        assert r.status_code == 201, r.text
        state = plat.app_state("shop")["aliases"]["prod"]
        assert state["weights"] == "1:50,2:50" and state["canary"]["candidate"] == 2
        with plat.client() as c:
            assert {c.get("/shop/v").json()["v"] for _ in range(4)} == {1, 2}
        clock.now += 31
        _wait_for(lambda: plat.app_state("shop")["aliases"]["prod"]["weights"] == "2:100")
        # When version 3 fails every request during its canary
        r = plat.deploy("shop", version(3, fail=True), canary=50, window_s=600,
                        min_requests=3, max_error_rate=0.2)
        assert r.status_code == 201, r.text
        statuses = Counter()
        with plat.client() as c:
            for _ in range(30):  # bounded: 3 failures of v3 need 6 requests at 50 %
                resp = c.get("/shop/v")
                statuses[resp.status_code] += 1
                if plat.app_state("shop")["aliases"]["prod"]["weights"] == "2:100":
                    break
            # Then the alias went back to version 2 alone, without waiting for the window
            assert plat.app_state("shop")["aliases"]["prod"] == {
                "weights": "2:100", "provisioned": 0, "canary": None}
            assert statuses[502] == 3
            assert all(c.get("/shop/v").json() == {"v": 2} for _ in range(5))
        history = plat.control("GET", "/apps/shop/history").json()["history"]
        rolled = next(h for h in history if h["action"] == "canary rollback")
        assert rolled["candidate"] == 3 and rolled["kept"] == 2 and rolled["errors"] == 3
        assert any(h["action"] == "canary promote" for h in history)
        # a canary needs an alias on one version; a bad percent is refused
        r = plat.deploy("shop", version(4), canary=0)
        assert r.status_code == 400


def _wait_for(predicate, timeout: float = 5.0) -> None:
    from servers import wait_until

    wait_until(predicate, timeout, "the canary verdict")


def test_unknown_alias_is_a_json_404(tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as plat:
        assert plat.deploy("shop", write_app(tmp_path / "s", SHOP.format(
            version=1, fail=False))).status_code == 201
        r = httpx.get(plat.url + "/shop@nope/v")
        assert r.status_code == 404 and "no alias 'nope'" in r.json()["errorMessage"]

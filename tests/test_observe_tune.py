"""The memory tuner: CPU share follows memory, and the recommendation is the cheapest size
within the latency bound (a real CPU-bound function in real workers); cold-start tooling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli.main import cli
from squall.observe import coldstart as cs
from squall.observe.tune import SizeResult, TuneError, parse_sizes, recommend, tune

APPS = Path(__file__).parent / "apps"
CPU_APP = str(APPS / "cpubound.py")
WORK = {"n": 100_000}  # ~10-20 ms of pure Python at a full vCPU


def _size(mb: int, p95: float, usd: float, errors: int = 0) -> SizeResult:
    return SizeResult(mb, mb / 1769, 3, errors, p95, p95, p95, usd, usd * 1e6)


def test_recommend_is_the_cheapest_size_within_the_bound():
    sizes = [_size(128, 300.0, 1e-6), _size(512, 80.0, 0.8e-6), _size(1024, 40.0, 0.9e-6),
             _size(2048, 20.0, 1.5e-6, errors=1)]
    assert recommend(sizes, 100.0)[0].memory_mb == 512
    assert recommend(sizes, 50.0)[0].memory_mb == 1024
    assert recommend(sizes, None)[0].memory_mb == 512  # cheapest of all
    best, why = recommend(sizes, 10.0)  # nothing that fast (2048 failed): say so
    assert best.memory_mb == 1024 and "no size meets" in why
    assert recommend([_size(128, 1.0, 1e-6, errors=2)], None) == (
        None, "every size failed: see the errors above")


def test_sizes_are_checked():
    assert parse_sizes("1024, 128,256,128") == [128, 256, 1024]
    for bad in ("", "64", "big", "128,20000"):
        with pytest.raises(TuneError):
            parse_sizes(bad)


def test_the_tuner_recommends_a_bigger_size_for_a_cpu_bound_function():
    # Given the function's duration at a full vCPU, measured the same way (a real worker)
    full = asyncio.run(tune(CPU_APP, "crunch", WORK, [1769], runs=2))["sizes"][0]["p95_ms"]
    bound = 2.5 * full
    # When it is tuned at 128 MB (7 % of a vCPU) and 1769 MB, within 2.5x that duration
    doc = asyncio.run(tune(CPU_APP, "crunch", WORK, [128, 1769], runs=2, latency_ms=bound))
    small, big = doc["sizes"]
    # Then 128 MB is much slower (CPU share scales with memory) and misses the bound, so
    # the cheapest size that meets it is 1769 MB
    assert small["p50_ms"] > 2.5 * big["p50_ms"], doc
    assert small["cpu_share"] == pytest.approx(128 / 1769)
    assert doc["recommended_mb"] == 1769, doc
    assert "cheapest size with p95" in doc["reason"]


def test_squall_tune_errors():
    r = CliRunner().invoke(cli, ["tune", CPU_APP, "crunch", "--memory", "64"])
    assert r.exit_code == 2 and "128..10240" in r.output
    r = CliRunner().invoke(cli, ["tune", CPU_APP, "nothing", "--memory", "128", "--runs", "1"])
    assert r.exit_code == 2 and "no function 'nothing'" in r.output
    r = CliRunner().invoke(cli, ["tune", CPU_APP, "crunch", "--payload", "{bad"])
    assert r.exit_code == 2 and "not JSON" in r.output


def test_coldstart_splits_imports_and_hints_at_a_heavy_import_for_one_function(tmp_path):
    app = tmp_path / "app.py"
    (tmp_path / "heavy_dep.py").write_text("import time\ntime.sleep(0.03)\n")  # 30 ms import
    app.write_text(
        "import heavy_dep\nfrom squall import App\napp = App('cold')\n\n"
        "@app.function()\ndef rare(x):\n    return heavy_dep.__name__\n\n"
        "@app.function()\ndef hot(x):\n    return x\n")
    r = CliRunner().invoke(cli, ["coldstart", str(app), "--data-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    heavy = next(i for i in doc["imports"] if i["module"] == "heavy_dep")
    assert heavy["cumulative_ms"] >= 25
    assert doc["zygote"]["uss_mb"] > 1 and doc["zygote"]["pss_mb"] > 1
    assert {f["function"]: f["uses"] for f in doc["functions"]} == {
        "rare": ["heavy_dep"], "hot": []}
    assert len(doc["hints"]) == 1 and "import it inside rare" in doc["hints"][0]


def test_parse_importtime_keeps_only_the_apps_imports():
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |        100 | squall\n"
              f"{cs.MARKER}\n"
              "import time:       500 |        500 |   numpy.core\n"
              "import time:      1000 |       1500 | numpy\n"
              "import time:       200 |        200 | json5\n")
    rows = cs.parse_importtime(stderr)
    assert [(r.module, r.depth) for r in rows] == [("numpy.core", 1), ("numpy", 0),
                                                   ("json5", 0)]
    assert [r.module for r in cs.top_level(rows)] == ["numpy", "json5"]
    assert cs.top_level(rows)[0].cumulative_ms == 1.5

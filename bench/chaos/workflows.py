"""The workflow crash-resume scenario: `workflows` executions of a five-step workflow
started at once, `kills` random kill -9s while they run (every `platform_every`-th one
kills the whole platform, which is restarted; the others kill a worker running a step),
then a bounded wait for every execution to succeed. Every step's effect must have
happened exactly once (a re-run of a step whose worker was killed before the idempotency
helper completed is reported separately, as in the storm)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .platform import Node
from .report import repeated_effects
from .storm import read_ledger

WF_APP = str(Path(__file__).with_name("wf_app.py"))
STEPS = 5


@dataclass(frozen=True)
class WorkflowConfig:
    workflows: int = 200
    kills: int = 20
    platform_every: int = 4  # every 4th kill is a platform kill -9 and restart
    gap_s: tuple[float, float] = (0.2, 0.8)  # random pause before each kill
    seed: int = 1
    timeout_s: float = 240.0

    def __post_init__(self) -> None:
        if self.workflows < 1 or self.kills < 0 or self.platform_every < 1:
            raise ValueError("workflows must be >= 1, kills >= 0, platform_every >= 1")


def statuses(data: Path) -> dict[str, int]:
    path = data / "workflows.db"
    if not path.exists():
        return {}
    c = sqlite3.connect(path, timeout=30)
    try:
        return dict(c.execute("SELECT status, COUNT(*) FROM wf_executions GROUP BY status"))
    except sqlite3.OperationalError:
        return {}
    finally:
        c.close()


def outputs(data: Path) -> dict[str, Any]:
    c = sqlite3.connect(data / "workflows.db", timeout=30)
    try:
        return {i: json.loads(o) if o else None
                for i, o in c.execute("SELECT id, output FROM wf_executions")}
    finally:
        c.close()


def start_all(node: Node, count: int) -> None:
    for s0 in range(0, count, 50):
        body = json.dumps({"start": s0, "n": min(50, count - s0)}).encode()
        req = urllib.request.Request(node.url + "/start", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 202


def run_workflows(cfg: WorkflowConfig, root: Path | None = None, *,
                  progress: Callable[[str, float, float], None] | None = None) -> dict:
    if root is None:
        with tempfile.TemporaryDirectory(prefix="squall-chaos-wf-") as tmp:
            return run_workflows(cfg, Path(tmp), progress=progress)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty: a run needs a new or empty directory")
    root.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda what, done, total: None)
    rand = random.Random(cfg.seed)
    chaos_db = root / "chaos.db"
    node = Node("node0", root, {**os.environ, "CHAOS_DB": str(chaos_db)}, app=WF_APP)
    killed: set[int] = set()
    kills = {"worker": 0, "platform": 0}
    restarts: list[float] = []
    t0 = time.monotonic()
    try:
        node.start()
        start_all(node, cfg.workflows)
        for k in range(cfg.kills):
            time.sleep(rand.uniform(*cfg.gap_s))
            if (k + 1) % cfg.platform_every == 0:
                killed.update(p.pid for p in node.tree())
                node.kill()
                restarts.append(node.start())
                kills["platform"] += 1
            elif workers := node.workers():
                victim = rand.choice(workers)
                try:
                    os.kill(victim.pid, 9)
                    killed.add(victim.pid)
                    kills["worker"] += 1
                except ProcessLookupError:
                    pass
            progress("kills", k + 1, cfg.kills)
        deadline = time.monotonic() + cfg.timeout_s
        while time.monotonic() < deadline:
            done = statuses(node.data).get("succeeded", 0)
            progress("workflows", done, cfg.workflows)
            if done == cfg.workflows:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        final = statuses(node.data)
        outs = outputs(node.data)
    finally:
        node.stop()
    ledger = read_ledger(chaos_db)
    expected = {i * 10 + s for i in range(cfg.workflows) for s in range(1, STEPS + 1)}
    duplicates, rerun = repeated_effects(ledger, killed)
    wrong = [i for i, o in outs.items() if o != list(range(1, STEPS + 1))]
    report = {
        "scenario": "workflows", "config": asdict(cfg),
        "workflows": cfg.workflows, "statuses": final,
        "wrong_outputs": len(wrong),
        "steps_expected": len(expected),
        "steps_effected": len(expected & set(ledger.effects)),
        "missing_effects": len(expected - set(ledger.effects)),
        "phantom": len(set(ledger.effects) - expected),
        "duplicate_effects": duplicates,
        "effects_rerun_after_kill": rerun,
        "kills": kills,
        "platform_restart_s": [round(r, 2) for r in restarts],
        "elapsed_s": round(elapsed, 1),
    }
    report["failed"] = [k for k in ("wrong_outputs", "missing_effects", "phantom",
                                    "duplicate_effects") if report[k]]
    if final.get("succeeded", 0) != cfg.workflows:
        report["failed"].append("statuses")
    report["ok"] = not report["failed"]
    return report


def render(report: dict, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    table = Table(title=f"chaos workflows: {report['workflows']} x {STEPS} steps, "
                        f"seed={report['config']['seed']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("statuses", "wrong_outputs", "steps_expected", "steps_effected",
                "missing_effects", "phantom", "duplicate_effects", "effects_rerun_after_kill",
                "kills", "platform_restart_s", "elapsed_s"):
        bad = key in report["failed"]
        value = str(report[key])
        table.add_row(key.replace("_", " "), f"[red]{value}[/red]" if bad else value)
    table.add_row("verdict", "[green]PASS[/green]" if report["ok"]
                  else f"[red]FAIL: {', '.join(report['failed'])}[/red]")
    console.print(table)

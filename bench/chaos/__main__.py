"""Chaos runs: `python -m bench.chaos storm --backend sqlite|nats|postgres [options]`,
`python -m bench.chaos workflows [options]`.

Prints a rich table on stderr and the JSON report on stdout (or --out FILE); exits 0 when
every invariant held (lost = phantom = duplicate effects = 0, DLQ precision = recall = 1,
queue drained), 1 when one broke, 2 on bad arguments. `bench/chaos/run` runs the full set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report import render
from .storm import BREAKS, StormConfig, run_storm
from .workflows import WorkflowConfig, run_workflows
from .workflows import render as render_workflows


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    s = sub.add_parser("storm", help="burst + worker kills + platform kill -9 and restart")
    s.add_argument("--backend", choices=["sqlite", "nats", "postgres"], default="sqlite")
    s.add_argument("--events", type=int, default=10_000)
    s.add_argument("--batch", type=int, default=100)
    s.add_argument("--burst-s", type=float, default=0.0,
                   help="spread the bulk sends over this long (default: all at once)")
    s.add_argument("--baseline-events", type=int, default=300)
    s.add_argument("--fault-s", type=float, default=30.0)
    s.add_argument("--kill-every-s", type=float, default=0.2)
    s.add_argument("--platform-kill-at-s", type=float, default=15.0,
                   help="negative: no platform kill")
    s.add_argument("--broker-restart-at-s", type=float, default=None)
    s.add_argument("--store-restart-at-s", type=float, default=None)
    s.add_argument("--private-store", action="store_true",
                   help="distributed: run a private PostgreSQL instead of 127.0.0.1:5432")
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--poison-rate", type=float, default=0.01)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--drain-timeout-s", type=float, default=240.0)
    s.add_argument("--empty-grace-s", type=float, default=5.0,
                   help="the queue empty this long with messages unaccounted for: lost")
    s.add_argument("--break", dest="break_mode", choices=BREAKS, default=None,
                   help="a deliberately broken build: the run must FAIL")
    s.add_argument("--dir", type=Path, default=None, help="keep the run's files here")
    s.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    s.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    w = sub.add_parser("workflows", help="workflow crash-resume: executions x 5 steps, kills")
    w.add_argument("--workflows", type=int, default=200)
    w.add_argument("--kills", type=int, default=20)
    w.add_argument("--platform-every", type=int, default=4,
                   help="every Nth kill is a platform kill -9 and restart")
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--timeout-s", type=float, default=240.0)
    for p in (w,):
        p.add_argument("--dir", type=Path, default=None, help="keep the run's files here")
        p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
        p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    return ap.parse_args(argv)


def with_progress(run, render_fn, quiet: bool):
    if quiet:
        return run(None)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: float, total: float) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        report = run(progress)
    render_fn(report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.scenario == "workflows":
            wcfg = WorkflowConfig(workflows=args.workflows, kills=args.kills,
                                  platform_every=args.platform_every, seed=args.seed,
                                  timeout_s=args.timeout_s)
            go = lambda p: run_workflows(wcfg, args.dir, progress=p)  # noqa: E731
            show = render_workflows
        else:
            cfg = StormConfig(
                backend=args.backend, events=args.events, batch=args.batch,
                burst_s=args.burst_s, baseline_events=args.baseline_events,
                fault_s=args.fault_s, kill_every_s=args.kill_every_s,
                platform_kill_at_s=(None if args.platform_kill_at_s < 0
                                    else args.platform_kill_at_s),
                broker_restart_at_s=args.broker_restart_at_s,
                store_restart_at_s=args.store_restart_at_s, private_store=args.private_store,
                nodes=args.nodes, poison_rate=args.poison_rate, seed=args.seed,
                drain_timeout_s=args.drain_timeout_s, break_mode=args.break_mode,
                empty_grace_s=args.empty_grace_s)
            go = lambda p: run_storm(cfg, args.dir, progress=p)  # noqa: E731
            show = render
        if args.dir is not None and args.dir.exists() and any(args.dir.iterdir()):
            raise ValueError(f"--dir {args.dir} is not empty: a run needs a new or empty one")
    except ValueError as exc:  # a bad setting
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = with_progress(go, show, args.quiet)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

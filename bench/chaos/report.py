"""The chaos ledger and its figures: what was acknowledged, what took effect (and how
often), what sits in the dead-letter queue, and what that means (lost, phantom,
duplicates, DLQ precision and recall against the poison set), with latency, recovery
and resource figures. JSON for machines, a rich table for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: figures that must hold for a run to pass, and how
INVARIANTS = {
    "lost": lambda v: v == 0,
    "phantom": lambda v: v == 0,
    "duplicate_effects": lambda v: v == 0,
    "dlq_precision": lambda v: v == 1.0,
    "dlq_recall": lambda v: v == 1.0,
    "left_in_queue": lambda v: v == 0,
    "fd_growth": lambda v: v <= FD_SLACK,
}
#: open descriptors a supervisor may hold more at the end than once warm (its pool's
#: workers come and go: a socket and a log pipe each); more is a leak across kills
FD_SLACK = 16


def fd_summary(samples: list[tuple[float, str, int, int]]) -> list[dict]:
    """Per supervisor process (a restart is a new one): its open descriptors once warm
    (the most in the first half of its samples: start-up is over by then), at its last
    sample, and at most. A leak across kills shows as last well above warm."""
    by_proc: dict[tuple[str, int], list[int]] = {}
    for _, node, pid, n in samples:
        by_proc.setdefault((node, pid), []).append(n)
    out = []
    for (node, pid), seq in by_proc.items():
        warm = max(seq[:max(1, len(seq) // 2)])
        out.append({"node": node, "pid": pid, "warm": warm, "last": seq[-1], "max": max(seq),
                    "samples": len(seq)})
    return out


@dataclass(frozen=True)
class Ledger:
    effects: dict[int, list[tuple[float, int]]]  # n -> (when, worker pid) per execution
    deliveries: dict[int, int]  # n -> handler invocations that carried it
    done: set[tuple[int, int]]  # (n, worker pid) of helper runs that returned


def repeated_effects(ledger: Ledger, killed: set[int]) -> tuple[int, int]:
    """(duplicate effects, crash-window re-executions). An event's effect that ran again is
    a crash-window re-execution when every earlier run was in a worker killed -9 before
    that run returned; otherwise (an earlier run had completed, or was never killed: two
    runs at once) it is a duplicate effect, a broken guarantee."""
    duplicates = reexecuted = 0
    for n, runs in ledger.effects.items():
        if len(runs) < 2:
            continue
        earlier = runs[:-1]
        if all(pid in killed and (n, pid) not in ledger.done for _, pid in earlier):
            reexecuted += 1
        else:
            duplicates += 1
    return duplicates, reexecuted


Report = dict[str, Any]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def build_report(*, cfg: dict, acked: dict[int, float], attempted: set[int],
                 send_retries: int, send_failures: list[str], poison: set[int], ledger: Ledger,
                 wrongly_dead: list[dict],
                 dlq: dict[int, str], left_in_queue: int, drained: bool, drain_s: float,
                 timeline: dict, baseline_ids: set[int], peak_rss: int,
                 fd_samples: list[tuple[float, str, int, int]],
                 errors: list[str]) -> Report:
    acked_ids = set(acked)
    effected = set(ledger.effects)
    dead = set(dlq)
    settled = effected | dead
    poison_acked = poison & acked_ids
    latency_base, latency_fault = [], []
    first = {n: runs[0][0] for n, runs in ledger.effects.items()}
    for n, at in first.items():
        if n not in acked:
            continue
        lat = at - acked[n]
        if n in baseline_ids:
            latency_base.append(lat)
        elif timeline["fault_start"] <= at <= timeline["fault_end"]:
            latency_fault.append(lat)
    recovery = []
    for r in timeline["restarts"]:
        after = [at for at in first.values() if at >= r["up_at"]]
        took = min(after) - r["killed_at"] if after else None
        back = min(after) - r["up_at"] if after else None
        recovery.append({"what": r["what"], "restart_s": round(r["up_s"], 3),
                         "first_effect_after_kill_s": None if took is None else round(took, 3),
                         "first_effect_after_up_s": None if back is None else round(back, 3)})
    duplicates, reexecuted = repeated_effects(ledger, set(timeline["killed_pids"]))
    fds = fd_summary(fd_samples)
    deliveries = sum(ledger.deliveries.values())
    report: Report = {
        "scenario": "storm",
        "config": cfg,
        "acknowledged": len(acked_ids),
        "effected": len(effected & acked_ids),
        "in_dlq": len(dead),
        "lost": len(acked_ids - settled),
        "lost_ids": sorted(acked_ids - settled)[:20],
        "phantom": len(settled - attempted),  # never sent at all
        "unacknowledged_delivered": len((settled & attempted) - acked_ids),
        "send_retries": send_retries,
        "send_failures": send_failures,
        "duplicate_effects": duplicates,
        "effects_rerun_after_kill": reexecuted,
        "duplicate_deliveries": deliveries - len(ledger.deliveries),
        "dlq_precision": round(len(dead & poison) / len(dead), 6) if dead else 1.0,
        "dlq_recall": (round(len(dead & poison_acked) / len(poison_acked), 6)
                       if poison_acked else 1.0),
        "dlq_reasons": sorted(set(dlq.values())),
        "dead_letters_not_poison": wrongly_dead,
        "left_in_queue": left_in_queue,
        "drained": drained,
        "drain_after_faults_s": round(drain_s, 2),
        "burst_s": round(timeline["burst_s"], 3),
        "worker_kills": timeline["kills"],
        "recovery": recovery,
        "latency_ms": {
            "baseline": {"p50": _ms(percentile(latency_base, 50)),
                         "p99": _ms(percentile(latency_base, 99)), "n": len(latency_base)},
            "during_faults": {"p50": _ms(percentile(latency_fault, 50)),
                              "p99": _ms(percentile(latency_fault, 99)),
                              "n": len(latency_fault)},
        },
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "supervisor_fds": fds,
        "fd_growth": max((f["last"] - f["warm"] for f in fds), default=0),
        "log_errors": errors,
    }
    failed = [k for k, ok in INVARIANTS.items() if not ok(report[k])]
    if not drained:
        failed.append("drained")
    report["failed"] = failed
    report["ok"] = not failed
    return report


def render(report: Report, console: Any = None) -> None:
    """The report as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    cfg = report["config"]
    table = Table(title=f"chaos storm: {cfg['backend']} seed={cfg['seed']} "
                        f"events={cfg['events']} faults={cfg['fault_s']}s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")

    def row(name: str, key: str, target: str = "") -> None:
        value = report[key]
        bad = key in report["failed"]
        table.add_row(name, f"[red]{value}[/red]" if bad else str(value), target)

    row("acknowledged", "acknowledged")
    row("effected", "effected")
    row("in DLQ", "in_dlq")
    row("lost", "lost", "0")
    row("phantom", "phantom", "0")
    row("send retries (same dedup keys)", "send_retries", "reported")
    row("duplicate effects", "duplicate_effects", "0")
    row("effect re-run: killed before completing", "effects_rerun_after_kill", "reported")
    row("duplicate deliveries", "duplicate_deliveries", "reported")
    row("DLQ precision", "dlq_precision", "1.0")
    row("DLQ recall", "dlq_recall", "1.0")
    row("left in queue", "left_in_queue", "0")
    row("burst (s)", "burst_s", "<= 1")
    row("worker kills", "worker_kills")
    row("drain after faults (s)", "drain_after_faults_s")
    for r in report["recovery"]:
        table.add_row(f"{r['what']} restart (s)", str(r["restart_s"]), "")
        table.add_row(f"{r['what']} kill -> first effect (s)",
                      str(r["first_effect_after_kill_s"]), "")
        table.add_row(f"{r['what']} back up -> first effect (s)",
                      str(r["first_effect_after_up_s"]), "< 5")
    lat = report["latency_ms"]
    table.add_row("latency p50/p99 baseline (ms)",
                  f"{lat['baseline']['p50']} / {lat['baseline']['p99']}", "")
    table.add_row("latency p50/p99 during faults (ms)",
                  f"{lat['during_faults']['p50']} / {lat['during_faults']['p99']}", "")
    row("peak RSS (MB)", "peak_rss_mb")
    for f in report["supervisor_fds"]:
        table.add_row(f"fds {f['node']} pid {f['pid']}: warm / last / max",
                      f"{f['warm']} / {f['last']} / {f['max']}", "")
    row("fd growth (last - warm)", "fd_growth", f"<= {FD_SLACK}")
    table.add_row("verdict", "[green]PASS[/green]" if report["ok"]
                  else f"[red]FAIL: {', '.join(report['failed'])}[/red]", "")
    console.print(table)

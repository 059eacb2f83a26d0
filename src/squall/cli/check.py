"""`squall check APP`: what each function declares with `uses=`, what a static scan of its
source sees it touch, and the access it would be denied at run time.

Exit codes: 0 nothing undeclared found; 1 violations (a function with `uses=` touches
something it does not declare); 2 bad input (no such app, it does not load, e.g. a
strict app with a function lacking `uses=`). The scan is best effort (squall.cli.scan):
it proves nothing about dynamic names; the supervisor enforces `uses=` regardless.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..runtime.loader import split_ref
from ..triggers import grants, parse_uses
from .scan import scan


def _source_file(ref: str) -> Path | None:
    target, _ = split_ref(ref)
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        return path / "app.py" if path.is_dir() else path
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:  # finds the file of a top-level module without importing it
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def report(manifest: dict[str, Any], source: Path) -> dict[str, Any]:
    names = [f["name"] for f in manifest["functions"]]
    scans = scan(source, names)
    out = []
    violations = 0
    for f in manifest["functions"]:
        s = scans[f["name"]]
        uses = parse_uses(f["uses"]) if f.get("uses") is not None else None
        undeclared = []
        if uses is not None:
            undeclared = [a for a in s.accesses if not grants(uses, a.kind, a.resource,
                                                              a.action)]
        violations += len(undeclared)
        suggested: dict[str, list[str]] = {}
        for a in s.accesses:
            suggested.setdefault(a.resource, [])
            if a.action not in suggested[a.resource]:
                suggested[a.resource].append(a.action)
        out.append({
            "function": f["name"], "declares": f.get("uses"),
            "source_found": s.found,
            "touches": [{"kind": a.kind, "resource": a.resource, "action": a.action,
                         "line": a.line} for a in s.accesses],
            "undeclared": [{"kind": a.kind, "resource": a.resource, "action": a.action,
                            "line": a.line} for a in undeclared],
            "dynamic": s.dynamic,
            "suggested_uses": {r: sorted(a) for r, a in sorted(suggested.items())},
        })
    return {"app": manifest["app"], "strict": manifest.get("strict", False),
            "source": str(source), "functions": out, "violations": violations}


def _fmt_uses(uses: dict[str, list[str]] | None) -> str:
    if uses is None:
        return "(no uses=: unrestricted)"
    if not uses:
        return "{} (nothing)"
    return ", ".join(f"{r}: {'+'.join(a)}" for r, a in uses.items())


def check(
    app: str = typer.Argument(..., help="The app: a Python file (or directory with app.py) "
                              "defining an App, or module:attr."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON on stdout."),
) -> None:
    """Least privilege: list what each function declares (uses=) and flag access its
    source makes that it does not declare. Static and best effort: computed names and
    code in other modules are not seen; run-time enforcement does not depend on this."""
    from .main import fail, load_manifest

    source = _source_file(app)
    if source is None or not source.is_file():
        raise fail(f"cannot find the source of {app!r} to scan")
    manifest = load_manifest(app)  # exit 2 if it does not load (strict apps included)
    try:
        result = report(manifest, source)
    except SyntaxError as exc:  # pragma: no cover - it loaded, so it parses
        raise fail(f"cannot parse {source}: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        raise typer.Exit(1 if result["violations"] else 0)
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    out.print(f"app {result['app']}{' (strict)' if result['strict'] else ''}: "
              f"{len(result['functions'])} functions, scanned {source}", markup=False)
    for f in result["functions"]:
        mark = "FAIL" if f["undeclared"] else "ok"
        out.print(f"\n{mark:4} {f['function']}", markup=False)
        out.print(f"     declares  {_fmt_uses(f['declares'])}", markup=False)
        if not f["source_found"]:
            out.print("     source    not found in this file (registered from elsewhere?): "
                      "not scanned", markup=False)
            continue
        touched = sorted({(a["resource"], a["action"]) for a in f["touches"]})
        out.print("     touches   " + (", ".join(f"{r}: {a}" for r, a in touched) or
                                       "nothing seen"), markup=False)
        for a in f["undeclared"]:
            out.print(f"     UNDECLARED line {a['line']}: {a['action']} {a['kind']} "
                      f"{a['resource']!r} (denied at run time)", markup=False)
        for d in f["dynamic"]:
            out.print(f"     note      {d}: not checked", markup=False)
        if f["declares"] is None and f["suggested_uses"]:
            out.print(f"     suggest   uses={json.dumps(f['suggested_uses'])}", markup=False)
    n = result["violations"]
    out.print(f"\n{n} undeclared access(es) found" if n else
              "\nno undeclared access found (static scan, best effort)", markup=False)
    raise typer.Exit(1 if n else 0)

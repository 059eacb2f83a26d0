"""Every code block in the docs is tested (docs/**/*.md, examples/*/README.md, README.md).

- ```python blocks run, in order, in one namespace per page (a page's blocks may build on
  each other), in a scratch directory; `test_*` functions a block defines are called.
  Every `App` a page defines is then loaded into `squall.testing.TestClient` and
  exercised: every function is wired, every GET route without path parameters answers
  without a 5xx, queued work drains.
- Shell blocks (bash, sh, shell, console, text, and unlabelled ones): every line that
  runs `squall ...` must name a real command, pass only options that command has, and
  no more arguments than it takes (checked against the click tree typer builds; `[--opt]`,
  `a|b` and `…` placeholders as in the docs' synopses are understood).
- ```json blocks must parse.
- docs/cli.md must be what `python -m squall.cli.reference` generates; relative links
  must resolve; every docs page must be linked from docs/index.md; every example must
  load (what `squall dev examples/NAME` does) and have a README.

A block that genuinely cannot run (it needs a cloud account, say) is preceded by
`<!-- no-test: why -->`; use it sparingly. A page owned by someone else that fails here
fails alone: each page is its own test.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from squall import App
from squall.cli.reference import is_group, option_names
from squall.testing import TestClient

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.glob("docs/**/*.md"), *ROOT.glob("examples/*/README.md"),
                ROOT / "README.md"])
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)[^\n]*$")
NO_TEST = re.compile(r"<!--\s*no-test:\s*(?P<why>[^>]+?)\s*-->")
SHELL = {"", "bash", "sh", "shell", "console", "text"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the no-test reason

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, text: str | None = None) -> list[Block]:
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = NO_TEST.search(prev)
        found.append(Block(page, start + 1, m["lang"].lower(), "\n".join(body) + "\n",
                           skip["why"] if skip else None))
        i += 1
    return found


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- python ----------------------------------------------------------------------------

def run_python(page_blocks: list[Block], tmp_path: Path) -> list[App]:
    """Run the blocks in order; call the `test_*` functions each defines (a page showing
    how to test an app is tested too); return every App the page made."""
    namespace: dict = {"__name__": f"docs_{tmp_path.name}"}
    apps: dict[int, App] = {}
    for block in page_blocks:
        before = {k: v for k, v in namespace.items() if k.startswith("test_")}
        try:
            exec(compile(block.code, block.where(), "exec"), namespace)  # noqa: S102
            for name, fn in list(namespace.items()):
                if name.startswith("test_") and callable(fn) and before.get(name) is not fn:
                    fn()
        except Exception as exc:
            raise AssertionError(f"the python block at {block.where()} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        apps.update({id(v): v for v in namespace.values() if isinstance(v, App)})
    return list(apps.values())


def exercise(app: App, where: str) -> None:
    """Load the app as `squall dev` would, under the test harness; call every GET route
    that has no path parameters (it must not fail with a 5xx); run what was queued.
    Other routes are left to the page's own blocks: they need bodies and auth."""
    with TestClient(app) as client:
        assert set(client.configs) == set(app.functions), where
        for function in app.functions.values():
            for route in function.config.routes:
                if route.method in ("GET", "ANY") and "{" not in route.path:
                    r = client.get(route.path)
                    assert r.status_code < 500, f"{where}: GET {route.path}: {r.status_code} {r.text}"
        client.drain()


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang in ("python", "py") and not b.skip for b in blocks(p))], ids=_page_id)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    runnable = [b for b in blocks(page) if b.lang in ("python", "py") and not b.skip]
    for app in run_python(runnable, tmp_path):
        exercise(app, f"{_page_id(page)}: app {app.name!r}")


# -- shell -----------------------------------------------------------------------------

@functools.cache
def _root() -> Any:
    from squall.cli.reference import root

    return root()


def _commands(code: str) -> list[list[str]]:
    """The `squall ...` invocations in a shell block, as argv lists."""
    out = []
    joined = re.sub(r"\\\n\s*", " ", code)  # line continuations
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        # " · ", "&&", ";" and "||" separate commands; so do 2+ spaces before another
        # `squall` on a line that starts with one (the README's two-column synopsis)
        parts = re.split(r"\s+·\s+|\s*(?:&&|;|\|\|)\s*", line)
        if line.startswith("squall "):
            parts = [p for part in parts for p in re.split(r"\s{2,}(?=squall )", part)]
        for part in parts:
            part = re.sub(r"^(?:\.venv/bin/|[A-Z_]+=\S+\s+)+", "", part.strip())
            if not part.startswith("squall "):
                continue
            try:
                argv = shlex.split(part, comments=True)
            except ValueError:  # unbalanced quotes in a synopsis: split on spaces
                argv = part.split("#")[0].split()
            out.append(argv[1:])
    return out


def check_argv(root: Any, argv: list[str]) -> str | None:
    """None if `squall argv` names a real command with real options, else why not."""
    command, path = root, ["squall"]
    args = [a.strip("[]") for a in argv]
    i = 0
    while is_group(command) and i < len(args):
        word = args[i]
        if word.startswith("-") or not word:
            break
        names = word.split("|")
        known = [n for n in names if n in command.commands]
        if not known:
            if word.isupper() or "…" in word or "..." in word:  # a placeholder
                return None
            return f"`{' '.join(path)}` has no command {word!r}; it has: " \
                   f"{', '.join(sorted(command.commands))}"
        if len(known) != len(names):
            missing = set(names) - set(known)
            return f"`{' '.join(path)}` has no command {', '.join(sorted(missing))}"
        path.append(known[0])
        command = command.commands[known[0]]
        i += 1
        if len(names) > 1:  # `list|redrive`: check each alternative's options
            for alt in names[1:]:
                why = check_argv(root, [*argv[:i - 1], alt, *argv[i:]])
                if why:
                    return why
    if is_group(command):
        return None  # a group on its own: `squall dlq` prints its help
    opts = option_names(command)
    takes_value = {o for p in command.params if p.param_type_name == "option"
                   and not (getattr(p, "is_flag", False) or getattr(p, "count", False))
                   for o in p.opts}
    positional, rest = 0, iter(args[i:])
    for word in rest:
        if word.startswith("--") or re.fullmatch(r"-[A-Za-z]", word):
            name = word.split("=", 1)[0]
            if name not in opts:
                return f"`{' '.join(path)}` has no option {name}; it has: " \
                       f"{', '.join(sorted(opts))}"
            if name in takes_value and "=" not in word:
                next(rest, None)  # its value
        elif word not in ("…", "...", "|", ""):
            positional += 1
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if all(p.nargs >= 0 for p in arguments) and positional > sum(p.nargs for p in arguments):
        names = " ".join(p.name.upper() for p in arguments)
        return f"`{' '.join(path)}` takes {len(arguments)} argument(s) ({names}), " \
               f"got {positional}: {' '.join(args[i:])}"
    return None


SHELL_PAGES = [p for p in PAGES if any(
    b.lang in SHELL and not b.skip and _commands(b.code) for b in blocks(p))]


@pytest.mark.parametrize("page", SHELL_PAGES, ids=_page_id)
def test_squall_commands_in_the_docs_exist(page):
    root = _root()
    problems = []
    for block in blocks(page):
        if block.lang not in SHELL or block.skip:
            continue
        for argv in _commands(block.code):
            why = check_argv(root, argv)
            if why:
                problems.append(f"{block.where()}: squall {' '.join(argv)}\n    {why}")
    assert not problems, "\n".join(problems)


# -- json ------------------------------------------------------------------------------

@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang == "json" and not b.skip for b in blocks(p))], ids=_page_id)
def test_json_blocks_parse(page):
    for block in blocks(page):
        if block.lang == "json" and not block.skip:
            try:
                json.loads(block.code)
            except ValueError as exc:
                pytest.fail(f"the json block at {block.where()} does not parse: {exc}")


# -- the checker itself, and the generated CLI reference --------------------------------

def test_the_block_parser_and_the_command_checker():
    page = ROOT / "docs" / "x.md"
    text = ("intro\n\n<!-- no-test: needs AWS -->\n```python\nboom()\n```\n"
            "```bash\nsquall dev app.py --port 8080\n```\n  ```json\n  {\"a\": 1}\n  ```\n")
    page_blocks = blocks(page, text)
    assert [(b.lang, b.skip, b.line, b.where()) for b in page_blocks][0] == (
        "python", "needs AWS", 4, "docs/x.md:4")
    assert [(b.lang, b.skip, b.line) for b in page_blocks] == [
        ("python", "needs AWS", 4), ("bash", None, 7), ("json", None, 10)]
    assert page_blocks[2].code == "{\"a\": 1}\n"
    # the test_* functions a block defines are called
    failing = blocks(page, "```python\ndef test_x():\n    assert 1 == 2\n```\n")
    with pytest.raises(AssertionError, match="the python block at docs/x.md:1 failed"):
        run_python(failing, ROOT)
    assert _commands("$ squall dev app.py  # serve\nls\nSQUALL_X=1 squall run a.py · "
                     "squall apps\nsquall send a.py q   squall dlq list a.py q\n"
                     "events/s     squall  other") == [
        ["dev", "app.py"], ["run", "a.py"], ["apps"], ["send", "a.py", "q"],
        ["dlq", "list", "a.py", "q"]]
    root = _root()
    assert check_argv(root, ["dev", "app.py", "--port", "1"]) is None
    assert check_argv(root, ["dev", "APP", "[--port", "8080]"]) is None
    assert "no command 'teleport'" in check_argv(root, ["teleport", "app.py"])
    assert "no option --colour" in check_argv(root, ["dev", "app.py", "--colour"])
    assert "takes 1 argument(s)" in check_argv(root, ["dev", "app.py", "more.py"])
    assert check_argv(root, ["logs", "shop", "quote", "--limit", "5", "--json"]) is None
    assert check_argv(root, ["dlq", "list|redrive", "APP", "orders"]) is None
    assert "no command bogus" in check_argv(root, ["dlq", "list|bogus", "APP"])


def test_the_cli_reference_is_generated_from_the_cli(tmp_path, capsys):
    from squall.cli.reference import main as reference_main

    page = ROOT / "docs" / "cli.md"
    stale = tmp_path / "cli.md"
    stale.write_text("# CLI reference\n", encoding="utf-8")
    assert reference_main(["--check", str(stale)]) == 1
    assert "is stale: regenerate it" in capsys.readouterr().err
    assert reference_main(["--check", str(page)]) == 0, (
        "docs/cli.md is stale (a command or option changed): regenerate it with "
        "`.venv/bin/python -m squall.cli.reference > docs/cli.md`")


LINK = re.compile(r"\]\((?!https?://|mailto:|#)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    dead = [m["target"] for m in LINK.finditer(text)
            if not (page.parent / m["target"]).exists()]
    assert not dead, f"{_page_id(page)} links to missing files: {', '.join(dead)}"


def test_every_page_is_linked_from_the_index():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(ROOT / "docs")) for p in ROOT.glob("docs/**/*.md")
               if p.name != "index.md" and f"({p.relative_to(ROOT / 'docs')})" not in index]
    assert not missing, f"docs/index.md does not link: {', '.join(sorted(missing))}"


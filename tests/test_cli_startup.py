"""What `squall` loads before it runs a command.

Every `squall ...` (even `--help`) imports squall.cli.main, which registers every command.
The subsystems behind the commands (the runtime, brokers and sources.messaging with its
cron parser, the workflow store and engine, the ASL machines, the secrets' cryptography,
asyncio) are imported by the commands that use them, not at start-up: these tests keep
it so. Each runs in a fresh interpreter, since this process has imported them already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Modules `import squall.cli.main` used to load (~0.5 s of its ~1.1 s) and must not again.
NOT_AT_STARTUP = [
    "asyncio",
    "cryptography",
    "croniter",
    "dateutil",
    "rich.progress",
    "squall.asl",
    "squall.backends.workflow_store",
    "squall.observe.cost",
    "squall.observe.traces",
    "squall.observe.tune",
    "squall.ops.workflows",
    "squall.runtime.runtime",
    "squall.runtime.zygote_client",
    "squall.security.secrets",
    "squall.security.stores",
    "squall.sources.messaging",
    "squall.sources.scheduler",
    "squall.sources.state",
    "squall.workflows.engine",
    "squall.workflows.machines",
]


def loaded_after(code: str) -> list[str]:
    """The NOT_AT_STARTUP modules loaded after running `code` in a fresh interpreter."""
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps([m for m in {NOT_AT_STARTUP!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_command_subsystem() -> None:
    assert loaded_after("import squall.cli.main") == []


def test_building_every_commands_help_needs_none_of_them() -> None:
    # typer resolves every command's signature and annotations here (what --help does)
    code = ("import io, contextlib\nfrom squall.cli import reference\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    assert reference.main([]) == 0\n"
            "assert '## `squall invoke`' in out.getvalue(), out.getvalue()[:300]")
    assert loaded_after(code) == []


def test_squall_help_runs_and_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "squall.cli.main", "--help"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    for command in ("invoke", "send", "dlq", "workflows", "signal", "secrets", "keys",
                    "schedules", "storage", "tune", "coldstart", "trace", "server"):
        assert f" {command} " in done.stdout, command


def test_the_workflow_engine_still_imports_from_the_package() -> None:
    code = ("import squall.workflows as w\nassert 'squall.workflows.engine' not in sys.modules\n"
            "from squall.workflows import WorkflowEngine, WorkflowFailed\n"
            "assert WorkflowEngine.__module__ == 'squall.workflows.engine'\n"
            "assert issubclass(WorkflowFailed, Exception)\n"
            "try:\n    w.NoSuchThing\nexcept AttributeError as exc:\n"
            "    assert 'NoSuchThing' in str(exc)\nelse:\n    raise AssertionError('no error')\n"
            "from squall.workflows.declare import MARKER\n"
            "from squall.workflows.engine import MARKER as ENGINE_MARKER\n"
            "assert MARKER == ENGINE_MARKER == '__squall_workflow__'")
    assert "squall.workflows.engine" in loaded_after(code)

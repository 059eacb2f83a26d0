"""Workers as a less privileged user (SQUALL_WORKER_USER): real zygote, real fork."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from squall.runtime.sandbox import SandboxError, drop_privileges
from squall.testing import TestClient

APP = str(Path(__file__).resolve().parents[1] / "apps" / "sandbox_app.py")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs the tests to run as root")
def test_workers_run_as_the_configured_user_and_cannot_read_private_files(tmp_path,
                                                                          monkeypatch):
    # Given a 0600 file owned by the supervisor's user (like the secrets key file)
    private = tmp_path / "secrets.key"
    private.write_text("key")
    private.chmod(0o600)
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setenv("SQUALL_WORKER_USER", "nobody")
    # When a function runs
    with TestClient(APP, isolated=True) as client:
        out = client.invoke("whoami", str(private), check=True).output
    # Then it runs as nobody and cannot read the file
    assert out == {"uid": nobody.pw_uid, "gid": nobody.pw_gid, "read": False}


def test_unknown_worker_user_is_a_clear_error():
    with pytest.raises(SandboxError, match="no such user"):
        drop_privileges({"SQUALL_WORKER_USER": "no-such-user-here"})
    assert drop_privileges({}) is None

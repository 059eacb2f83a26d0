"""What a worker gives up after the fork, before it runs user code.

With `SQUALL_WORKER_USER` set (a user name or uid) and the supervisor running as root,
each worker switches to that user and its primary group, drops supplementary groups and
sets no_new_privs (Linux): user code then cannot read the supervisor's files (the secret
key file, the key store, the databases are 0600/0700 and owned by the supervisor's
user), cannot signal the supervisor, and cannot regain privileges through setuid
binaries. Without root the variable is refused loudly rather than ignored.

This is defence in depth, not a sandbox: workers still share the kernel, the network,
and whatever the user may read. See docs/security.md ("Isolation").
"""

from __future__ import annotations

import ctypes
import os
import pwd

ENV = "SQUALL_WORKER_USER"
_PR_SET_NO_NEW_PRIVS = 38


class SandboxError(RuntimeError):
    pass


def target_user(environ: dict[str, str] | os._Environ = os.environ) -> pwd.struct_passwd | None:
    name = environ.get(ENV, "").strip()
    if not name:
        return None
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(f"{ENV}={name!r}: no such user on this machine") from None


def drop_privileges(environ: dict[str, str] | os._Environ = os.environ) -> int | None:
    """Become `SQUALL_WORKER_USER` (if set); returns the uid now in effect, or None."""
    user = target_user(environ)
    if user is None:
        return None
    if os.geteuid() != 0:
        if os.geteuid() == user.pw_uid:
            return user.pw_uid
        raise SandboxError(f"{ENV}={user.pw_name!r} needs the supervisor to run as root "
                           "(it switches each worker to that user); unset it or run as root")
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the uid switch still holds
        pass
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = user.pw_name
    return user.pw_uid

"""Secrets shared by every node of a cluster: Fernet ciphertexts in the app's store, one
master key given to each node.

When nodes share an app store, `squall secrets set` writes the value's Fernet token (the
same format as the embedded secrets.json) to the store's `security_secrets` table, and a
function reads it on any node. The master key is never stored there: every node and the
CLI get the same key from `SQUALL_SECRETS_KEY` (the key itself: 44 characters of URL-safe
base64, made by `squall secrets keygen`) or from a key file (`SQUALL_SECRETS_KEY_FILE`,
or the CLI's --key-file; mode 0600, as the embedded secrets.key, which can serve as one).

The first secret written also stores a check token: a fixed text encrypted under the
key. A node whose key does not decrypt it is refused, naming the fix: at start (so a
misconfigured node never serves), on `set` (so it cannot write secrets nobody else can
read) and on `get`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..backends.security_store import SqlSecurityRecords
from .files import InsecureFile, check_private
from .secrets import SecretError, checked_secret

KEY_ENV = "SQUALL_SECRETS_KEY"
KEY_FILE_ENV = "SQUALL_SECRETS_KEY_FILE"
_CHECK = b"squall shared secrets key check v1"
_FIX = (f"give every node and the CLI the same master key ({KEY_ENV}, or a key file in "
        f"{KEY_FILE_ENV})")


class SecretKeyError(SecretError):
    """The master key is missing, malformed, or not the one the shared secrets use."""


def master_key(key_file: str | Path | None = None,
               env: Mapping[str, str] = os.environ) -> tuple[bytes | None, str]:
    """The master key and where it came from (for messages): `key_file`, else
    SQUALL_SECRETS_KEY_FILE, else SQUALL_SECRETS_KEY; (None, …) when none is given."""
    text = env.get(KEY_ENV) or None
    path = key_file or env.get(KEY_FILE_ENV) or None
    if text and path:
        raise SecretKeyError(f"the secrets' master key is given twice ({KEY_ENV} and the key "
                             f"file {path}): give one")
    if path is not None:
        p = Path(path)
        source = f"the key file {p}"
        try:
            check_private(p)
            raw = p.read_bytes().strip()
        except InsecureFile as exc:
            raise SecretKeyError(str(exc)) from None
        except OSError as exc:
            raise SecretKeyError(f"cannot read the secrets' master key from {p}: "
                                 f"{exc.strerror or exc}") from None
    elif text is not None:
        source, raw = KEY_ENV, text.strip().encode()
    else:
        return None, f"no master key ({KEY_ENV} is not set)"
    try:
        Fernet(raw)
    except ValueError:
        raise SecretKeyError(f"{source} is not a Fernet key (44 characters of URL-safe "
                             "base64); make one with `squall secrets keygen`") from None
    return raw, source


class SharedSecretStore:
    """Encrypted secrets in the shared app store; the same API as SecretStore."""

    def __init__(self, records: SqlSecurityRecords, key: bytes | None, source: str) -> None:
        self.store = records
        self.source = source
        self._fernet = Fernet(key) if key is not None else None

    @property
    def has_key(self) -> bool:
        return self._fernet is not None

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyError(f"the shared secrets in {self.store.where} need a master key "
                                 f"and this node has none: {_FIX}")
        return self._fernet

    def _accept(self, check: str) -> None:
        try:
            ok = self._cipher().decrypt(check.encode()) == _CHECK
        except InvalidToken:
            ok = False
        if not ok:
            raise SecretKeyError(f"the master key from {self.source} is not the one the "
                                 f"secrets in {self.store.where} were written with: {_FIX}")

    def check(self) -> None:
        """Refuse a node that cannot read the secrets already stored (none: nothing to
        check, any key will do)."""
        stored = self.store.secrets_check()
        if stored is not None:
            self._accept(stored)

    def set(self, name: str, value: str) -> None:
        data = checked_secret(name, value)
        cipher = self._cipher()
        self.store.put_secret(name, cipher.encrypt(data).decode(),
                              cipher.encrypt(_CHECK).decode(), self._accept)

    def get(self, name: str) -> str:
        token = self.store.secret(name)
        if token is None:
            raise SecretError(f"no secret named {name!r} in {self.store.where}; set it with "
                              f"`squall secrets set {name} --store …`")
        try:
            return self._cipher().decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(f"secret {name!r} does not decrypt with the master key from "
                                 f"{self.source}: {_FIX}") from None

    def names(self) -> list[str]:
        return self.store.secret_names()

    def remove(self, name: str) -> None:
        if not self.store.delete_secret(name):
            raise SecretError(f"no secret named {name!r} in {self.store.where}")

    def values(self, names: Iterable[str]) -> list[str]:
        """The values of the named secrets that exist (for redaction)."""
        out = []
        for n in names:
            try:
                out.append(self.get(n))
            except SecretKeyError:
                raise
            except SecretError:
                continue
        return out

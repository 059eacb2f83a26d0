"""Secrets encrypted at rest: `squall secrets set|list|rm`, `secrets=[...]` on a function.

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from the `cryptography`
package) under a key kept in `secrets.key` beside them, mode 0600; a key file others can
read is refused. The supervisor decrypts a value only when a function that declared it
asks (`app.secret(name)`), so a function sees only its own secrets, and the values are
redacted from the invocation log (squall.security.redact).

This is the embedded mode's store; nodes that share an app store keep the ciphertexts in
it, under a master key given to every node (squall.security.shared_secrets).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from .files import check_private, write_private

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
MAX_SECRET_BYTES = 64 * 1024


class SecretError(ValueError):
    """A secret that cannot be stored or read; the message says why and what to do."""


def checked_secret(name: str, value: str) -> bytes:
    """The bytes to encrypt for secret `name`, or SecretError saying what is wrong."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise SecretError(f"secret name {name!r} is invalid: use letters, digits, '_', '.' "
                          "or '-', starting with a letter or '_' (at most 128)")
    data = value.encode() if isinstance(value, str) else value
    if not isinstance(data, bytes) or len(data) > MAX_SECRET_BYTES:
        raise SecretError(f"secret {name!r}: the value must be text of at most "
                          f"{MAX_SECRET_BYTES} bytes")
    return data


class SecretStore:
    """Encrypted secrets under `directory` (secrets.key + secrets.json)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.key_path = self.dir / "secrets.key"
        self.path = self.dir / "secrets.json"
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> SecretStore:
        return cls(Path(data_dir) / "security")

    def _cipher(self, create: bool) -> Fernet | None:
        if self._fernet is not None:
            return self._fernet
        if not self.key_path.exists():
            if not create:
                return None
            write_private(self.key_path, Fernet.generate_key())
        check_private(self.key_path)
        try:
            self._fernet = Fernet(self.key_path.read_bytes().strip())
        except ValueError:
            raise SecretError(f"{self.key_path} is not a Fernet key; restore it from your "
                              "backup (the secrets cannot be read without it)") from None
        return self._fernet

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        check_private(self.path)
        return json.loads(self.path.read_text())

    def set(self, name: str, value: str) -> None:
        data = checked_secret(name, value)
        with self._lock:
            cipher = self._cipher(create=True)
            assert cipher is not None
            doc = self._read()
            doc[name] = cipher.encrypt(data).decode()
            write_private(self.path, json.dumps(doc, indent=1).encode())

    def get(self, name: str) -> str:
        with self._lock:
            doc = self._read()
            token = doc.get(name)
            if token is None:
                raise SecretError(f"no secret named {name!r}; set it with `squall secrets set "
                                  f"{name}`")
            cipher = self._cipher(create=False)
            if cipher is None:
                raise SecretError(f"the key file {self.key_path} is missing; the secrets "
                                  "cannot be decrypted without it")
            try:
                return cipher.decrypt(token.encode()).decode()
            except InvalidToken:
                raise SecretError(f"secret {name!r} does not decrypt under {self.key_path}: "
                                  "the file or the key was changed") from None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._read())

    def remove(self, name: str) -> None:
        with self._lock:
            doc = self._read()
            if name not in doc:
                raise SecretError(f"no secret named {name!r}")
            del doc[name]
            write_private(self.path, json.dumps(doc, indent=1).encode())

    def values(self, names: Any) -> list[str]:
        """The values of the named secrets that exist (for redaction)."""
        out = []
        for n in names:
            try:
                out.append(self.get(n))
            except SecretError:
                continue
        return out


class SecretService:
    """The `secret` service workers call: a function gets only what it declared."""

    def __init__(self, store: SecretStore | None, declared: dict[str, list[str]]) -> None:
        self.store = store
        self.declared = declared

    def get(self, caller: str | None, name: Any) -> str:
        allowed = self.declared.get(caller or "", [])
        if name not in allowed:
            raise SecretError(f"function {caller!r} did not declare secret {name!r}; add "
                              f"secrets=[{name!r}] to its decorator")
        if self.store is None:
            raise SecretError("no secret store here")
        return self.store.get(name)

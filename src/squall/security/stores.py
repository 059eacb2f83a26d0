"""Where an app's API keys, daily quotas and secrets live, chosen once per node and CLI
call:

    embedded (no --store / SQUALL_STORE): files under <data-dir>/security (0600), quotas
        counted in the node's memory: squall.security.keys and .secrets, unchanged
    a shared app store (postgresql://…?schema=, or sqlite:///path shared by processes):
        the store's security_* tables, so every node sees the same keys, one daily count
        and the same secrets: squall.security.shared_keys and .shared_secrets

The embedded mode keeps its files (not squall.db) so that the 0600 guarantee of the
secrets' key file and ciphertexts stays as it was, and `squall keys` works on a data
directory without opening the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keys import KeyStore
from .secrets import SecretStore


@dataclass
class SecurityStores:
    keys: Any  # KeyStore | SharedKeyStore
    secrets: Any  # SecretStore | SharedSecretStore
    quotas: Any = None  # SharedQuotas, or None: counted by the gateway in memory
    records: Any = None  # the shared store's connection, closed by close()

    @property
    def shared(self) -> bool:
        return self.records is not None

    def close(self) -> None:
        self.keys.close()
        if self.quotas is not None:
            self.quotas.close()
        if self.records is not None:
            self.records.close()


def open_security(data_dir: str | Path, store_url: str | None = None, *,
                  key_file: str | Path | None = None, check: bool = False,
                  **options: Any) -> SecurityStores:
    """The stores for `store_url` (shared) or `data_dir` (embedded). `check`: refuse now
    (SecretKeyError) a node whose master key cannot read the shared secrets, as a node
    does at start. `options` go to SharedKeyStore (refresh_s, clock)."""
    if store_url is None:
        return SecurityStores(KeyStore.for_data_dir(data_dir),
                              SecretStore.for_data_dir(data_dir))
    from ..backends.security_store import open_security_records
    from .shared_keys import SharedKeyStore, SharedQuotas
    from .shared_secrets import SharedSecretStore, master_key

    key, source = master_key(key_file)  # a malformed key: refused before connecting
    records = open_security_records(store_url)
    try:
        secrets = SharedSecretStore(records, key, source)
        if check:
            secrets.check()
        keys = SharedKeyStore(records, **options)
    except BaseException:
        records.close()
        raise
    return SecurityStores(keys, secrets, SharedQuotas(records), records)

"""The dashboard's settings: defaults, overridable from the environment, checked once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping


class DashboardConfigError(ValueError):
    """A SQUALL_DASHBOARD_* variable has a value the dashboard cannot use."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    enabled: bool = True  # SQUALL_DASHBOARD=0 turns it off (404)
    poll_ms: int = 2000  # how often an open page refreshes itself
    redrive_rate: float = 100.0  # messages a second that one redrive moves, at most
    redrive_max: int = 1000  # messages that one click may redrive
    admin_token: str | None = None  # SQUALL_ADMIN_TOKEN: required when set

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env
        flag = env.get("SQUALL_DASHBOARD", "1").strip().lower()
        if flag not in ("1", "0", "on", "off", "true", "false", "yes", "no"):
            raise DashboardConfigError(f"SQUALL_DASHBOARD must be 1 or 0, got {flag!r}")
        return cls(
            enabled=flag in ("1", "on", "true", "yes"),
            poll_ms=int(bounded(env, "SQUALL_DASHBOARD_POLL_MS", 2000, 250, 600_000)),
            redrive_rate=bounded(env, "SQUALL_DASHBOARD_REDRIVE_RATE", 100.0, 0.1, 100_000),
            redrive_max=int(bounded(env, "SQUALL_DASHBOARD_REDRIVE_MAX", 1000, 1, 1_000_000)),
            admin_token=env.get("SQUALL_ADMIN_TOKEN") or None,
        )


def bounded(values: Mapping[str, str], name: str, default: float, lo: float, hi: float, *,
            whole: bool = False, error: Callable[[str], Exception] = DashboardConfigError
            ) -> float:
    """`values[name]` as a number from lo to hi (`default` when absent), or `error(message)`:
    for settings from the environment and for the API's query parameters alike."""
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise error(f"{name} must be a {'whole ' if whole else ''}number, got {raw!r}"
                    ) from None
    if not lo <= value <= hi:
        raise error(f"{name} must be from {_plain(lo)} to {_plain(hi)}, got {raw}")
    return value


def _plain(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)

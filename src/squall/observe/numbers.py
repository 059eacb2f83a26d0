"""Small numeric helpers: durations as people write them (30d, 12h, 15m), percentiles."""

from __future__ import annotations

import math


def parse_duration_s(text: str) -> float:
    """`30d`, `12h`, `15m`, `90s` or plain seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip()
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 30d, 12h, 15m, 90s)") from None
    if value <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return value


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]

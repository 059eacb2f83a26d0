"""One side's sequential single appends at synchronous=OFF, to count the instructions an
append costs (deterministic, unlike wall time on a shared machine):

    for n in 1000 3000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/eventstore_cpu.py squall $n 2>&1 | grep Collected
    done

Instructions per append = (the second count - the first) / 2000, so start-up and imports
cancel. Sides: squall, eventsourcing, bare (bench/eventstore.py's BareSide: one-row
transactions on Squall's schema, no version check). Figures in docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from eventstore import BareSide, EventsourcingSide, SquallSide  # noqa: E402

SIDES = {"squall": SquallSide, "eventsourcing": EventsourcingSide, "bare": BareSide}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in SIDES or not sys.argv[2].isdigit():
        sys.exit(f"usage: eventstore_cpu.py {'|'.join(SIDES)} APPENDS")
    n = int(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="squall-es-cpu-") as tmp:
        side = SIDES[sys.argv[1]](Path(tmp) / "es.db", "OFF")
        try:
            append = side.appender("acc")
            for i in range(n):
                append(i % 100, 1)
        finally:
            side.close()


if __name__ == "__main__":
    main()

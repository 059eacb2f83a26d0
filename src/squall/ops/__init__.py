"""What an operator reads and does, shared by the CLI and the dashboard.

`squall dlq …`, `squall schedules`, `squall workflows …` and the web dashboard call the
same functions here, so a number on a page and a number in a terminal come from one
query. Each function takes the open backend (broker, invocation log, workflow store)
rather than a data directory: the CLI opens its own, the dashboard passes the running
app's. Bad input raises `OpsError` with a stable code (`not_found`, `bad_request`) that
the CLI turns into exit 2 and the dashboard into a 4xx JSON body.

Layering: above backends/, sources/ and workflows/; below cli/ and dashboard/.
"""

from __future__ import annotations


class OpsError(Exception):
    """A request an operator made that cannot be done: `code` says which kind."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def not_found(message: str) -> OpsError:
    return OpsError(message, "not_found")


__all__ = ["OpsError", "not_found"]

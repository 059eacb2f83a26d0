"""Errors of the event layer, in a module of their own so that every event module can
raise them without importing another."""

from __future__ import annotations


class InvalidEvent(ValueError):
    """An event, or its JSON or HTTP form, breaks CloudEvents 1.0 (answer HTTP 400)."""

    status = 400
    code = "bad_request"  # a key of squall.gateway.errors.ERRORS

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

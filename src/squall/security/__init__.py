"""Gateway security: what a route declares (this module's exports, pure data) and what
the gateway enforces (keys, jwt_auth, authorizers, throttle, validation, guard), plus
secrets at rest (secrets) and redaction (redact). See docs/security.md."""

from .declare import JWT, Cors, Limits, RouteSecurity, Throttle

__all__ = ["JWT", "Cors", "Limits", "RouteSecurity", "Throttle"]

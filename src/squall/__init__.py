"""Squall: a serverless platform you run yourself."""

from .app import App, Function, NotRunning
from .config import ConfigError, FunctionConfig
from .events.http import BadRequest, HTTPError, NotFound, Request, Response
from .types import Context, HttpRequest, HttpResponse, InvocationResult

__all__ = [
    "App",
    "BadRequest",
    "ConfigError",
    "Context",
    "Function",
    "FunctionConfig",
    "HTTPError",
    "HttpRequest",
    "HttpResponse",
    "InvocationResult",
    "NotFound",
    "NotRunning",
    "Request",
    "Response",
]
__version__ = "0.1.0"

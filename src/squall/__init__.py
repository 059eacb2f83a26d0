"""Squall: a serverless platform you run yourself."""

from .app import App, Function, NotRunning
from .config import ConfigError, FunctionConfig, RetryPolicy
from .events.http import BadRequest, HTTPError, NotFound, Request, Response
from .events.queue import BatchResult, QueueMessage
from .observe.funclog import logger
from .state import Change, ConditionFailed, InvalidKey, LifecycleRule, ObjectEvent
from .types import Context, HttpRequest, HttpResponse, InvocationResult

__all__ = [
    "App",
    "BadRequest",
    "BatchResult",
    "Change",
    "ConditionFailed",
    "ConfigError",
    "Context",
    "Function",
    "FunctionConfig",
    "HTTPError",
    "HttpRequest",
    "HttpResponse",
    "InvalidKey",
    "InvocationResult",
    "LifecycleRule",
    "NotFound",
    "NotRunning",
    "ObjectEvent",
    "QueueMessage",
    "Request",
    "Response",
    "RetryPolicy",
    "logger",
]
__version__ = "0.1.0"

"""State for functions: tables with change streams, a cache, object storage.

    orders = app.table("orders", key="id")          # .put .get .query .update .delete
    cache = app.cache("sessions")                   # .get .set(ttl_s=) .incr .get_or_compute
    uploads = app.bucket("uploads")                 # .put .get .head .list .copy .delete

    @app.on_change("orders")                        # inserts/updates/deletes, in order per key
    def audit(changes, ctx): ...

    @app.on_object("uploads", suffix=".jpg")        # created/deleted objects
    def thumbnail(event, ctx): ...

Declarations and handles live here (no I/O); the stores behind them are in
squall.backends (Protocols in squall.backends.state), the service that runs every call
and the event sources in squall.sources.state and squall.sources.feeds. docs/state.md
has the guarantees.
"""

from ..backends.state import (AccessDenied, ConditionFailed, InvalidItem, InvalidKey,
                              InvalidRange, InvalidRequest, NotAnInteger, NotFound,
                              ObjectInfo, ObjectNotFound, ObjectTooLarge, StateError,
                              UnknownResource)
from .formats import Change, ObjectEvent
from .handles import Bucket, Cache, Item, Listing, Object, Page, Table
from .spec import BucketConfig, CacheConfig, LifecycleRule, TableConfig

__all__ = [
    "AccessDenied", "Bucket", "BucketConfig", "Cache", "CacheConfig", "Change",
    "ConditionFailed", "InvalidItem", "InvalidKey", "InvalidRange", "InvalidRequest", "Item",
    "LifecycleRule", "Listing", "NotAnInteger", "NotFound", "Object", "ObjectEvent",
    "ObjectInfo", "ObjectNotFound", "ObjectTooLarge", "Page", "StateError", "Table",
    "TableConfig", "UnknownResource",
]

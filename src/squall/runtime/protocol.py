"""The supervisor <-> zygote <-> worker wire format.

Frames are msgpack arrays written back to back on a unix socket: msgpack's streaming
`Unpacker` finds the boundaries, so there is no length prefix. Every frame starts with an
opcode. Invocations carry a per-connection integer id, so the supervisor may pipeline
several frames to one worker (which still runs one invocation at a time, in order).

supervisor -> zygote (ctrl socket, with SCM_RIGHTS fds [worker socket, log memfd])
    [FORK, function, t_request_monotonic]
zygote -> supervisor
    [MANIFEST, manifest]            once, after the app module imported
    [LOAD_ERROR, message, trace]    once, instead of MANIFEST, then the zygote exits
    [EXITED, pid, wait_status]      whenever a worker exits
supervisor -> worker
    [INVOKE, id, request_id, kind, payload, traceparent]
    [CALL_REPLY, call_id, ok, value]
worker -> supervisor
    [READY, pid, init_ms]
    [RESULT, id, status, value, error_type, error_message, stack, duration_ms,
     max_memory_mb, cold, init_ms, logs]
    [CALL, call_id, op, payload]    a service of the supervisor: "invoke", "send", ...
"""

from __future__ import annotations

import msgpack

# zygote
FORK = 1
MANIFEST = 2
LOAD_ERROR = 3
EXITED = 4
# worker
INVOKE = 10
CALL_REPLY = 11
READY = 20
RESULT = 21
CALL = 22

KIND_HTTP = "http"
KIND_EVENT = "event"

# RESULT status values
OK = "ok"
ERROR = "error"  # the handler raised, or returned something unusable
MEMORY = "memory"  # the worker passed its memory limit (it exits after replying)
EXIT = "crash"  # the handler called sys.exit (the worker exits after replying)

MAX_FRAME = 256 * 1024 * 1024


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME, strict_map_key=False)

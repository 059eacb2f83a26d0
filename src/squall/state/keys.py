"""Object keys: what may name an object, checked before anything touches storage.

Objects are stored under generated file names, never under their keys, so a key cannot
reach the filesystem at all; these rules are a second wall and keep keys portable
(S3 tools, URLs, other backends): no "." or ".." segments (also percent-encoded), no
absolute paths, no backslashes, no NUL or other control characters, valid UTF-8, at
most 1024 bytes (S3's limit).
"""

from __future__ import annotations

from urllib.parse import unquote

from ..backends.state import InvalidKey

MAX_KEY_BYTES = 1024
MAX_CACHE_KEY_CHARS = 1024


def check_object_key(bucket: str, key: object) -> str:
    def bad(why: str) -> InvalidKey:
        return InvalidKey(f"bucket {bucket!r}: object key {key!r} is not allowed: {why}")

    if not isinstance(key, str):
        raise bad("a key must be a string")
    if not key:
        raise bad("it is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad("it is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise bad(f"it is {size} bytes, over the {MAX_KEY_BYTES}-byte limit")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise bad("it contains NUL or another control character")
    if "\\" in key:
        raise bad("it contains a backslash")
    if key.startswith("/"):
        raise bad("it is an absolute path (starts with '/')")
    if len(key) >= 2 and key[1] == ":" and key[0].isalpha():
        raise bad("it looks like a drive path")
    for segment in key.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or segment in (".", ".."):
            raise bad("it has a '.' or '..' path segment")
        if "/" in decoded or "\\" in decoded or "\x00" in decoded:
            raise bad("it has an encoded '/', '\\' or NUL")
    return key


def check_prefix(bucket: str, prefix: object) -> str:
    if not isinstance(prefix, str):
        raise InvalidKey(f"bucket {bucket!r}: a prefix must be a string, got {prefix!r}")
    if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"bucket {bucket!r}: prefix is over {MAX_KEY_BYTES} bytes")
    return prefix


def check_cache_key(cache: str, key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_CACHE_KEY_CHARS:
        raise InvalidKey(f"cache {cache!r}: a key must be a string of 1-{MAX_CACHE_KEY_CHARS}"
                         f" characters, got {key!r}")
    return key

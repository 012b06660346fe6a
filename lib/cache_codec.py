"""The shared cache's values as MessagePack: data only, never code.

cachelib's RedisSerializer pickles every value but an int, so whoever can
write to the cache's Redis could make every process that reads an entry run
code of theirs. This codec writes and reads data only: None, booleans,
integers, floats, strings, bytes, lists and dicts, and, as MessagePack
extension types, tuples, Decimals, dates and datetimes, each read back as
the type it was written as (a datetime's time zone as its UTC offset).

Every value starts with ``MARK``. Whatever else a key holds (a pickle an
older release wrote, a plain number, another program's value, bytes cut
short) reads as None, a miss, and is never decoded further. Redis's INCR
cannot count on a value written so: nothing here counts in the cache.
"""
import datetime
from decimal import Decimal
from typing import Any

import msgpack
from cachelib.serializers import BaseRedisSerializer

# 0xC1 is the one byte MessagePack never uses; then the format's version.
MARK = b"\xc1\x01"
_TUPLE, _DECIMAL, _DATE, _DATETIME = 1, 2, 3, 4


class UncacheableValue(TypeError):
    """A value of a type the codec does not keep: a fault of the caller, not of Redis."""


def pack(value: Any) -> bytes:
    """Return ``value`` as MessagePack; raise UncacheableValue for a type the codec does not keep.

    strict_types sends tuples and subclasses of the built-in types to
    ``_to_ext``, so none comes back as another type.
    """
    return msgpack.packb(value, default=_to_ext, use_bin_type=True, strict_types=True)


def unpack(data: bytes | memoryview) -> Any:
    """Return the value ``pack`` wrote as ``data``; raise ValueError (or another error) if none."""
    return msgpack.unpackb(data, ext_hook=_from_ext, raw=False, strict_map_key=False)


def _to_ext(value: Any) -> msgpack.ExtType:
    kind = type(value)
    if kind is tuple:
        return msgpack.ExtType(_TUPLE, pack(list(value)))
    if kind is Decimal:
        return msgpack.ExtType(_DECIMAL, str(value).encode("ascii"))
    if kind is datetime.date:
        return msgpack.ExtType(_DATE, value.isoformat().encode("ascii"))
    if kind is datetime.datetime:
        return msgpack.ExtType(_DATETIME, value.isoformat().encode("ascii"))
    raise UncacheableValue(f"the cache does not store values of type {kind.__name__}")


def _from_ext(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        items = unpack(data)
        if type(items) is not list:
            raise ValueError("a tuple holds a list")
        return tuple(items)
    text = data.decode("ascii")
    if code == _DECIMAL:
        return Decimal(text)
    if code == _DATE:
        return datetime.date.fromisoformat(text)
    if code == _DATETIME:
        return datetime.datetime.fromisoformat(text)
    raise ValueError(f"unknown extension type {code}")


class MessagePackRedisSerializer(BaseRedisSerializer):
    """cachelib's serializer for Redis caches, on ``pack`` and ``unpack`` instead of pickle."""

    def dumps(self, value: Any, protocol: int | None = None) -> bytes:
        return MARK + pack(value)

    def loads(self, value: bytes | None) -> Any:
        """Return the value stored as ``value``; None for a missing key or any value not ours."""
        if value is None or not value.startswith(MARK):
            return None
        try:
            return unpack(memoryview(value)[len(MARK):])
        except Exception:  # whatever a foreign or damaged value makes the decoder raise
            return None

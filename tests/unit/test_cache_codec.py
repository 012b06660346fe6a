"""The shared cache's codec: each value back as written, and nothing but its own values decoded."""
import datetime
import pickle
from decimal import Decimal

import msgpack
import pytest

from lib.cache_codec import MARK, MessagePackRedisSerializer, UncacheableValue, pack

SERIALIZER = MessagePackRedisSerializer()
UTC = datetime.timezone.utc


def types_of(value):
    """Return the type of ``value`` and of everything it holds, as nested lists."""
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [types_of(item) for item in value]]
    if isinstance(value, dict):
        return ["dict", [[types_of(key), types_of(item)] for key, item in value.items()]]
    return type(value).__name__


class Planted:
    """A pickle that creates ``path`` when it is loaded: code run by whoever unpickles it."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


VALUES = {
    "generation": "91c05685c7ff65ba",
    "count": 1234567,
    "stored response": [b'{"data": {}, "info": {"error": ""}}\n',
                        [["Content-Type", "application/json"], ["ETag", 'W/"abc"']]],
    "statistics body": {"data": {"symbol": "IBM", "start_date": "2023-01-01",
                                 "average_daily_open_price": 123.36,
                                 "average_daily_volume": 4461071},
                        "info": {"error": ""}},
    "page body": {"data": [{"symbol": "IBM", "open_price": "126.0001", "dividend_amount": None}],
                  "pagination": {"count": 1, "page": 1, "limit": 100, "pages": 1},
                  "info": {"error": ""}},
    "empty page": {"data": [], "pagination": None, "info": {"error": ""}},
    "decimals": [Decimal("126.0001"), Decimal("1.2300"), Decimal("-0"), Decimal("1E+3"),
                 Decimal("-Infinity")],
    "dates": [datetime.date(2023, 3, 24), datetime.date(1, 1, 1)],
    "datetimes": [datetime.datetime(2026, 11, 30, 21, 5, 48, 123456),
                  datetime.datetime(2026, 11, 30, 21, 5, 48, tzinfo=UTC),
                  datetime.datetime(2026, 11, 30, 16, 5, tzinfo=datetime.timezone(
                      datetime.timedelta(hours=-5)))],
    "bytes": [b"", b"\x00\xff\x80!", bytes(range(256)) * 300],
    "tuples": ((), ("IBM", "AAPL"), (("IBM",), datetime.date(2023, 1, 3), 1000, 1)),
    "scalars": [None, True, False, 0, -1, 2**64 - 1, -2**63, 0.1, float("inf"), "", "é€😀"],
    "keys of every kind": {1: "one", "1": "text", b"1": "bytes", ("IBM", 2): "tuple",
                           None: "none"},
    "nested": {"rows": [{"price": Decimal("1.50"), "day": datetime.date(2024, 1, 2),
                         "raw": b"csv"}], "span": (datetime.date(2024, 1, 1), None)},
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_every_value_reads_back_as_written_with_its_types(value):
    stored = SERIALIZER.dumps(value)
    assert stored.startswith(MARK)
    read = SERIALIZER.loads(stored)
    assert read == value
    assert types_of(read) == types_of(value)
    assert repr(read) == repr(value), "decimals keep their places, datetimes their offsets"


def test_a_missing_key_reads_as_none():
    assert SERIALIZER.loads(None) is None


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_is_never_loaded(tmp_path, protocol):
    """Whatever an older release's serializer wrote (cachelib's "!" and a pickle), or bare."""
    marker = tmp_path / "ran"
    payload = pickle.dumps(Planted(marker), protocol)
    for stored in (b"!" + payload, payload, MARK + payload):
        assert SERIALIZER.loads(stored) is None
    assert not marker.exists()


def cut_short() -> bytes:
    stored = SERIALIZER.dumps(VALUES["nested"])
    return stored[:len(stored) // 2]


FOREIGN = {
    "empty": b"",
    "an older release's int": b"42",
    # Read from its third byte on, as a marked value is, it would be MessagePack's 51.
    "an int of three digits": b"123",
    "a negative int": b"-7",
    "text": b"financial",
    "JSON": b'{"data": {}}',
    "the mark alone": MARK,
    "a byte MessagePack never uses": MARK + b"\xc1",
    "cut short": cut_short(),
    "extra bytes after the value": SERIALIZER.dumps("abc") + b"\x01",
    "an unknown extension": MARK + msgpack.packb(msgpack.ExtType(99, b"x")),
    "a tuple of no list": MARK + msgpack.packb(msgpack.ExtType(1, pack("abc"))),
    "a decimal of no number": MARK + msgpack.packb(msgpack.ExtType(2, b"twelve")),
    "a date of no date": MARK + msgpack.packb(msgpack.ExtType(3, b"2023-02-30")),
    "a datetime not in ASCII": MARK + msgpack.packb(msgpack.ExtType(4, "2023-01-01é".encode())),
    "a string not in UTF-8": MARK + b"\xa2\xff\xfe",
    "a map keyed by a list": MARK + b"\x81\x91\x01\x01",
    "nested past the decoder's depth": MARK + b"\x91" * 100_000,
}


@pytest.mark.parametrize("stored", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_value_not_written_by_the_codec_reads_as_a_miss(stored):
    assert SERIALIZER.loads(stored) is None


@pytest.mark.parametrize("value", [object(), {1, 2}, frozenset(), datetime.time(12),
                                   type("Text", (str,), {})("IBM")],
                         ids=["object", "set", "frozenset", "time", "str subclass"])
def test_a_type_the_codec_cannot_keep_is_refused_when_stored(value):
    with pytest.raises(UncacheableValue):
        SERIALIZER.dumps(value)

"""Decode JSON telling the objects that name a key twice, which ``json.loads`` hides.

``json.loads`` keeps the last of two equal keys: an answer naming a day, or
a day's open, twice would lose one of them unseen. The usual answer names
none twice, and is decoded as fast as ``json.loads`` decodes it, and checked
in a few passes at C speed; only an answer the check cannot clear is decoded
again, noting them.
"""
import json
from typing import Any


class RepeatedKeys(dict):
    """A decoded JSON object that named a key more than once; it keeps the last value of each.

    ``repeated`` lists the keys named more than once, in the order of their second naming.
    """

    def __init__(self, pairs: Any, repeated: tuple[str, ...]) -> None:
        super().__init__(pairs)
        self.repeated = repeated


def loads_noting_repeats(body: str) -> Any:
    """Decode ``body`` as ``json.loads`` does; an object naming a key twice is a RepeatedKeys.

    Raises ValueError or RecursionError as ``json.loads`` does.
    """
    payload = json.loads(body)
    if body.count(":") == _members(payload):
        return payload
    return json.loads(body, object_pairs_hook=_noting_repeats)


def _members(payload: Any) -> int:
    """Count the members of the payload's objects down to a series' days.

    Outside its strings a JSON text holds one colon per member of its
    objects, and none elsewhere: a text with as many colons as the decoded
    objects have members names no key twice. Deeper objects are not counted,
    nor objects in lists, nor the members of objects beside other values in
    their object: a text holding them gets the thorough decode.
    """
    if payload.__class__ is not dict:
        return 0
    count = len(payload)
    for value in payload.values():
        if value.__class__ is not dict:
            continue
        count += len(value)
        items = value.values()
        # Counted at C speed, the days' fields, only when every member is an object.
        if list(map(type, items)).count(dict) == len(value):
            count += sum(map(len, items))
    return count


def _noting_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    decoded = dict(pairs)
    if len(decoded) == len(pairs):
        return decoded
    seen: set[str] = set()
    repeated = []
    for key, _value in pairs:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return RepeatedKeys(decoded, tuple(repeated))

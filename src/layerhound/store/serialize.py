"""A ``LayerResult`` as JSON and back, exactly, or not at all.

The codec is derived from the model's dataclass fields and their type hints,
so a field another part of the project adds to ``LayerResult``, ``Entry``,
``Finding``, ``Fact`` or ``LayerStats`` is stored without a change here. Two
guards keep a cache from ever serving something else than a fresh walk would
produce:

* ``schema_version()`` hashes every field name and type of those classes; the
  cache puts it in its key, so rows written for another shape of the model are
  stale (never half-decoded with defaults filling the gaps);
* ``dump_layer`` decodes what it wrote and refuses (``UnstorableResult``) a
  result that does not come back equal: a tuple or bytes in a finding's
  evidence would silently change type through JSON.

``load_layer`` checks every value against its field's type and raises
``UndecodableResult`` for anything else (truncated text, wrong types, unknown
enum values): the cache treats that row as a miss.

Entries are stored as arrays in field order (a Debian root has thousands of
them); everything else as objects. ``LayerResult.cached`` is not stored: it
says how this run got the result, not what the layer holds.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from layerhound.model import Entry, LayerResult

FORMAT = 1
"""Bumped when the encoding itself (not the model) changes."""

_COMPACT: frozenset[type] = frozenset({Entry})
"""Dataclasses stored as arrays in field order rather than as objects."""

_NOT_STORED: dict[type, frozenset[str]] = {LayerResult: frozenset({"cached"})}


class UndecodableResult(ValueError):
    """Stored text that is not a ``LayerResult`` of this schema."""


class UnstorableResult(ValueError):
    """A ``LayerResult`` that JSON cannot carry unchanged."""


Decoder = Callable[[Any], Any]


@cache
def _stored_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls)
    skipped = _NOT_STORED.get(cls, frozenset())
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skipped)


def _expect(value: Any, kind: type | tuple[type, ...], hint: Any) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise UndecodableResult(f"expected {hint!r}, got {type(value).__name__}")
    return value


@cache
def _decoder(hint: Any) -> Decoder:
    """A function that checks a JSON value against ``hint`` and builds it."""
    if hint is Any:
        return lambda value: value
    if hint in (str, int, bool):
        # ``type() is``, not isinstance: JSON gives exactly these, and a bool is no int here.
        # A cached re-scan decodes every entry of every layer: this is its inner loop.
        exact = hint

        def decode_exact(value: Any) -> Any:
            if type(value) is exact:
                return value
            raise UndecodableResult(f"expected {exact!r}, got {type(value).__name__}")

        return decode_exact
    if hint is float:
        return lambda value: float(_expect(value, (int, float), hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {member.value: member for member in hint}
        enum_name = hint.__name__

        def decode_enum(value: Any) -> Any:
            member = members.get(value) if isinstance(value, str | int) else None
            if member is None:
                raise UndecodableResult(f"{value!r} is not a valid {enum_name}")
            return member

        return decode_enum
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        item = _decoder(args[0])
        return lambda value: [item(x) for x in _expect(value, list, hint)]
    if origin is dict and args[0] is str:
        member = _decoder(args[1])

        def decode_dict(value: Any) -> Any:
            _expect(value, dict, hint)
            return {_expect(k, str, str): member(v) for k, v in value.items()}

        return decode_dict
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _decoder(next(a for a in args if a is not type(None)))
        return lambda value: None if value is None else inner(value)
    raise TypeError(f"no JSON codec for the model type {hint!r}")


def _dataclass_decoder(cls: type) -> Decoder:
    fields = [(name, _decoder(hint)) for name, hint in _stored_fields(cls)]
    names = {name for name, _ in fields}

    if cls in _COMPACT:
        decoders = tuple(decode for _, decode in fields)
        count = len(decoders)

        def decode_compact(value: Any) -> Any:
            if type(value) is not list or len(value) != count:
                raise UndecodableResult(f"expected {cls.__name__} as an array of {count}")
            return cls(*[decode(v) for decode, v in zip(decoders, value, strict=True)])

        return decode_compact

    def decode_object(value: Any) -> Any:
        if not isinstance(value, dict) or value.keys() != names:
            raise UndecodableResult(f"expected {cls.__name__} with fields {sorted(names)}")
        return cls(**{name: decode(value[name]) for name, decode in fields})

    return decode_object


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    kind: type = type(value)
    if kind in _PLAIN:  # by far the most values: checked first, exactly (a str-Enum is no plain str)
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if kind is list:
        return [v if type(v) in _PLAIN else _encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = _stored_fields(kind)
        if kind in _COMPACT:
            return [_encode(getattr(value, name)) for name, _ in fields]
        return {name: _encode(getattr(value, name)) for name, _ in fields}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


@cache
def _exact_through_json(cls: type) -> bool:
    """Whether every stored field reachable from ``cls`` has a type JSON carries exactly (no ``Any``):
    then the round trip of ``dump_value`` cannot find a difference and is skipped."""

    def exact(hint: Any) -> bool:
        if hint is Any:
            return False
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return all(exact(sub) for _, sub in _stored_fields(hint))
        return all(exact(arg) for arg in typing.get_args(hint))

    return exact(cls)


def layer_to_json(result: LayerResult) -> dict[str, Any]:
    """The JSON-able form of ``result`` (without ``cached``)."""
    encoded: dict[str, Any] = _encode(result)
    return encoded


def layer_from_json(value: Any) -> LayerResult:
    """Inverse of ``layer_to_json``; raises ``UndecodableResult``."""
    result: LayerResult = decode(LayerResult, value)
    return result


def dump_value(value: Any) -> str:
    """A model dataclass as compact JSON text; raises ``UnstorableResult`` unless
    ``load_value`` gives back an equal value (``LayerResult.cached`` aside)."""
    cls: type = type(value)
    what = f"layer {value.digest}" if isinstance(value, LayerResult) else cls.__name__
    try:
        text = json.dumps(_encode(value), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UnstorableResult(f"{what}: {exc}") from exc
    if _exact_through_json(cls):
        return text
    expected = dataclasses.replace(value, cached=False) if isinstance(value, LayerResult) else value
    try:
        same = load_value(cls, text) == expected
    except UndecodableResult as exc:
        raise UnstorableResult(f"{what}: {exc}") from exc
    if not same:
        raise UnstorableResult(f"{what}: does not survive JSON unchanged")
    return text


def load_value(cls: Any, text: str | bytes) -> Any:
    """Parse ``dump_value`` output of type ``cls``; raises ``UndecodableResult``."""
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UndecodableResult(f"not JSON: {exc}") from exc
    return decode(cls, value)


def dump_layer(result: LayerResult) -> str:
    """``result`` as compact JSON text (see ``dump_value``)."""
    return dump_value(result)


def load_layer(text: str | bytes) -> LayerResult:
    """Parse ``dump_layer`` output; raises ``UndecodableResult``."""
    result: LayerResult = load_value(LayerResult, text)
    return result


def encode(value: Any) -> Any:
    """Any model value (dataclasses, enums, lists, dicts) as JSON-able data."""
    return _encode(value)


def decode(cls: Any, value: Any) -> Any:
    """Check ``value`` against the type ``cls`` and build it; raises ``UndecodableResult``."""
    try:
        return _decoder(cls)(value)
    except UndecodableResult:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # a wrong shape deep inside
        raise UndecodableResult(str(exc)) from exc


def _model_classes(root: type = LayerResult) -> list[type]:
    """``root`` and every dataclass reachable from its fields, in a fixed order."""
    found: list[type] = []

    def visit(hint: Any) -> None:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if hint not in found:
                found.append(hint)
                for _, sub in _stored_fields(hint):
                    visit(sub)
            return
        for arg in typing.get_args(hint):
            visit(arg)

    visit(root)
    return found


@cache
def schema_version(root: type = LayerResult) -> str:
    """``s<FORMAT>-<hash>`` of every stored field's name and type reachable from ``root``."""
    shape = [
        [cls.__name__, cls in _COMPACT, [[name, repr(hint)] for name, hint in _stored_fields(cls)]]
        for cls in _model_classes(root)
    ]
    digest = hashlib.sha256(json.dumps(shape, separators=(",", ":")).encode()).hexdigest()[:12]
    return f"s{FORMAT}-{digest}"

"""Field types with bounds, and the one checker that validates every message field.

Messages declare their fields with the aliases below (``Text``, ``U32``, ``Fraction``...). The
bounds live in ``Annotated`` metadata, so the schema is data: :func:`field_checkers` compiles a
message class's type hints once into checkers that validate values (and normalise them: ``int``
to ``float`` for float fields, lists to tuples, mappings to nested dataclasses when decoding).
Every failure is a :class:`LocalProtocolError`; the codec re-raises it as a remote error when the
value came off the wire.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from shared.protocol.errors import LocalProtocolError

Checker = Callable[[Any, str], Any]


@dataclass(frozen=True, slots=True)
class MaxLen:
    """At most ``n`` characters (str), bytes (bytes) or items (tuple, dict)."""

    n: int


@dataclass(frozen=True, slots=True)
class Range:
    """A number in ``[lo, hi]``."""

    lo: float
    hi: float


U32_MAX = 2**32 - 1
U63_MAX = 2**63 - 1

U32 = Annotated[int, Range(0, U32_MAX)]
U63 = Annotated[int, Range(0, U63_MAX)]
Fraction = Annotated[float, Range(0.0, 1.0)]
Seconds = Annotated[float, Range(0.0, 1e7)]
Millis = Annotated[float, Range(0.0, 1e9)]
Hertz = Annotated[float, Range(0.0, 1e5)]
Timestamp = Annotated[float, Range(-1e12, 1e12)]
Token = Annotated[str, MaxLen(128)]
Name = Annotated[str, MaxLen(64)]
Text = Annotated[str, MaxLen(4096)]

_DEFAULT_MAX_LEN = 4096


def _fail(where: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"invalid field {where}: {why}")


def _check_int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise _fail(where, f"expected an integer, got {type(value).__name__}")
    return value


def _check_float(value: Any, where: str) -> float:
    if type(value) not in (int, float):
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise _fail(where, "not a finite number")
    return result


def _check_bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise _fail(where, f"expected true/false, got {type(value).__name__}")
    return value


def _check_str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise _fail(where, f"expected a string, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(where, "not valid Unicode text (lone surrogate)") from None
    return value


def _check_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise _fail(where, f"expected bytes, got {type(value).__name__}")


_SCALARS: dict[Any, Checker] = {
    int: _check_int,
    float: _check_float,
    bool: _check_bool,
    str: _check_str,
    bytes: _check_bytes,
}


def _with_bounds(inner: Checker, bounds: tuple[Any, ...]) -> Checker:
    max_len = next((b.n for b in bounds if isinstance(b, MaxLen)), None)
    ranges = [b for b in bounds if isinstance(b, Range)]

    def check(value: Any, where: str) -> Any:
        result = inner(value, where)
        for r in ranges:
            if not r.lo <= result <= r.hi:
                raise _fail(where, f"{result!r} outside [{r.lo:g}, {r.hi:g}]")
        if max_len is not None and len(result) > max_len:
            raise _fail(where, f"longer than {max_len}")
        return result

    return check


def _literal(options: tuple[Any, ...]) -> Checker:
    def check(value: Any, where: str) -> Any:
        if type(value) is str and value in options:
            return value
        raise _fail(where, f"expected one of {list(options)}")

    return check


def _optional(inner: Checker) -> Checker:
    def check(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)

    return check


def _tuple_of(item: Checker, max_items: int) -> Checker:
    def check(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(where, f"expected a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise _fail(where, f"more than {max_items} items")
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return check


def _dict_of(item: Checker, max_items: int) -> Checker:
    def check(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(where, f"expected an object, got {type(value).__name__}")
        if len(value) > max_items:
            raise _fail(where, f"more than {max_items} entries")
        return {_bounded_key(k, where): item(v, f"{where}[{k!r}]") for k, v in value.items()}

    return check


def _bounded_key(key: Any, where: str) -> str:
    if type(key) is not str or not 0 < len(key) <= 64:
        raise _fail(where, "keys must be strings of 1-64 characters")
    return key


def _nested(cls: type[Any]) -> Checker:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return build(cls, value)
        raise _fail(where, f"expected {cls.__name__}")

    return check


def compile_hint(hint: Any, bounds: tuple[Any, ...] = ()) -> Checker:
    """Turn a field's type hint into a checker ``(value, where) -> normalised value``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    max_len = next((b.n for b in bounds if isinstance(b, MaxLen)), _DEFAULT_MAX_LEN)
    if origin is Annotated:
        return compile_hint(args[0], tuple(args[1:]))
    if origin is typing.Literal:
        return _literal(args)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _optional(compile_hint(inner, bounds))
    if origin is tuple:
        return _tuple_of(compile_hint(args[0]), max_len)
    if origin is dict:
        return _dict_of(compile_hint(args[1]), max_len)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _nested(hint)
    if hint in (str, bytes):
        return _with_bounds(_SCALARS[hint], (*bounds, MaxLen(max_len)))
    if hint in _SCALARS:
        return _with_bounds(_SCALARS[hint], bounds) if bounds else _SCALARS[hint]
    raise TypeError(f"unsupported field type {hint!r}")


_CHECKERS: dict[type[Any], tuple[tuple[str, Checker, bool], ...]] = {}


def field_checkers(cls: type[Any]) -> tuple[tuple[str, Checker, bool], ...]:
    """``(name, checker, required)`` for each field of a dataclass, compiled once per class."""
    found = _CHECKERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = tuple(
            (
                f.name,
                compile_hint(hints[f.name]),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
        _CHECKERS[cls] = found
    return found


def validate(obj: Any) -> None:
    """Check (and normalise in place) every field of a frozen dataclass instance."""
    for name, check, _ in field_checkers(type(obj)):
        value = getattr(obj, name)
        normal = check(value, f"{type(obj).__name__}.{name}")
        if normal is not value:
            object.__setattr__(obj, name, normal)


def build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Construct ``cls`` from a decoded mapping; unknown keys are ignored (newer minor versions)."""
    kwargs: dict[str, Any] = {}
    for name, _, required in field_checkers(cls):
        if name in data:
            kwargs[name] = data[name]  # checked and normalised by the class's __post_init__
        elif required:
            raise _fail(f"{cls.__name__}.{name}", "missing")
    return cls(**kwargs)

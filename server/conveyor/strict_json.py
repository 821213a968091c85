"""Strict, bounded JSON: what every door accepts, and so what Conveyor stores and answers.

RFC 8259 JSON within limits: UTF-8 text; no lone surrogates in strings or keys (valid JSON
escapes, but no Unicode text: no encoder can write them back out); no NaN or Infinity, nor a
number that overflows to one; integers that fit 64 bits; nesting no deeper than ``max_depth``.
Whatever passes can be stored, read back and sent to any client, in any door.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

Path = tuple[str | int, ...]


class NotStrictJson(ValueError):
    """The text or value is not strict JSON; ``path`` says where (``()``: the whole of it)."""

    def __init__(self, reason: str, path: Path = ()) -> None:
        self.reason = reason
        self.path = path
        where = f" at {self.location}" if path else ""
        super().__init__(f"{reason}{where}")

    @property
    def location(self) -> str | None:
        """The path as ``arguments.items[2]``, or None for the whole value."""
        if not self.path:
            return None
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON, or raise ``NotStrictJson`` saying what is wrong with it."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if text.startswith("\ufeff"):
            raise NotStrictJson("not JSON (a byte order mark before it)")
        value = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise NotStrictJson("the text is not UTF-8") from None
    except RecursionError:
        raise NotStrictJson(f"nesting deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise NotStrictJson(f"not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # Python's own bound on integer digits; ours is far lower
        if isinstance(exc, NotStrictJson):
            raise
        raise NotStrictJson("a number beyond 64-bit integers") from None
    check(value, max_depth=max_depth)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``NotStrictJson`` unless ``value`` (parsed JSON, or built in Python) is strict JSON."""
    if not _is_strict(value, max_depth):
        _find_fault(value, max_depth)  # walked again, with paths, to say where


def _is_strict(value: Any, max_depth: int) -> bool:
    """Whether ``value`` is strict JSON: the check every message and argument takes, so it
    keeps no paths (``_find_fault`` works out where a fault is, once there is one)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _is_unicode(item):
                return False
        elif kind is dict:
            if depth >= max_depth:
                return False
            for key, member in item.items():
                if type(key) is not str or (not key.isascii() and not _is_unicode(key)):
                    return False
                stack.append((member, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= max_depth:
                return False
            stack.extend((member, depth + 1) for member in item)
        elif kind is int:
            if not INT_MIN <= item <= INT_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is None or kind is bool:
            continue
        else:
            return False  # a subclass, or not JSON at all: the careful walk decides
    return True


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find_fault(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise NotStrictJson("an integer beyond 64 bits", path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise NotStrictJson("NaN or Infinity, which JSON has no number for", path)
        elif isinstance(item, dict | list | tuple):
            if len(path) >= max_depth:
                raise NotStrictJson(f"nesting deeper than {max_depth} levels", path)
            if isinstance(item, dict):
                for key, member in item.items():
                    if not isinstance(key, str):
                        raise NotStrictJson("an object key that is not a string", path)
                    _check_text(key, (*path, key))
                    stack.append((member, (*path, key)))
            else:
                stack.extend((member, (*path, index)) for index, member in enumerate(item))
        else:
            raise NotStrictJson(f"a {type(item).__name__}, which is not JSON", path)


# Made once: json.dumps makes a new encoder for every call given options (each job dumps several).
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_SPACED = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def dumps(value: Any, *, compact: bool = True) -> str:
    """JSON text of a strict value (``ValueError`` for NaN; a surrogate fails on encoding);
    ``compact=False`` spaces it as people (and models) read it."""
    return (_COMPACT if compact else _SPACED).encode(value)


def clean_text(text: str) -> str:
    """The text with each lone surrogate replaced by U+FFFD (for free text: messages, logs)."""
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def sanitized(value: Any) -> Any:
    """A strict copy of a value that may not be: lone surrogates become U+FFFD, NaN and Infinity
    null. For what was stored before every door checked its input, and for free-form tool output."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        return str(value)
    if isinstance(value, dict):
        return {clean_text(str(key)): sanitized(member) for key, member in value.items()}
    if isinstance(value, list | tuple):
        return [sanitized(member) for member in value]
    return value


def _check_text(text: str, path: Path) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotStrictJson("invalid Unicode (a lone surrogate)", path) from None


def _refuse_constant(name: str) -> Any:
    raise NotStrictJson(f"{name}, which is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # made once: json.loads makes one per call

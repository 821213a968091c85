"""The ``timeout_s`` argument of the built-in toolkits: the settings' default, within their maximum."""

from __future__ import annotations

from conveyor.errors import InvalidArguments


def bounded_timeout(requested: float | None, *, default_s: float, max_s: float) -> float:
    """The timeout a run gets: ``default_s`` (never above ``max_s``) when none is asked for, and
    INVALID_ARGUMENTS for one above ``max_s``."""
    if requested is None:
        return min(default_s, max_s)
    if requested > max_s:
        raise InvalidArguments(f"timeout_s may be at most {max_s:g} seconds", argument="timeout_s")
    return requested

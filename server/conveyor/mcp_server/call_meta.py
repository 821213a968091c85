"""What a ``tools/call`` may say in its ``_meta`` besides the protocol's own keys.

``conveyor/version`` names the version of the tool to run, as a tool's own ``_meta`` (in
``tools/list``) names the version it is. Left out: the newest. The same on a direct call and on a
call that becomes a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.errors import InvalidArguments
from conveyor.schemas import MAX_VERSION_CHARS

VERSION_META = "conveyor/version"


def requested_version(meta: Mapping[str, Any] | None) -> str | None:
    """The tool version a call's ``_meta`` names, if it names one."""
    version = meta.get(VERSION_META) if meta else None
    if version is None:
        return None
    if not isinstance(version, str) or not 1 <= len(version) <= MAX_VERSION_CHARS:
        raise InvalidArguments(
            f"_meta {VERSION_META} must be a tool version (text of 1 to {MAX_VERSION_CHARS} characters)",
            argument="version",
            suggested_fix="Name one of the versions GET /tools lists for the tool, or leave it out for the newest.",
        )
    return version

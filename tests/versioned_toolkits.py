"""A tool published in two versions, for test_tool_versions.py, and the same toolkit as a server
that has only one of them would load it (before an upgrade, or after one dropped the old version).

1.10.0 is newer than 1.9.0 (numerically, not as text): the default.
"""

from __future__ import annotations

import os

from conveyor import Toolkit

OLD, NEW = "1.9.0", "1.10.0"


def _versions(*which: str) -> Toolkit:
    kit = Toolkit("verkit", description="A tool in two versions, for Conveyor's tests.")
    if OLD in which:

        @kit.tool(name="greet", version=OLD, read_only=True)
        def greet_old(name: str) -> dict[str, object]:
            """Greet someone, the old way."""
            return {"greeting": f"Hello, {name}.", "version": OLD, "pid": os.getpid()}

    if NEW in which:

        @kit.tool(name="greet", version=NEW, read_only=True)
        def greet_new(name: str, punctuation: str = "!") -> dict[str, object]:
            """Greet someone, the new way."""
            return {"greeting": f"Hi, {name}{punctuation}", "version": NEW, "pid": os.getpid()}

    @kit.tool(read_only=True)
    def other() -> str:
        """A tool of the toolkit's own version."""
        return "other"

    return kit


toolkit = _versions(OLD, NEW)
newest_only = _versions(NEW)
oldest_only = _versions(OLD)

"""Loads toolkits (dotted paths and the ``conveyor.toolkits`` entry points) and finds tools.

Most toolkits' tools are fixed once loaded; an upstream's change while Conveyor runs (it lists
them when it connects, and again when told they changed). ``refresh`` takes a toolkit's tools
up again, and ``on_change`` listeners (the MCP server telling its clients, the engine's claim)
hear of every change.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import entry_points

from conveyor.errors import ConfigError, InvalidArguments, ToolNotFound
from conveyor.tool_search import ToolIndex
from conveyor.toolkit import Tool, Toolkit

ENTRY_POINT_GROUP = "conveyor.toolkits"

logger = logging.getLogger("conveyor.registry")


def import_toolkit(dotted: str) -> Toolkit:
    """Import ``package.module:attribute`` (``:toolkit`` is the default attribute)."""
    module_name, _, attribute = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name == module_name.split(".")[0]:  # the module itself, not something it imports
            hint = (
                f"; it is looked for among the installed packages and in the current directory "
                f"({os.getcwd()}): run Conveyor where {exc.name} is, add its directory to PYTHONPATH, "
                "or install it"
            )
        raise ConfigError(f"cannot import toolkit module {module_name!r}: {exc}{hint}") from exc
    except ImportError as exc:
        raise ConfigError(f"cannot import toolkit module {module_name!r}: {exc}") from exc
    found = getattr(module, attribute or "toolkit", None)
    if not isinstance(found, Toolkit):
        raise ConfigError(f"{dotted!r} is not a conveyor Toolkit (got {type(found).__name__})")
    return found


def entry_point_toolkits() -> Iterator[tuple[str, Toolkit]]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(loaded, Toolkit):
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) is not a conveyor Toolkit")
        yield ep.value, loaded


class Registry:
    """All loaded tools by wire name (``<toolkit>_<tool>``)."""

    def __init__(self, toolkits: Iterable[tuple[str, Toolkit]] = ()) -> None:
        self.toolkits: dict[str, Toolkit] = {}
        self._tools: dict[str, Tool] = {}
        self._origin: dict[str, str] = {}
        self._sorted: list[Tool] | None = None
        self._index: tuple[int, ToolIndex] | None = None  # built for the version it holds
        self._listeners: dict[object, Callable[[], None]] = {}
        self.version = 0  # counts changes: what was worked out from the tools holds while it stays
        for origin, toolkit in toolkits:
            self.add(toolkit, origin=origin)

    @classmethod
    def load(cls, dotted_paths: Iterable[str], *, entry_points_enabled: bool = True) -> Registry:
        sources = [(path, import_toolkit(path)) for path in dotted_paths]
        if entry_points_enabled:
            sources.extend(entry_point_toolkits())
        registry = cls()
        for origin, toolkit in sources:
            if registry.toolkits.get(toolkit.name) is toolkit:
                continue  # the same toolkit named twice (a path and its entry point) is one toolkit
            registry.add(toolkit, origin=origin)
        return registry

    def add(self, toolkit: Toolkit, *, origin: str = "<code>") -> None:
        if toolkit.name in self.toolkits and self.toolkits[toolkit.name] is not toolkit:
            raise ConfigError(
                f"two toolkits are named {toolkit.name!r}: {self._origin[toolkit.name]} and {origin}"
            )
        for tool in toolkit.tools.values():
            if tool.wire_name in self._tools and self._tools[tool.wire_name] is not tool:
                other = self._tools[tool.wire_name]
                raise ConfigError(
                    f"tool name {tool.wire_name!r} is defined twice: by toolkit {other.toolkit!r} "
                    f"({self._origin[other.toolkit]}) and by toolkit {toolkit.name!r} ({origin})"
                )
        self.toolkits[toolkit.name] = toolkit
        self._origin[toolkit.name] = origin
        for tool in toolkit.tools.values():
            self._tools[tool.wire_name] = tool
        self._changed()

    def refresh(self, toolkit: Toolkit) -> list[str]:
        """Take up the current tools of a toolkit added before (an upstream's, listed again); a
        tool whose name another toolkit's tool has is left out, logged, and its name returned."""
        for wire_name in [name for name, tool in self._tools.items() if tool.toolkit == toolkit.name]:
            del self._tools[wire_name]
        refused = []
        for tool in toolkit.tools.values():
            other = self._tools.get(tool.wire_name)
            if other is not None:
                refused.append(tool.wire_name)
                logger.error(
                    "tool name taken",
                    extra={"action": "registry.collision", "tool": tool.wire_name, "by": other.toolkit},
                )
                continue
            self._tools[tool.wire_name] = tool
        self._changed()
        return refused

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each change of the tools; returns what unsubscribes it."""
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    def _changed(self) -> None:
        self.version += 1
        self._sorted = None
        for listener in list(self._listeners.values()):
            try:
                listener()
            except Exception:  # one listener's failure must not keep the change from the others
                logger.exception("registry listener failed", extra={"action": "registry.listener_failed"})

    def get(self, wire_name: str, version: str | None = None, *, newest_if_missing: bool = False) -> Tool:
        """The tool; of ``version`` if given (else the newest). A version the tool lacks is
        INVALID_ARGUMENTS, or with ``newest_if_missing`` the newest (a job that named no version,
        run after an upgrade took away the one that was newest when it was submitted)."""
        try:
            tool = self._tools[wire_name]
        except KeyError:
            raise ToolNotFound(f"Tool {wire_name!r} does not exist", tool=wire_name) from None
        if version is None or version == tool.version:
            return tool
        found = tool.toolkit_ref.tool_versions.get(tool.name, {}).get(version)
        if found is not None or newest_if_missing:
            return found or tool
        raise InvalidArguments(
            f"Tool {wire_name} has no version {version!r}",
            argument="version",
            details={"versions": list(tool.versions)},
            suggested_fix=f"Leave version out for the newest, or name one of: {', '.join(tool.versions)}.",
        )

    def __contains__(self, wire_name: object) -> bool:
        return wire_name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        if self._sorted is None:
            self._sorted = sorted(self._tools.values(), key=lambda t: t.wire_name)
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._tools)

    def search(self, query: str, limit: int) -> list[tuple[Tool, float]]:
        """The ``limit`` tools that fit the query best, with their scores, best first (equal scores
        by name); tools no word of the query matches are left out. Ranked by BM25 over name, title,
        description and argument names (``tool_search``); the index is built again, when next
        searched, after the tools changed."""
        if self._index is None or self._index[0] != self.version:
            self._index = (self.version, ToolIndex(self))
        return self._index[1].search(query, limit)

"""The ``tools/list`` answer, and telling clients when it changed (an upstream's tools came or went).

The MCP definitions are worked out again only when the registry changed. 2025-11-25 sessions
that listed the tools get ``notifications/tools/list_changed``; 2026-07-28 clients get it on
their ``subscriptions/listen`` streams (``toolsListChanged``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.subscriptions import SubscriptionBus, ToolsListChanged

from conveyor.events import Wakeup
from conveyor.registry import Registry

logger = logging.getLogger("conveyor.mcp")


class ToolList:
    def __init__(
        self, registry: Registry, define: Callable[[Registry], list[types.Tool]], bus: SubscriptionBus
    ) -> None:
        self.registry = registry
        self._define = define
        self._bus = bus
        self._listed: tuple[int, list[types.Tool]] = (-1, [])
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()  # 2025 sessions that listed tools
        self._changed = Wakeup()

    def tools(self) -> list[types.Tool]:
        version, tools = self._listed
        if version != self.registry.version:
            tools = self._define(self.registry)
            self._listed = (self.registry.version, tools)
        return tools

    def listed_by(self, session: Any) -> None:
        """A 2025-11-25 session listed the tools: it is told when they change."""
        self._sessions.add(session)

    @asynccontextmanager
    async def announcing(self) -> AsyncIterator[None]:
        """For as long as the server runs, tell clients of every change of the tools."""
        unsubscribe = self.registry.on_change(self._changed.set)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._announce)
                yield
                tg.cancel_scope.cancel()
        finally:
            unsubscribe()

    async def _announce(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._bus.publish(ToolsListChanged())
            for session in list(self._sessions):
                try:
                    await session.send_tool_list_changed()
                except Exception:  # a client that went away
                    logger.debug(
                        "tool list change not sent", exc_info=True, extra={"action": "mcp.list_changed_lost"}
                    )
                    self._sessions.discard(session)

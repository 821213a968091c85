"""Which protocol era a request speaks: 2025-11-25 (handshake) or 2026-07-28 (per-request)."""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.context import ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

Era = Literal["2025", "2026"]


def era_of(ctx: ServerRequestContext[Any, Any]) -> Era:
    return "2026" if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else "2025"

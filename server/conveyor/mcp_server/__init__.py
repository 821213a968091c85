"""The MCP front door: registry tools, the jobs meta-tools, both protocol eras."""

from conveyor.mcp_server.server import build_server

__all__ = ["build_server"]

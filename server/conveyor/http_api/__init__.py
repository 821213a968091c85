"""The HTTP front door: one Starlette app with the REST API and MCP over streamable HTTP at /mcp."""

from conveyor.http_api.app import build_app, serve_http

__all__ = ["build_app", "serve_http"]

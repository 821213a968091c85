"""The client connection behind a request.

The SDK makes a ``ServerSession`` per request; what lasts for as long as the client stays
connected (and what it subscribed with) is the connection behind it. The SDK does not expose
it on the request context yet, so it is read here, in one place.
"""

from __future__ import annotations

from mcp.server.connection import Connection
from mcp.server.session import ServerSession


def connection_of(session: ServerSession) -> Connection:
    return session._connection

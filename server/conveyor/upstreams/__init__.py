"""MCP servers Conveyor stands in front of: each one's tools are served as ``<name>_<tool>``,
callable directly or as jobs, from every process (servers and workers connect to them alike)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.abc

from conveyor.errors import ConfigError
from conveyor.registry import Registry
from conveyor.settings import UpstreamConfig
from conveyor.upstreams.connection import UpstreamConnection

__all__ = ["UpstreamConnection", "Upstreams"]


class Upstreams:
    def __init__(
        self, configs: Sequence[UpstreamConfig], registry: Registry, *, connect_timeout_s: float
    ) -> None:
        self.connections = [
            UpstreamConnection(config, registry, connect_timeout_s=connect_timeout_s) for config in configs
        ]
        for connection in self.connections:  # tool-less until connected; a taken name fails here
            registry.add(connection.toolkit, origin=f"upstream {connection.config.name}")

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep every upstream connected until cancelled; ``started`` once each one's first attempt
        is over (all at once, each within the connect timeout). A name clash among the tools of
        those that connected is a start-up error."""
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as starting:
                for connection in self.connections:
                    starting.start_soon(tg.start, connection.run)
            clashes = [f"{c.config.name}: {name}" for c in self.connections for name in c.clashes]
            if clashes:
                raise ConfigError(
                    f"upstream tools whose served names are taken (rename or drop one): {', '.join(clashes)}"
                )
            task_status.started()

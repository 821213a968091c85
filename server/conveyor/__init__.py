"""Conveyor: an MCP server that runs tools now or as durable background jobs.

The names below are imported on first use (PEP 562): a process that needs only part of the
package, such as the SQLite store's database process, does not pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.context import ToolContext
    from conveyor.errors import ConveyorError, ToolError
    from conveyor.secret_arguments import Secret
    from conveyor.toolkit import RetryPolicy, Tool, Toolkit

__version__ = "0.1.0"

_HOMES = {
    "ConveyorError": "conveyor.errors",
    "RetryPolicy": "conveyor.toolkit",
    "Secret": "conveyor.secret_arguments",
    "Tool": "conveyor.toolkit",
    "ToolContext": "conveyor.context",
    "ToolError": "conveyor.errors",
    "Toolkit": "conveyor.toolkit",
}

__all__ = [
    "ConveyorError",
    "RetryPolicy",
    "Secret",
    "Tool",
    "ToolContext",
    "ToolError",
    "Toolkit",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

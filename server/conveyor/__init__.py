"""Conveyor: an MCP server that runs tools now or as durable background jobs."""

from conveyor.context import ToolContext
from conveyor.errors import ConveyorError, ToolError
from conveyor.secret_arguments import Secret
from conveyor.toolkit import RetryPolicy, Tool, Toolkit

__version__ = "0.1.0"

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

"""One error root and one class per error code.

Each class's docstring is its default message. Domain code raises these; only the
front doors translate them (``to_http_status`` for REST, ``to_payload`` for MCP).
"""

from __future__ import annotations

import enum
from typing import Any

from conveyor.strict_json import clean_text, sanitized


class ErrorCode(enum.StrEnum):
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"
    INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
    EXECUTION_ERROR = "EXECUTION_ERROR"
    EXECUTION_TIMEOUT = "EXECUTION_TIMEOUT"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    CANNOT_CANCEL_RUNNING = "CANNOT_CANCEL_RUNNING"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    WORKER_LOST = "WORKER_LOST"
    INTERRUPTED = "INTERRUPTED"
    CANCELED = "CANCELED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MISDIRECTED_REQUEST = "MISDIRECTED_REQUEST"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ConveyorError(Exception):
    """Conveyor could not complete the request."""

    code: ErrorCode = ErrorCode.EXECUTION_ERROR
    http_status: int = 500
    retryable: bool = False
    suggested_fix: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        suggested_fix: str | None = None,
        **extra: Any,
    ):
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details or {}
        self.extra = extra
        if suggested_fix is not None:  # what to do about this error where it happened, not in general
            self.suggested_fix = suggested_fix
        super().__init__(self.message)

    def to_payload(self) -> dict[str, Any]:
        """The ``error`` object of every door: code, message, then whatever helps the caller."""
        payload: dict[str, Any] = {"code": str(self.code), "message": clean_text(self.message)}
        payload.update(sanitized(self.extra))
        if self.details:
            payload["details"] = sanitized(self.details)
        if self.suggested_fix:
            payload["suggested_fix"] = self.suggested_fix
        payload["retryable"] = self.retryable
        return payload


class ToolNotFound(ConveyorError):
    """Tool does not exist."""

    code = ErrorCode.TOOL_NOT_FOUND
    http_status = 404
    suggested_fix = "List the available tools and use one of their names."


class InvalidArguments(ConveyorError):
    """Missing or invalid arguments."""

    code = ErrorCode.INVALID_ARGUMENTS
    http_status = 400
    suggested_fix = "Check the arguments against the tool's input schema."


class ExecutionError(ConveyorError):
    """Tool execution failed."""

    code = ErrorCode.EXECUTION_ERROR
    http_status = 500


class ExecutionTimeout(ConveyorError):
    """Tool execution exceeded its timeout."""

    code = ErrorCode.EXECUTION_TIMEOUT
    http_status = 504
    retryable = True
    suggested_fix = "Raise timeout_ms, or run the tool as a job (jobs_submit, POST /jobs/submit)."


class RateLimitExceeded(ConveyorError):
    """Too many requests."""

    code = ErrorCode.RATE_LIMIT_EXCEEDED
    http_status = 429
    retryable = True


class JobNotFound(ConveyorError):
    """Job does not exist."""

    code = ErrorCode.JOB_NOT_FOUND
    http_status = 404


class CannotCancelRunning(ConveyorError):
    """Cannot cancel a job that is already running."""

    code = ErrorCode.CANNOT_CANCEL_RUNNING
    http_status = 400
    suggested_fix = "Wait for the job to finish; this tool cannot be interrupted once started."


class Unauthorized(ConveyorError):
    """Missing or invalid API key."""

    code = ErrorCode.UNAUTHORIZED
    http_status = 401


class Forbidden(ConveyorError):
    """This key may not do that."""

    code = ErrorCode.FORBIDDEN
    http_status = 403


class AddressNotAllowed(Forbidden):
    """Outbound HTTP to a loopback, private or otherwise non-public address is not allowed."""

    suggested_fix = "Use a public address, or set webhook_allow_private_addresses on a trusted network."


class PayloadTooLarge(ConveyorError):
    """Payload is larger than the configured limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE
    http_status = 413


class IdempotencyConflict(ConveyorError):
    """This idempotency key was already used for a different request."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT
    http_status = 409


class WorkerLost(ConveyorError):
    """The worker running this job stopped before it finished."""

    code = ErrorCode.WORKER_LOST
    http_status = 500
    retryable = True


class Interrupted(ConveyorError):
    """The server stopped while this job's tool was running; the tool is not idempotent, so it was not run again."""

    code = ErrorCode.INTERRUPTED
    http_status = 500
    retryable = True
    suggested_fix = "Check whether the tool's work was done, then submit the job again if it was not."


class Canceled(ConveyorError):
    """Job canceled."""

    code = ErrorCode.CANCELED
    http_status = 400


class StoreUnavailable(ConveyorError):
    """The job store is busy or unavailable; nothing was committed."""

    code = ErrorCode.STORE_UNAVAILABLE
    http_status = 503
    retryable = True
    suggested_fix = "Retry after the Retry-After delay; the request was not carried out."


class UpstreamUnavailable(ConveyorError):
    """The upstream MCP server of this tool cannot be reached; Conveyor keeps reconnecting."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE
    http_status = 503
    retryable = True
    suggested_fix = "Try again shortly: Conveyor reconnects to the upstream server by itself."


class WebhookNotFound(ConveyorError):
    """Webhook does not exist."""

    code = ErrorCode.WEBHOOK_NOT_FOUND
    http_status = 404


class RouteNotFound(ConveyorError):
    """No such endpoint."""

    code = ErrorCode.NOT_FOUND
    http_status = 404
    suggested_fix = "See /openapi.json for the endpoints."


class MethodNotAllowed(ConveyorError):
    """This endpoint does not accept that HTTP method."""

    code = ErrorCode.METHOD_NOT_ALLOWED
    http_status = 405


class MisdirectedRequest(ConveyorError):
    """This server does not answer for that host name."""

    code = ErrorCode.MISDIRECTED_REQUEST
    http_status = 421
    suggested_fix = "Add the host name to the allowed_hosts setting."


class InternalError(ConveyorError):
    """Conveyor failed unexpectedly; the details are in the server log."""

    code = ErrorCode.INTERNAL_ERROR
    http_status = 500
    retryable = True


class ToolError(ExecutionError):
    """Raised by a tool to fail with its own code and details, e.g. ``ToolError("...", code="QUOTA")``.

    The code is the tool's own; Conveyor passes it through to the job's error.
    """

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.tool_code = code

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        if self.tool_code:
            payload["code"] = self.tool_code
        return payload


class ConfigError(Exception):
    """Settings or toolkits are invalid; raised at start-up, never to a client."""

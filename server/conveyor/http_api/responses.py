"""JSON responses and the one error body shape: ``{"error": {"code", "message", "request_id", ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

from conveyor import strict_json
from conveyor.errors import ConveyorError

logger = logging.getLogger("conveyor.http")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return strict_json.dumps(content).encode()
        except (ValueError, UnicodeEncodeError):  # never expected: every door checks what comes in
            logger.warning("answered a sanitized body", extra={"action": "http.sanitized"})
            return strict_json.dumps(strict_json.sanitized(content)).encode()


def request_id_of(conn: HTTPConnection) -> str:
    return str(conn.scope.get("state", {}).get("request_id", ""))


def error_body(error: ConveyorError, request_id: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "error": {**error.to_payload(), "request_id": request_id}}


def error_response(error: ConveyorError, request_id: str, **extra: Any) -> JSONResponse:
    headers = {}
    if "retry_after" in error.extra:  # RATE_LIMIT_EXCEEDED, STORE_UNAVAILABLE
        headers["Retry-After"] = str(error.extra["retry_after"])
    if error.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="conveyor"'
    return JSONResponse(
        error_body(error, request_id, **extra), status_code=error.http_status, headers=headers
    )

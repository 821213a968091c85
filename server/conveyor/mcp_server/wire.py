"""MCP messages are checked as strict JSON before the SDK reads them, on stdio and over HTTP.

The SDK's parser takes NaN and Infinity (and answers them back as null), and a message it cannot
parse at all may go unanswered; here every such message gets a JSON-RPC error, with the request's
id when one can be read from it, and nothing reaches a handler.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import INVALID_PARAMS, PARSE_ERROR

from conveyor import strict_json
from conveyor.errors import InvalidArguments


def read_message(data: bytes, *, max_depth: int) -> tuple[Any, dict[str, Any] | None]:
    """``(message, None)`` for a strict JSON message; ``(None, answer)`` otherwise, the answer
    being the JSON-RPC error to send back (its id null where none can be read, as JSON-RPC says)."""
    try:
        return strict_json.loads(data, max_depth=max_depth), None
    except strict_json.NotStrictJson as exc:
        return None, refusal(data, exc)


def refusal(data: bytes, exc: strict_json.NotStrictJson) -> dict[str, Any]:
    """The JSON-RPC error answering a message that is not strict JSON: a parse error when it is
    not JSON at all, else invalid params, coded INVALID_ARGUMENTS as at every door."""
    request_id = _lenient_id(data)
    not_json = (
        exc.reason.startswith(("not JSON", "the text is not UTF-8")) or "which is not JSON" in exc.reason
    )
    error = InvalidArguments(
        f"The message is not strict JSON: {exc}",
        argument=exc.location,
        suggested_fix="Send strict JSON: UTF-8 text, no NaN or Infinity, integers within 64 bits, "
        "and no deeper nesting than the server allows.",
    )
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": PARSE_ERROR if not_json else INVALID_PARAMS,
            "message": "Parse error" if not_json else error.message,
            "data": error.to_payload(),
        },
    }


def _lenient_id(data: bytes) -> str | int | None:
    """The id of a message that failed the strict check, if Python's lenient parser finds a usable one."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    try:
        strict_json.check(request_id)
    except strict_json.NotStrictJson:
        return None
    return request_id

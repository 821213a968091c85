"""A response's body as a result: parsed JSON, text, or base64 for anything else."""

from __future__ import annotations

import base64
import codecs
from typing import Any, Literal

from conveyor import strict_json

BodyKind = Literal["json", "text", "base64", "empty"]
_TEXT_TYPES = {
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/x-ndjson",
    "application/yaml",
}


def decode(body: bytes, content_type: str) -> tuple[BodyKind, Any]:
    if not body:
        return "empty", None
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return "json", strict_json.loads(body)
        except (strict_json.NotStrictJson, ValueError):
            pass  # not what it said: shown as the text it is
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+xml", "+json")):
        return "text", body.decode(_charset(parameters), errors="replace")
    if not media:  # no type given: text if it reads as UTF-8
        try:
            return "text", body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "base64", base64.b64encode(body).decode("ascii")


def _charset(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                break
    return "utf-8"

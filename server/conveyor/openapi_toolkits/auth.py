"""Per-run credentials applied as an operation's security requirement says.

A credential is named by its security scheme (``components.securitySchemes``): ``http`` bearer
(and ``oauth2``, ``openIdConnect``: an access token) → ``Authorization: Bearer <value>``;
``http`` basic → ``user:password``, sent base64-encoded; ``apiKey`` → the header, query
parameter or cookie it names. Of an operation's alternatives (its ``security`` list) the first
one the run's credentials fully cover is used; failing that, the first that the toolkit's own
headers (from settings) cover, or an anonymous one (``{}``). A value is never put in a message:
only its scheme's name is.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import InvalidArguments
from conveyor.openapi_toolkits.operations import Requirement

logger = logging.getLogger("conveyor.openapi")

MIN_REDACTED_LENGTH = 4  # shorter values would redact ordinary text, and are no secret anyway
# The settings' headers that carry secrets (the others, such as Accept, are no secret to keep).
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|session|password|signature", re.IGNORECASE)


@dataclass
class Auth:
    """What a run's credentials add to its request, and the values to keep out of anything shown."""

    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def authorize(
    requirements: tuple[Requirement, ...],
    schemes: Mapping[str, Any],
    credentials: Mapping[str, str],
    static_headers: Mapping[str, str],
    *,
    tool: str,
) -> Auth:
    """The auth of one call of ``tool``; ``INVALID_ARGUMENTS`` naming a missing credential."""
    # Every credential of the run is kept out of what is shown, not just the ones this call uses.
    known = [value for name, value in static_headers.items() if _SECRET_HEADER.search(name)]
    known += credentials.values()
    auth = Auth(
        secrets=[part for value in known for part in _parts(value) if len(part) >= MIN_REDACTED_LENGTH]
    )
    if not requirements:
        return auth
    chosen = next((r for r in requirements if r and all(name in credentials for name in r)), None)
    if chosen is None:
        covered = [
            r for r in requirements if all(_covered(name, schemes, credentials, static_headers) for name in r)
        ]
        if not covered:
            raise _missing(requirements[0], schemes, credentials, tool)
        chosen = covered[0]
    for name in chosen:
        if name in credentials:
            _apply(auth, name, schemes.get(name), credentials[name])
    return auth


def _parts(value: str) -> list[str]:
    """A secret and the parts an API might echo alone: a token after its scheme word
    (``Bearer xyz``), a password after its user (``user:password``)."""
    parts = [value]
    if " " in value.strip():
        parts.append(value.strip().split(" ", 1)[1].strip())
    if ":" in value:
        parts.append(value.split(":", 1)[1])
    return parts


def _covered(
    name: str, schemes: Mapping[str, Any], credentials: Mapping[str, str], static: Mapping[str, str]
) -> bool:
    if name in credentials:
        return True
    header = _header_of(schemes.get(name))
    if header is None:  # a scheme Conveyor cannot apply: the API will judge the call
        return _kind(schemes.get(name)) is None
    return header.lower() in {key.lower() for key in static}


def _kind(scheme: Any) -> str | None:
    """How a scheme is applied, or None if Conveyor does not know how."""
    if not isinstance(scheme, dict):
        return None
    kind = scheme.get("type")
    if kind == "http":
        how = str(scheme.get("scheme", "")).lower()
        return None if how in ("digest", "") else ("basic" if how == "basic" else "token")
    if kind in ("oauth2", "openIdConnect"):
        return "token"
    if kind == "apiKey" and scheme.get("in") in ("header", "query", "cookie") and scheme.get("name"):
        return f"apiKey-{scheme['in']}"
    return None


def _header_of(scheme: Any) -> str | None:
    """The header a scheme's credential travels in, if it travels in one."""
    kind = _kind(scheme)
    if kind in ("basic", "token"):
        return "Authorization"
    if kind == "apiKey-header":
        return str(scheme["name"])
    if kind == "apiKey-cookie":
        return "Cookie"
    return None


def _apply(auth: Auth, name: str, scheme: Any, value: str) -> None:
    kind = _kind(scheme)
    if kind is None:
        logger.warning(
            "credential not applied",
            extra={"action": "openapi.scheme_unsupported", "scheme": name},
        )
        return
    if kind == "basic":
        encoded = base64.b64encode(value.encode()).decode("ascii")
        auth.headers["Authorization"] = f"Basic {encoded}"
        auth.secrets.append(encoded)
    elif kind == "token":
        how = str(scheme.get("scheme", "bearer")) if scheme.get("type") == "http" else "bearer"
        auth.headers["Authorization"] = f"{'Bearer' if how.lower() == 'bearer' else how} {value}"
    elif kind == "apiKey-header":
        auth.headers[str(scheme["name"])] = value
    elif kind == "apiKey-query":
        auth.query.append((str(scheme["name"]), value))
    else:
        auth.cookies[str(scheme["name"])] = value


def _missing(
    requirement: Requirement, schemes: Mapping[str, Any], credentials: Mapping[str, str], tool: str
) -> InvalidArguments:
    name = next(n for n in requirement if n not in credentials)
    scheme = schemes.get(name)
    what = f" ({_describe(scheme)})" if isinstance(scheme, dict) else ""
    return InvalidArguments(
        f"{tool} needs the credential {name!r}{what}, passed per run",
        argument="credentials",
        credential=name,
        suggested_fix=f'pass credentials={{"{name}": "…"}} with the call or the job',
    )


def _describe(scheme: dict[str, Any]) -> str:
    kind = scheme.get("type")
    if kind == "http":
        return f"http {scheme.get('scheme', '')}".strip()
    if kind == "apiKey":
        return f"an API key in {scheme.get('in')} {scheme.get('name')!r}"
    return str(kind)

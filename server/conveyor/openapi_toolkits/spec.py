"""An OpenAPI 3.x document: read from a file or an http(s) URL, parsed, and its local ``$ref``s
resolved on demand.

Only JSON is read: no YAML parser is among Conveyor's dependencies, so a YAML document is a
clear start-up error that says how to convert it. A URL is fetched under the outbound rules of
the toolkit (no private addresses unless allowed, redirects checked again).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio
import httpx2

from conveyor import outbound
from conveyor.errors import ConfigError, ConveyorError
from conveyor.settings import OpenAPIConfig

MAX_DOCUMENT_BYTES = 50_000_000  # the largest public API documents are around 10 MB
_VARIABLE = re.compile(r"\{([^{}]+)\}")


class SpecError(ValueError):
    """A part of the document Conveyor cannot use (a broken or external reference)."""


@dataclass(frozen=True)
class Document:
    """The parsed document, where it came from, and the URL its operations are called at."""

    data: dict[str, Any]
    source: str
    base_url: str

    def resolve(self, node: Any) -> Any:
        """``node`` with every local ``$ref`` in it replaced by what it points to (a copy); a
        reference back into itself (a recursive schema) becomes ``{}``: any value."""
        return _resolve(node, self.data, ())


async def load(config: OpenAPIConfig) -> Document:
    """The document ``config.spec`` names; any failure is one ConfigError line."""
    where = f"openapi {config.name}: cannot use {config.spec}"
    spec_url = None
    try:
        spec_url = _url_of(config.spec)
        raw = await _fetch(config, spec_url) if spec_url is not None else await _read_file(config.spec)
    except ConveyorError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    except TimeoutError:
        raise ConfigError(f"{where}: no answer within {config.timeout_seconds:g} s") from None
    except (OSError, httpx2.HTTPError, httpx2.InvalidURL) as exc:
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    data = _parse(raw, where)
    version = data.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise ConfigError(f"{where}: it is not an OpenAPI 3.x document (no openapi: 3.x field)")
    if not isinstance(data.get("paths", {}), dict):
        raise ConfigError(f"{where}: its paths are not an object")
    return Document(data, config.spec, _base_url(config, data, spec_url, where))


def _url_of(spec: str) -> httpx2.URL | None:
    return httpx2.URL(spec) if spec.startswith(("http://", "https://")) else None


async def _read_file(path: str) -> bytes:
    file = await anyio.Path(path).expanduser()
    if (await file.stat()).st_size > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"the file is larger than {MAX_DOCUMENT_BYTES} bytes")
    return await file.read_bytes()


async def _fetch(config: OpenAPIConfig, url: httpx2.URL) -> bytes:
    # The document is fetched without the API's headers: it may live on another host.
    async with httpx2.AsyncClient(
        timeout=config.timeout_seconds, follow_redirects=False, trust_env=False
    ) as client:
        with anyio.fail_after(config.timeout_seconds):
            response = await outbound.request(
                client,
                "GET",
                url,
                headers={"Accept": "application/json"},
                allow_private=config.allow_private_addresses,
                max_body_bytes=MAX_DOCUMENT_BYTES,
            )
    if not 200 <= response.status < 300:
        raise ConfigError(f"fetching it answered HTTP {response.status}")
    return response.body


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if raw.lstrip()[:1] not in (b"{", b"["):
            raise ConfigError(
                f"{where}: it is not JSON (YAML is not read; convert it to JSON, "
                "e.g. with: python -c 'import json,sys,yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)')"
            ) from None
        raise ConfigError(f"{where}: it is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: it is not a JSON object")
    return data


def _base_url(config: OpenAPIConfig, data: dict[str, Any], spec_url: httpx2.URL | None, where: str) -> str:
    """``base_url`` if set, else the document's first server (its variables at their defaults),
    resolved against the document's URL if relative."""
    if config.base_url is not None:
        return config.base_url.rstrip("/")
    servers = data.get("servers")
    server = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else {}
    url = server.get("url", "/")
    variables = server.get("variables") or {}

    def default(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), {})
        return str(value.get("default", match.group(0))) if isinstance(value, dict) else match.group(0)

    url = _VARIABLE.sub(default, str(url))
    if not url.startswith(("http://", "https://")):
        if spec_url is None:
            raise ConfigError(
                f"{where}: its server URL {url!r} is not absolute; set base_url in its [[openapi]] table"
            )
        url = str(spec_url.join(url))
    if not url.startswith(("http://", "https://")) or "{" in url:
        raise ConfigError(f"{where}: its server URL {url!r} is not an http(s) URL; set base_url")
    return url.rstrip("/")


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, root, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return {}
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        target = _resolve(_pointer(root, ref), root, (*seen, ref))
        if not isinstance(target, dict):
            raise SpecError(f"{ref} does not point to an object")
        return {**target, **_resolve(siblings, root, seen)}  # the reference's own words win
    return {key: _resolve(value, root, seen) for key, value in node.items()}


def _pointer(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise SpecError(f"{ref} is not a reference within the document")
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise SpecError(f"{ref} points to nothing in the document")
    return node  # not copied: _resolve builds new containers all the way down

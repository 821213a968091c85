"""Outbound HTTP that stays off private networks (DESIGN §4): URL checks and address-pinned requests
(``post`` for webhooks; ``request`` for tools that call HTTP APIs, following redirects itself).

A URL is checked twice. When it is given (a job's webhook_url, a webhook registration): its shape,
and, unless private addresses are allowed, whether its host is a non-public IP literal. Right before
each request: every address its host resolves to. The request then connects to an address that was
checked, with the URL's Host header and TLS server name, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot send it somewhere private. A redirect is a new
request, checked the same way; one to another origin leaves the first one's credentials behind.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import anyio
import httpx2

from conveyor.errors import AddressNotAllowed, ExecutionError, InvalidArguments, PayloadTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2000
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$"
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses reached through a NAT64 gateway


def check_url(url: str, *, argument: str, allow_private: bool) -> str:
    """``url`` if it is an absolute http(s) URL with a valid host and port; else INVALID_ARGUMENTS."""
    target = _parse(url, argument)
    if not allow_private:
        address = ip_literal(_host_of(target))
        reason = None if address is None else refusal(address)
        if reason is not None:
            raise InvalidArguments(
                f"{argument} points to {address}, {reason}, which outbound HTTP may not reach",
                argument=argument,
                suggested_fix="Use a public address, or set webhook_allow_private_addresses on a trusted network.",
            )
    return url


def _parse(url: str, argument: str) -> httpx2.URL:
    def invalid(why: str) -> InvalidArguments:
        return InvalidArguments(
            f"{argument} must be an absolute http(s) URL: {why}",
            argument=argument,
            suggested_fix="Give an absolute http(s) URL, such as https://example.com/hooks/conveyor.",
        )

    if len(url) > MAX_URL_LENGTH:
        raise invalid(f"longer than {MAX_URL_LENGTH} characters")
    try:
        target = httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError):
        raise invalid("it does not parse") from None
    if target.scheme not in ("http", "https"):
        raise invalid("the scheme is not http or https")
    host = _host_of(target)
    if not host:
        raise invalid("it has no host")
    valid = ip_literal(host) is not None if ":" in host else _HOSTNAME.match(host) is not None
    if not valid:
        raise invalid("the host is not a valid name or IP address")
    if target.port is not None and not 1 <= target.port <= 65535:
        raise invalid("the port is out of range")
    return target


def _host_of(target: httpx2.URL) -> str:
    return target.raw_host.decode("ascii", errors="replace").lower()  # IDNA-encoded: ASCII


def ip_literal(host: str) -> IPAddress | None:
    """The address a host *is*, if it is one: standard forms, and the legacy IPv4 ones (``127.1``,
    ``0x7f000001``, ``2130706433``) that resolvers turn into addresses without asking DNS."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9a-fx.]+", host) or not any(ch.isdigit() for ch in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def refusal(address: IPAddress) -> str | None:
    """Why outbound HTTP may not reach ``address`` (``"a loopback address"``, ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 form that carries an IPv4 address is judged by the address it carries.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded)
    checks = (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        ("a non-public address", not address.is_global),
    )
    return next((reason for reason, applies in checks if applies), None)


async def resolve(
    host: str, port: int, *, allow_private: bool, allowed_networks: Collection[IPNetwork] = ()
) -> list[str]:
    """The addresses to try for ``host``; unless allowed, all of them must be public (or in one
    of ``allowed_networks``: a trusted service's, say, without opening every private address).

    One private answer refuses the host, not just that address: a name that mixes public and
    private addresses is the shape of a rebinding attack.
    """
    literal = ip_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            reason = refusal(ip)
            if reason is not None and not any(ip in network for network in allowed_networks):
                raise AddressNotAllowed(f"{host} resolves to {address}, {reason}")
    return addresses


@dataclass(frozen=True, slots=True)
class HostRules:
    """Which hosts a request may reach by name, beside the address rules: a ``denied`` host never,
    and, when ``allowed`` is not empty, only an allowed one. An entry is a host name or an IP
    address, matched exactly, or ``*.example.com``: any name under example.com (not itself)."""

    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()

    def check(self, host: str) -> None:
        """Raise ``AddressNotAllowed`` unless ``host`` (as ``_host_of`` gives it) may be reached."""
        host = host.rstrip(".")
        if any(_host_matches(host, entry) for entry in self.denied):
            raise AddressNotAllowed(f"{host} is on the denied hosts list")
        if self.allowed and not any(_host_matches(host, entry) for entry in self.allowed):
            raise AddressNotAllowed(f"{host} is not on the allowed hosts list")


def _host_matches(host: str, entry: str) -> bool:
    entry = entry.strip().lower().strip("[]").rstrip(".")
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    return host == entry


MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
# Headers a redirect to another origin keeps: the rest (auth, cookies, API keys) were meant for the first.
_CROSS_ORIGIN_SAFE = {"accept", "accept-encoding", "accept-language", "content-type", "user-agent"}


@dataclass(frozen=True, slots=True)
class Response:
    """A whole response read through ``request``: its status, headers, body (within the cap)
    and the URL that answered (after redirects)."""

    status: int
    headers: httpx2.Headers
    body: bytes
    url: httpx2.URL


async def request(
    client: httpx2.AsyncClient,
    method: str,
    url: str | httpx2.URL,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    allow_private: bool,
    max_body_bytes: int,
    max_redirects: int = MAX_REDIRECTS,
    hosts: HostRules | None = None,
    allowed_networks: Collection[IPNetwork] = (),
) -> Response:
    """Send a request through checked addresses, following up to ``max_redirects`` redirects
    (each target resolved and checked again, and its host against ``hosts``); the final response,
    its body read up to ``max_body_bytes`` (more: ``PayloadTooLarge``). ``client`` must not follow
    redirects itself."""
    target = httpx2.URL(url)
    sent_headers = dict(headers or {})
    for _ in range(max_redirects + 1):
        if hosts is not None:
            hosts.check(_host_of(target))
        response = await _send_pinned(
            client,
            method,
            target,
            content=content,
            headers=sent_headers,
            allow_private=allow_private,
            allowed_networks=allowed_networks,
        )
        try:
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                body = await _read_capped(response, max_body_bytes, host=_host_of(target))
                return Response(response.status_code, response.headers, body, target)
        finally:
            await response.aclose()
        next_target = _redirect_target(target, location)
        if _origin(next_target) != _origin(target):
            sent_headers = {k: v for k, v in sent_headers.items() if k.lower() in _CROSS_ORIGIN_SAFE}
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method = "HEAD" if method == "HEAD" else "GET"  # as browsers do: the body is not sent again
            content = None
            sent_headers = {k: v for k, v in sent_headers.items() if k.lower() != "content-type"}
        target = next_target
    raise ExecutionError(f"{_host_of(target)} redirected more than {max_redirects} times")


async def post(
    client: httpx2.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    allow_private: bool,
) -> int:
    """POST to ``url`` through a checked address, not following redirects; the response's status.
    Its body is not read: a receiver's answer is not ours to buffer."""
    response = await _send_pinned(
        client, "POST", httpx2.URL(url), content=content, headers=headers, allow_private=allow_private
    )
    await response.aclose()
    return response.status_code


async def _send_pinned(
    client: httpx2.AsyncClient,
    method: str,
    target: httpx2.URL,
    *,
    content: bytes | None,
    headers: Mapping[str, str],
    allow_private: bool,
    allowed_networks: Collection[IPNetwork] = (),
) -> httpx2.Response:
    """Send to a checked address of ``target``'s host (the next one if a connection is refused),
    with its Host header and TLS server name; the response, streamed (the caller closes it)."""
    host = _host_of(target)
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = await resolve(host, port, allow_private=allow_private, allowed_networks=allowed_networks)
    pinned_headers = {**headers, "Host": target.netloc.decode("ascii")}
    for index, address in enumerate(addresses):
        pinned = client.build_request(
            method,
            target.copy_with(host=address),
            content=content,
            headers=pinned_headers,
            extensions={"sni_hostname": host},  # TLS checks the certificate against the name
        )
        try:
            return await client.send(pinned, stream=True)
        except httpx2.ConnectError:
            if index == len(addresses) - 1:
                raise
    raise AssertionError("resolve() answers at least one address")


def _redirect_target(current: httpx2.URL, location: str) -> httpx2.URL:
    try:
        target = current.join(location)
    except (httpx2.InvalidURL, ValueError, TypeError):
        raise ExecutionError(f"{_host_of(current)} redirected to a URL that does not parse") from None
    if target.scheme not in ("http", "https") or not _host_of(target):
        raise ExecutionError(f"{_host_of(current)} redirected to a URL that is not http(s)")
    return target


def _origin(target: httpx2.URL) -> tuple[str, str, int | None]:
    return target.scheme, _host_of(target), target.port


async def _read_capped(response: httpx2.Response, max_bytes: int, *, host: str) -> bytes:
    def too_large() -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the response from {host} is larger than {max_bytes} bytes",
            limit_bytes=max_bytes,
        )

    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large()
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise too_large()
    return bytes(body)

"""Outbound HTTP that stays off private networks (DESIGN §4): URL checks and address-pinned requests.

A URL is checked twice. When it is given (a job's webhook_url, a webhook registration): its shape,
and, unless private addresses are allowed, whether its host is a non-public IP literal. Right before
each request: every address its host resolves to. The request then connects to an address that was
checked, with the URL's Host header and TLS server name, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot send it somewhere private.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping

import anyio
import httpx2

from conveyor.errors import AddressNotAllowed, InvalidArguments

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
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


async def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to try for ``host``; unless allowed, all of them must be public.

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
            reason = refusal(ipaddress.ip_address(address))
            if reason is not None:
                raise AddressNotAllowed(f"{host} resolves to {address}, {reason}")
    return addresses


async def post(
    client: httpx2.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    allow_private: bool,
) -> int:
    """POST to ``url`` through a checked address (the next one if a connection is refused); the
    response's status. Its body is not read: a receiver's answer is not ours to buffer."""
    target = httpx2.URL(url)
    host = _host_of(target)
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = await resolve(host, port, allow_private=allow_private)
    pinned_headers = {**headers, "Host": target.netloc.decode("ascii")}
    for index, address in enumerate(addresses):
        request = client.build_request(
            "POST",
            target.copy_with(host=address),
            content=content,
            headers=pinned_headers,
            extensions={"sni_hostname": host},  # TLS checks the certificate against the name
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.ConnectError:
            if index == len(addresses) - 1:
                raise
            continue
        await response.aclose()
        return response.status_code
    raise AssertionError("resolve() answers at least one address")

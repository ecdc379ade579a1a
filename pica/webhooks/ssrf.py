"""Which addresses a webhook registered through the admin command may reach (server-side request forgery).

An endpoint of the TOML file is the operator's and may point anywhere. One registered with ``pica webhook add`` is
refused, unless ``jobs.webhook_allow_private``, when its host resolves to a private, loopback, link-local,
multicast, reserved or unspecified address (anything not globally routable, IPv4-mapped IPv6 included). The check
runs twice: at registration (every address the name has then), and at every connection, through
:class:`PublicResolver`, which hands aiohttp only the allowed addresses, so a name re-pointed at 127.0.0.1 after
registration (DNS rebinding) leads nowhere. aiohttp does not resolve an IP literal, so the delivery checks literals
itself (:func:`literal_refused`). Redirects are never followed (Synapse CVE-2021-21273 was SSRF through one).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(OSError):
    """The endpoint's host is (or resolves only to) an address webhooks may not reach."""


def refused(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_unspecified


def host_of(url: str) -> str:
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    return host


def literal_refused(url: str) -> bool:
    """The URL's host is an IP literal that may not be reached (names are checked by the resolver)."""
    try:
        address = ipaddress.ip_address(host_of(url))
    except ValueError:
        return False
    return refused(address)


async def check_registration(url: str) -> None:
    """Raise RefusedAddress (or ValueError for a malformed URL) unless every address of the URL's host may be
    reached. Run when an endpoint is registered through the admin command."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    host = host_of(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedAddress(f"cannot resolve {host}: {exc}") from exc
    bad = sorted({str(info[4][0]) for info in infos if refused(ipaddress.ip_address(info[4][0]))})
    if bad:
        raise RefusedAddress(f"{host} resolves to {', '.join(bad)}: not a public address "
                             "(jobs.webhook_allow_private allows it)")


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, minus the addresses webhooks may not reach: the connector connects only to what this
    answers, so the address checked is the address connected to."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if not refused(ipaddress.ip_address(a["host"]))]
        if not allowed:
            raise RefusedAddress(f"{host} resolves only to addresses webhooks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

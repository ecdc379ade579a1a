"""Fetching a link for its preview without becoming a proxy into the server's network (server-side request forgery).

A chat message names any URL it likes, and the server fetches it: the URL must not reach what only the server can
reach (its loopback, the private network, a cloud metadata address at 169.254.169.254). The rules, for every hop:

- ``http`` and ``https`` only, no user name or password in the URL, a port among ``previews.allowed_ports`` (80 and
  443 by default).
- The host is resolved **here**, every address it has is checked, and the connection goes to a checked address only
  (aiohttp is handed a resolver pinned to them, :class:`_Pinned`): no second lookup between check and connect, so a
  name re-pointed at 127.0.0.1 in between (DNS rebinding) leads nowhere. An IP literal is checked as it is.
- Refused (:func:`blocked`): every address that is not globally routable (loopback, RFC 1918, 100.64/10, link-local
  169.254/16 and fe80::/10, fc00::/7, reserved, documentation ranges), multicast, unspecified, and the IPv4 address
  inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 IPv6 address when that one is refused; unless the address is
  in ``previews.allowed_networks`` or ``previews.allow_private`` is on.
- Redirects are followed by hand, at most ``previews.max_redirects``, and each target goes through the same checks
  (Synapse CVE-2021-21273 was an SSRF through a redirect).
- Limits: ``previews.connect_timeout`` per connection, ``previews.timeout`` for the whole fetch (the caller's
  deadline), at most ``max_page_bytes`` of a page read (then reading stops: the head comes first) and at most
  ``max_image_bytes`` of an image (a larger one is refused), counted after inflating gzip or deflate (a compression
  bomb stops there too), content types checked (HTML for a page, JPEG, PNG, GIF or
  WebP for an image). No proxy from the environment, no cookies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from pica.config import PreviewsConfig
from pica.webhooks.ssrf import refused as not_public

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[Address]]]
"""Host and port to every address the host has (injectable: tests answer a name with the addresses they need)."""

HTML_TYPES: Final = ("text/html", "application/xhtml+xml")
IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
_REDIRECTS: Final = (301, 302, 303, 307, 308)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_USER_AGENT: Final = "PicaLinkPreview/1.0 (+https://github.com/pica-im)"
_CHUNK: Final = 16384


class FetchError(Exception):
    """A fetch that gave nothing to preview. ``refused``: an SSRF rule said no (never worth retrying)."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    """The URL finally read (after redirects)."""
    content_type: str
    """The media type, lower case, without parameters."""
    content_type_header: str
    body: bytes
    truncated: bool = False


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def blocked(address: Address, config: PreviewsConfig) -> bool:
    """Whether a preview may not connect to ``address`` (see the module's docstring)."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
    for candidate in candidates:
        if any(candidate in ipaddress.ip_network(n, strict=False) for n in config.allowed_networks):
            continue
        if config.allow_private:
            if candidate.is_multicast or candidate.is_unspecified:
                return True
            continue
        if not_public(candidate):
            return True
    return False


async def system_resolve(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class _Pinned(AbstractResolver):
    """Answers the one host of a hop with the addresses checked for it, and nothing else: aiohttp connects only to
    what was checked."""

    def __init__(self, host: str, addresses: list[Address]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"{host} was not checked")
        return [ResolveResult(hostname=host, host=str(a), port=port,
                              family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in self._addresses]

    async def close(self) -> None:
        return None


class Fetcher:
    def __init__(self, config: PreviewsConfig, resolve: Resolve = system_resolve) -> None:
        self._config = config
        self._resolve = resolve

    async def page(self, url: str) -> Fetched:
        """The page at ``url`` (HTML only), its first ``max_page_bytes`` bytes."""
        return await self._get(url, HTML_TYPES, self._config.max_page_bytes, cut=True)

    async def image(self, url: str) -> Fetched:
        """The image at ``url`` (JPEG, PNG, GIF or WebP), whole and at most ``max_image_bytes``."""
        return await self._get(url, IMAGE_TYPES, self._config.max_image_bytes, cut=False)

    async def check(self, url: str) -> tuple[str, int, list[Address]]:
        """The URL's host, port and the addresses a connection may use; FetchError(refused) when none."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http and https are fetched, not {parts.scheme or 'no scheme'!r}", refused=True)
        if parts.username is not None or parts.password is not None:
            raise FetchError("a URL with a user name or password is not fetched", refused=True)
        host = parts.hostname
        if not host:
            raise FetchError("the URL has no host", refused=True)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("the URL's port is not a number", refused=True) from None
        if port not in self._config.allowed_ports:
            raise FetchError(f"port {port} is not allowed (previews.allowed_ports)", refused=True)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise FetchError(f"cannot resolve {host}: {exc}") from exc
        bad = [a for a in addresses if blocked(a, self._config)]
        if bad or not addresses:
            # One refused address refuses the name: which one a client would get is the resolver's choice.
            raise FetchError(f"{host} resolves to {', '.join(map(str, bad)) or 'nothing'}: not a public address",
                             refused=True)
        return host, port, addresses

    async def _get(self, url: str, types: tuple[str, ...], limit: int, *, cut: bool) -> Fetched:
        config = self._config
        for _ in range(config.max_redirects + 1):
            host, _port, addresses = await self.check(url)
            timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout,
                                            sock_connect=config.connect_timeout, sock_read=config.timeout)
            connector = aiohttp.TCPConnector(resolver=_Pinned(host, addresses), use_dns_cache=False,
                                             force_close=True, limit=1)
            # auto_decompress off: _read inflates with a bound on what comes out (a gzip bomb stops at the limit).
            async with aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=False,
                                             cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False) as session:
                try:
                    async with session.get(url, allow_redirects=False, headers={
                        "User-Agent": _USER_AGENT, "Accept": ", ".join(types), "Accept-Language": "*",
                        "Accept-Encoding": "gzip, deflate",
                    }) as response:
                        if response.status in _REDIRECTS:
                            location = response.headers.get("Location")
                            if not location:
                                raise FetchError(f"HTTP {response.status} without a Location")
                            url = urljoin(url, location)
                            continue
                        return await _read(response, url, types, limit, cut=cut)
                except (aiohttp.ClientError, OSError) as exc:
                    raise FetchError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        raise FetchError(f"more than {config.max_redirects} redirects")


async def _read(response: aiohttp.ClientResponse, url: str, types: tuple[str, ...], limit: int,
                *, cut: bool) -> Fetched:
    if response.status != 200:
        raise FetchError(f"HTTP {response.status}")
    header = response.headers.get("Content-Type", "")
    media_type = header.split(";")[0].strip().lower()
    if media_type not in types:
        raise FetchError(f"content type {media_type or 'none'!r} is not one of {', '.join(types)}")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        inflater = None
        declared = response.content_length
        if not cut and declared is not None and declared > limit:
            raise FetchError(f"{declared} bytes is more than {limit}")
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if "gzip" in encoding else zlib.MAX_WBITS)
    else:
        raise FetchError(f"content encoding {encoding!r} is not read")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        pending = await response.content.read(_CHUNK)
        if not pending:
            break
        while pending and size <= limit:
            if inflater is None:
                data, pending = pending, b""
            else:
                try:  # never more out than the limit needs, however much the input would inflate to
                    data = inflater.decompress(pending, limit + 1 - size)
                except zlib.error as exc:
                    raise FetchError(f"the {encoding} body does not inflate: {exc}") from None
                pending = inflater.unconsumed_tail
            chunks.append(data)
            size += len(data)
    # Past the limit, reading stops: the rest is never asked for, and the connection is closed.
    truncated = size > limit
    if truncated and not cut:
        raise FetchError(f"more than {limit} bytes")
    return Fetched(url, media_type, header, b"".join(chunks)[:limit], truncated)

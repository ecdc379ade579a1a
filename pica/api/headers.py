"""Headers every HTTP response carries, whichever handler (or error) produced it.

- ``X-Content-Type-Options: nosniff`` everywhere: a browser must never guess a script or a page out of a JSON error
  that echoes client input.
- ``Cache-Control: no-store`` under ``/v1/``: tokens and private data travel there, and no browser, proxy or shared
  cache may keep them. The web page's files (``/`` and ``/static/``) keep their own policy (revalidate, pica/web).
- ``Server: Pica`` instead of aiohttp's default, which names the Python and aiohttp versions: a free hint for anyone
  matching a node against known vulnerabilities.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from pica.gateway.ws import RESPONSE_HEADERS_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER: Final = "Pica"
"""The ``Server`` header: the product, no version."""

_EVERYWHERE: Final = {"Server": SERVER, "X-Content-Type-Options": "nosniff"}
_API: Final = {**_EVERYWHERE, "Cache-Control": "no-store"}


def headers_for(path: str) -> dict[str, str]:
    """The headers a response to ``path`` must carry (they replace any the handler set under the same names)."""
    return _API if path.startswith("/v1/") else _EVERYWHERE


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so that it also sees the error responses of ``error_middleware``."""
    headers = headers_for(request.path)
    # A WebSocket upgrade is answered (prepared) inside its handler, before this middleware sees the response:
    # the handler adds the headers itself (pica.gateway.ws).
    request[RESPONSE_HEADERS_KEY] = headers
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response

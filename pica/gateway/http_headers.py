"""Headers every HTTP response of the node carries, whoever writes it: the API's middleware
(:mod:`pica.api.headers`), the WebSocket upgrade (:mod:`pica.gateway.ws`) and the refusal written below aiohttp
(:mod:`pica.gateway.http_socket`).

- ``X-Content-Type-Options: nosniff`` everywhere: a browser must never guess a script or a page out of a JSON error
  that echoes client input.
- ``Cache-Control: no-store`` under ``/v1/``: tokens and private data travel there, and no browser, proxy or shared
  cache may keep them. The web page's files (``/`` and ``/static/``) keep their own policy (revalidate, pica/web).
- ``Server: Pica`` instead of aiohttp's default, which names the Python and aiohttp versions: a free hint for anyone
  matching a node against known vulnerabilities.
"""

from __future__ import annotations

from typing import Final

SERVER: Final = "Pica"
"""The ``Server`` header: the product, no version."""

EVERYWHERE: Final = {"Server": SERVER, "X-Content-Type-Options": "nosniff"}
API: Final = {**EVERYWHERE, "Cache-Control": "no-store"}
"""What every response under ``/v1/`` carries (the WebSocket upgrade ``/v1/ws`` included)."""


def headers_for(path: str) -> dict[str, str]:
    """The headers a response to ``path`` must carry (they replace any the handler set under the same names)."""
    return API if path.startswith("/v1/") else EVERYWHERE

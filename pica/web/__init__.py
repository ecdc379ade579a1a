"""The web chat page: plain HTML, CSS and ES modules under ``static/``, served at ``/`` and ``/static/<name>``.

No build step and nothing from elsewhere: the browser loads the files as they are and speaks the documented protocol
(docs/protocol.md) to ``/v1/ws`` and the HTTP API, like any other client.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from aiohttp import web

from pica.errors import NotFound

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# The page loads only its own files and talks only to its own origin ('self' covers ws:/wss: to the same host);
# blob: is the object URLs of files it downloaded with its token (pica/web/static/files.js).
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final = {
    "Cache-Control": "no-cache",  # revalidate (ETag / Last-Modified): an upgraded server serves its own page
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file_response(path: Path) -> web.FileResponse:
    headers = dict(_COMMON_HEADERS)
    headers["Content-Type"] = _TYPES[path.suffix] + ("; charset=utf-8" if path.suffix != ".svg" else "")
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = _CSP
        headers["X-Frame-Options"] = "DENY"
    return web.FileResponse(path, headers=headers)


async def index(request: web.Request) -> web.FileResponse:
    """GET / : the chat page."""
    return _file_response(STATIC_DIR / "index.html")


async def static_file(request: web.Request) -> web.FileResponse:
    """GET /static/<name>: one file of the page; only plain names of files that exist, of the known types."""
    name = request.match_info["name"]
    path = STATIC_DIR / name
    if not _NAME.match(name) or path.suffix not in _TYPES or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    return _file_response(path)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)

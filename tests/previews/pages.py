"""A local web site for link preview tests: pages with Open Graph tags, an image, redirects, a huge page, a slow page
and a JSON document, served by aiohttp on 127.0.0.1 (or another loopback address) and counting its requests."""

from __future__ import annotations

import asyncio
import gzip
import io
from collections import Counter

from aiohttp import web
from PIL import Image

HEAD = (
    '<html><head><meta charset="utf-8"><title>Fallback title</title>'
    '<meta property="og:title" content="Pica &amp; friends">'
    '<meta property="og:description" content="A chat server that keeps every message.">'
    '<meta property="og:image" content="/cat.png"><meta property="og:site_name" content="Pica">'
    "</head><body><p>body</p></body></html>"
)


def png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


class Site:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.huge_bytes_sent = 0
        self._runner: web.AppRunner | None = None
        self.redirect_to = ""

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)  # the slow page is not waited for
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        if name == "cat.png":
            return web.Response(body=png(), content_type="image/png")
        if name == "page":
            return web.Response(text=HEAD, content_type="text/html")
        if name == "plain":
            return web.Response(text="<title>Only a title</title>", content_type="text/html", charset="utf-8")
        if name == "redirect":
            raise web.HTTPFound(self.redirect_to)
        if name.startswith("loop"):
            raise web.HTTPFound(f"/loop{len(name)}")
        if name == "json":
            return web.json_response({"title": "not a page"})
        if name == "slow":
            await asyncio.sleep(30)
            return web.Response(text=HEAD, content_type="text/html")
        if name == "huge":
            response = web.StreamResponse(headers={"Content-Type": "text/html"})
            await response.prepare(request)
            await response.write(HEAD.replace("</body></html>", "").encode())
            chunk = b"<p>" + b"x" * 65536 + b"</p>"
            for _ in range(50 * 16):  # 50 MiB, unless the reader stops first
                await response.write(chunk)
                self.huge_bytes_sent += len(chunk)
            return response
        if name == "bomb":  # 64 MiB of HTML that travels as about 300 KiB of gzip
            inflated = HEAD.replace("</body></html>", "").encode() + b" " * (64 * 1024 * 1024)
            return web.Response(body=gzip.compress(inflated, 1), content_type="text/html",
                                headers={"Content-Encoding": "gzip"})
        if name == "gzipped":
            return web.Response(body=gzip.compress(HEAD.encode()), content_type="text/html",
                                headers={"Content-Encoding": "gzip"})
        if name == "huge.png":
            return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024), content_type="image/png")
        if name == "bigimage":
            return web.Response(text=HEAD.replace("/cat.png", "/huge.png"), content_type="text/html")
        raise web.HTTPNotFound()

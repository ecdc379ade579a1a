"""A page's preview fields from its HTML: pure (bytes in, a :class:`PagePreview` out), so tests need no server.

Sources in order of preference: Open Graph (``og:title``, ``og:description``, ``og:image``, ``og:site_name``), then
Twitter cards (``twitter:title`` ...), then ``<title>`` and ``<meta name="description">``. Parsing stops at
``<body>``'s first tag after the head (meta tags live in the head) or at the end of what was read; the stdlib's
``html.parser`` never raises on malformed markup, so a hostile page yields at worst an empty preview.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin, urlsplit

_CHARSET: Final = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PagePreview:
    title: str = ""
    description: str = ""
    image_url: str = ""
    """Absolute http(s) URL of the page's image, or empty."""
    site_name: str = ""

    @property
    def empty(self) -> bool:
        return not (self.title or self.description or self.image_url)


class _Head(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: list[str] = []
        self._in_title = False
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
        elif tag == "title":
            self._in_title = True
        elif tag == "meta":
            values = {name.lower(): value or "" for name, value in attrs}
            key = (values.get("property") or values.get("name") or "").strip().lower()
            if key and "content" in values:
                self.meta.setdefault(key, values["content"])  # the first of repeated tags wins (as crawlers do)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "head":
            self.done = True

    def handle_data(self, data: str) -> None:
        if self._in_title and not self.done:
            self.title.append(data)


def charset_of(content_type: str, head: bytes) -> str:
    """The page's encoding: the Content-Type header's, else a ``<meta charset>`` in the first bytes, else UTF-8."""
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"' ")
    found = _CHARSET.search(head[:4096])
    return found.group(1).decode("ascii") if found else "utf-8"


def _clean(text: str, limit: int) -> str:
    text = _SPACES.sub(" ", text).strip()
    # Control characters would reach every client's screen; the limit keeps one page from bloating every sync.
    text = "".join(c for c in text if c >= " " or c == "\t")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def extract(page: bytes, content_type: str, base_url: str, *, max_title: int = 300,
            max_description: int = 1000) -> PagePreview:
    """The preview of a page read from ``base_url`` (the last hop's URL: relative image URLs resolve against it)."""
    encoding = charset_of(content_type, page)
    try:
        text = page.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        text = page.decode("utf-8", errors="replace")
    parser = _Head()
    parser.feed(text)
    parser.close()
    meta = parser.meta

    def first(*keys: str) -> str:
        return next((meta[k] for k in keys if meta.get(k, "").strip()), "")

    title = first("og:title", "twitter:title") or "".join(parser.title)
    description = first("og:description", "twitter:description", "description")
    image = first("og:image:secure_url", "og:image", "og:image:url", "twitter:image", "twitter:image:src").strip()
    image_url = ""
    if image:
        image_url = urljoin(base_url, image)
        if urlsplit(image_url).scheme not in ("http", "https"):
            image_url = ""  # data:, javascript:, file: ... never fetched
    return PagePreview(_clean(title, max_title), _clean(description, max_description), image_url,
                       _clean(first("og:site_name"), 100))

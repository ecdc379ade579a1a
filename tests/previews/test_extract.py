"""What a page's HTML gives a preview (pica/previews/extract.py) and which link of a text is previewed
(pica/protocol/links.py): pure, bytes and strings in, values out."""

from __future__ import annotations

import pytest

from pica.previews.extract import PagePreview, extract
from pica.protocol.links import first_link, link_of


@pytest.mark.parametrize(("text", "link"), [
    ("see https://example.org/a.", "https://example.org/a"),
    ("two: http://a.example/x and https://b.example/y", "http://a.example/x"),
    ("明天看https://example.org/a\uff0c好吗", "https://example.org/a"),
    ("(https://example.org/a)", "https://example.org/a"),
    ("https://en.wikipedia.org/wiki/Pica_(bird)", "https://en.wikipedia.org/wiki/Pica_(bird)"),
    ("<https://example.org/q?a=1&b=2#top>", "https://example.org/q?a=1&b=2#top"),
    ("HTTPS://EXAMPLE.ORG", "HTTPS://EXAMPLE.ORG"),
    ("www.example.org has no scheme", None),
    ("ftp://example.org/file", None),
    ("http:// nothing", None),
    ("https://" + "a" * 3000, None),
])
def test_the_first_http_link_of_a_text(text: str, link: str | None) -> None:
    assert first_link(text) == link


def test_only_a_text_or_caption_is_previewed() -> None:
    assert link_of({"text": "https://example.org"}) == "https://example.org"
    assert link_of({"file": {"id": "f"}, "text": "see https://example.org"}) == "https://example.org"
    assert link_of({"custom": {"url": "https://example.org"}}) is None


def page(head: str) -> bytes:
    return f"<!doctype html><html><head>{head}</head><body><title>not this</title></body></html>".encode()


def test_open_graph_comes_first_then_twitter_then_title_and_description() -> None:
    og = page('<title>T</title><meta name="description" content="D"><meta name="twitter:title" content="TT">'
              '<meta property="og:title" content="OG"><meta property="og:description" content="OGD">'
              '<meta property="og:image" content="https://cdn.example/i.png"><meta property="og:site_name" '
              'content="Site">')
    assert extract(og, "text/html", "https://example.org/a") == PagePreview("OG", "OGD", "https://cdn.example/i.png",
                                                                            "Site")
    twitter = page('<title>T</title><meta name="twitter:title" content="TT">'
                   '<meta name="twitter:description" content="TD"><meta name="twitter:image" content="i.png">')
    assert extract(twitter, "text/html", "https://example.org/a/b") == PagePreview(
        "TT", "TD", "https://example.org/a/i.png")
    plain = page("<title>\n  Plain   title </title><meta name=description content='Words &amp; more'>")
    assert extract(plain, "text/html", "https://example.org/") == PagePreview("Plain title", "Words & more")


def test_encodings_limits_and_hostile_markup() -> None:
    gbk = page('<meta charset="gbk"><title>我们明天开会</title>').decode().encode("gbk")
    assert extract(gbk, "text/html", "https://example.org/").title == "我们明天开会"
    latin = "<title>Café</title>".encode("latin-1")
    assert extract(latin, "text/html; charset=ISO-8859-1", "https://example.org/").title == "Café"
    assert extract(b"<title>x</title>", "text/html; charset=no-such", "https://e.org/").title == "x"
    long = page(f"<title>{'word ' * 200}</title>")
    title = extract(long, "text/html", "https://example.org/", max_title=50).title
    assert len(title) == 50 and title.endswith("…")
    scripted = page('<meta property="og:image" content="javascript:alert(1)"><title>a\x07b</title>')
    assert extract(scripted, "text/html", "https://example.org/") == PagePreview("ab")
    for junk in (b"", b"<<<>>>", b"<meta property=og:title", b"\xff\xfe\x00<", b"<html><body>only body"):
        assert extract(junk, "text/html", "https://example.org/").empty

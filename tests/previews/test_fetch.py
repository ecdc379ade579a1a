"""The SSRF rules of link previews (pica/previews/fetch.py), against a real local web server: loopback, private and
metadata addresses refused before any connection, a redirect to loopback refused, ports, a huge page cut, a slow
page given up, a page that is not HTML refused; and what is allowed fetches and extracts a preview."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import AsyncIterator

import pytest

from pica.config import PreviewsConfig
from pica.previews.fetch import Address, Fetcher, FetchError, blocked
from pica.previews.job import PreviewJob
from pica.store.base import Store
from tests.previews.pages import Site


@pytest.fixture
async def other_site() -> AsyncIterator[Site]:
    """A second site on another loopback address (127.0.0.2): the one a test allows, while 127.0.0.1 is refused."""
    served = Site("127.0.0.2")
    await served.start()
    yield served
    await served.stop()


def strict(*sites: Site, **changes: object) -> PreviewsConfig:
    """The default rules (nothing private allowed), the test sites' ports allowed."""
    return dataclasses.replace(PreviewsConfig(), allowed_ports=(80, 443, *(s.port for s in sites)),
                               **changes)  # type: ignore[arg-type]


async def refusal(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(FetchError) as failed:
        await fetcher.page(url)
    assert failed.value.refused
    return str(failed.value)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
])
def test_every_non_public_address_is_refused(address: str) -> None:
    assert blocked(ipaddress.ip_address(address), PreviewsConfig())


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not blocked(ipaddress.ip_address(address), PreviewsConfig())


def test_allowed_networks_and_allow_private_open_what_the_operator_says() -> None:
    intranet = PreviewsConfig(allowed_networks=("10.1.0.0/16",))
    assert not blocked(ipaddress.ip_address("10.1.2.3"), intranet)
    assert blocked(ipaddress.ip_address("10.2.0.1"), intranet)
    private = PreviewsConfig(allow_private=True)
    assert not blocked(ipaddress.ip_address("192.168.1.1"), private)
    assert blocked(ipaddress.ip_address("224.0.0.1"), private) and blocked(ipaddress.ip_address("0.0.0.0"), private)


async def test_a_loopback_page_is_refused_without_a_request(site: Site) -> None:
    fetcher = Fetcher(strict(site))
    assert "not a public address" in await refusal(fetcher, site.url("/page"))
    assert "not a public address" in await refusal(fetcher, f"http://[::ffff:127.0.0.1]:{site.port}/page")
    assert "not a public address" in await refusal(fetcher, f"http://localhost:{site.port}/page")
    assert site.hits["page"] == 0


async def test_a_name_resolving_to_a_private_or_metadata_address_is_refused(site: Site) -> None:
    answers = {"intranet.example": ["10.0.0.7"], "metadata.example": ["169.254.169.254"],
               "mixed.example": ["93.184.215.14", "192.168.0.1"]}

    async def resolve(host: str, port: int) -> list[Address]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    fetcher = Fetcher(strict(site), resolve)
    for host in answers:
        assert await refusal(fetcher, f"http://{host}/") != ""
    # One refused address refuses the name: which one a connection would get is the resolver's choice.
    assert "192.168.0.1" in await refusal(fetcher, "http://mixed.example/")


async def test_the_connection_goes_to_the_address_checked_not_to_a_second_lookup(other_site: Site) -> None:
    """DNS rebinding: a name that answers an allowed address for the check and loopback afterwards."""
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[Address]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.2" if len(lookups) == 1 else "127.0.0.1")]

    fetcher = Fetcher(strict(other_site, allowed_networks=("127.0.0.2/32",)), rebinding)
    fetched = await fetcher.page(f"http://rebind.example:{other_site.port}/page")
    assert b"og:title" in fetched.body and other_site.hits["page"] == 1
    assert lookups == ["rebind.example"]


async def test_schemes_ports_and_credentials_are_refused(site: Site, other_site: Site) -> None:
    fetcher = Fetcher(strict(site, allowed_networks=("127.0.0.2/32",)))
    assert "port" in await refusal(fetcher, other_site.url("/page"))  # allowed address, port not allowed
    assert "http" in await refusal(fetcher, "file:///etc/passwd")
    assert "http" in await refusal(fetcher, "gopher://127.0.0.2:70/")
    assert "user name" in await refusal(fetcher, f"http://me:secret@127.0.0.2:{site.port}/page")
    assert other_site.hits["page"] == 0


async def test_a_redirect_to_loopback_is_refused(site: Site, other_site: Site) -> None:
    fetcher = Fetcher(strict(site, other_site, allowed_networks=("127.0.0.2/32",)))
    other_site.redirect_to = site.url("/page")
    assert "127.0.0.1" in await refusal(fetcher, other_site.url("/redirect"))
    assert (other_site.hits["redirect"], site.hits["page"]) == (1, 0)
    # A redirect within the allowed site is followed, and a chain of them is cut.
    other_site.redirect_to = "/page"
    fetched = await fetcher.page(other_site.url("/redirect"))
    assert fetched.url == other_site.url("/page") and b"og:title" in fetched.body
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await fetcher.page(other_site.url("/loop"))


async def test_a_huge_page_is_cut_and_still_previewed(site: Site) -> None:
    config = strict(site, allowed_networks=("127.0.0.0/8",), max_page_bytes=65536)
    fetched = await Fetcher(config).page(site.url("/huge"))
    assert fetched.truncated and len(fetched.body) == 65536
    assert site.huge_bytes_sent < 50 * 1024 * 1024  # the reader stopped; the server did not send it all
    preview = await PreviewJob(_no_store(), config).make(site.url("/huge"))
    assert preview["title"] == "Pica & friends"


async def test_a_compressed_page_is_inflated_up_to_the_limit_only(site: Site) -> None:
    config = strict(site, allowed_networks=("127.0.0.0/8",), max_page_bytes=65536)
    fetcher = Fetcher(config)
    bomb = await fetcher.page(site.url("/bomb"))
    assert bomb.truncated and len(bomb.body) == 65536 and b"og:title" in bomb.body
    gzipped = await fetcher.page(site.url("/gzipped"))
    assert not gzipped.truncated and gzipped.body.endswith(b"</html>")


async def test_a_huge_image_is_left_out(site: Site) -> None:
    config = strict(site, allowed_networks=("127.0.0.0/8",), max_image_bytes=1024 * 1024)
    with pytest.raises(FetchError, match="more than"):
        await Fetcher(config).image(site.url("/huge.png"))
    preview = await PreviewJob(_no_store(), config).make(site.url("/bigimage"))
    assert preview["title"] == "Pica & friends" and "image" not in preview


async def test_a_slow_page_is_given_up(site: Site) -> None:
    config = strict(site, allowed_networks=("127.0.0.0/8",), timeout=0.5)
    assert await PreviewJob(_no_store(), config).make(site.url("/slow")) == {}
    assert site.hits["slow"] == 1


async def test_only_html_is_read_as_a_page_and_only_images_as_an_image(site: Site) -> None:
    fetcher = Fetcher(strict(site, allowed_networks=("127.0.0.0/8",)))
    with pytest.raises(FetchError, match="content type 'application/json'"):
        await fetcher.page(site.url("/json"))
    with pytest.raises(FetchError, match="content type 'text/html'"):
        await fetcher.image(site.url("/page"))
    with pytest.raises(FetchError, match="HTTP 404"):
        await fetcher.page(site.url("/missing"))


async def test_an_allowed_page_gives_title_description_site_and_a_small_image(site: Site) -> None:
    config = strict(site, allowed_networks=("127.0.0.0/8",), image_size=64)
    preview = await PreviewJob(_no_store(), config).make(site.url("/page"))
    image = preview.pop("image")
    assert preview == {"url": site.url("/page"), "title": "Pica & friends", "site_name": "Pica",
                       "description": "A chat server that keeps every message."}
    assert image.startswith("data:image/jpeg;base64,") and len(image) < 8000
    assert await PreviewJob(_no_store(), config).make(site.url("/plain")) == {"url": site.url("/plain"),
                                                                             "title": "Only a title"}


def _no_store() -> Store:
    """``make`` never touches the store: a stand-in that fails loudly if it did."""
    return None  # type: ignore[return-value]

"""The XML stream reader, with bytes only: stanzas whole whatever the chunking, and every refused construct refused
with a documented error, never another exception."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.errors import FrameTooLarge, InvalidFrame
from pica.protocol import xmpp as x

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
STANZAS = (b"<message to='bob@localhost' type='chat' id='m1'><body>hi &amp; &lt;bye&gt; \xc3\xa9</body>"
           b"<request xmlns='urn:xmpp:receipts'/></message> \n "
           b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq><presence/>")


def read(chunks: list[bytes], limit: int = 65_536, depth: int = 16) -> list[x.Event]:
    reader = x.StreamReader(limit, depth)
    events: list[x.Event] = []
    for chunk in chunks:
        events += reader.feed(chunk)
    return events


def test_a_stream_reads_as_its_stanzas() -> None:
    opened, message, iq, presence = read([HEADER + STANZAS])
    assert isinstance(opened, x.StreamOpen) and opened.attrs["to"] == "localhost"
    assert isinstance(message, x.Stanza) and isinstance(iq, x.Stanza) and isinstance(presence, x.Stanza)
    body = message.element.child("body")
    assert body is not None and body.text == "hi & <bye> é"
    assert message.element.child("request", x.NS_RECEIPTS) is not None
    assert iq.element.children[0].ns == x.NS_ROSTER and presence.element.name == "presence"
    assert read([HEADER + b"</stream:stream>"])[-1] == x.StreamEnd()


@given(st.lists(st.integers(min_value=1, max_value=len(HEADER + STANZAS) - 1), max_size=12, unique=True))
def test_any_chunking_gives_the_same_stanzas(cuts: list[int]) -> None:
    data = HEADER + STANZAS
    bounds = [0, *sorted(cuts), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert [e for e in read(chunks)] == read([data])


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_events_or_a_documented_error(data: bytes) -> None:
    with contextlib.suppress(InvalidFrame, FrameTooLarge):
        read([HEADER, data])


def test_element_round_trip() -> None:
    [_, stanza] = read([HEADER + b"<message a='1&amp;\"'><x xmlns='urn:x'>t&lt;</x></message>"])
    assert isinstance(stanza, x.Stanza)
    again = read([HEADER + stanza.element.to_bytes()])[1]
    assert again == stanza


@pytest.mark.parametrize("attack", [
    # billion laughs: an internal DTD subset with nested entities
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>"
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol2;",
    # an external entity naming a local file
    b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message><body>&xxe;</body></message>",
    # an entity that was never declared
    HEADER + b"<message><body>&xxe;</body></message>",
    HEADER + b"<?evil instruction?>",
    HEADER + b"<!-- a comment -->",
    b"<notastream/>",
    HEADER + b"<message><unclosed></message>",
])
def test_refused_constructs(attack: bytes) -> None:
    with pytest.raises(InvalidFrame):
        read([attack])


def test_a_stanza_over_the_limit_is_refused_as_it_arrives() -> None:
    reader = x.StreamReader(4_096, 16)
    reader.feed(HEADER + b"<message><body>")
    with pytest.raises(FrameTooLarge):
        for _ in range(100):  # 100 MiB would follow; the reader refuses after about 4 KiB of it
            reader.feed(b"a" * 1024)


def test_stanzas_up_to_the_limit_pass_one_after_another() -> None:
    reader = x.StreamReader(4_096, 16)
    reader.feed(HEADER)
    stanza = b"<message><body>" + b"a" * 3_000 + b"</body></message>"
    for _ in range(50):
        assert len(reader.feed(stanza)) == 1


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(InvalidFrame):
        read([HEADER + b"<a>" * 40], depth=16)


def test_jids_and_sasl_plain() -> None:
    jid = x.parse_jid("Alice@Localhost/phone/1")
    assert jid == x.Jid("alice", "localhost", "phone/1") and jid.bare == "alice@localhost"
    assert x.parse_jid("@localhost") is None and x.parse_jid("") is None
    assert x.sasl_plain("AGFsaWNlAHNlY3JldA==") == ("alice", "secret")  # \0alice\0secret
    assert x.sasl_plain("not base64!") is None
    assert x.sasl_plain("Ym9iAGFsaWNlAHNlY3JldA==") is None  # authzid bob for authcid alice

"""XMPP's wire layer, sans-I/O: the XML stream reader, the element model and its serialiser, JIDs, SASL PLAIN.

The reader is built on the standard library's expat with everything XMPP forbids refused (RFC 6120 section 11.1):
a document type declaration, entity declarations (so no billion laughs and no external entity can exist: without a
DTD expat knows only the five predefined entities and refuses any other reference), processing instructions and
comments. Bytes go in through :meth:`StreamReader.feed`, events come out: the stream's opening tag, each top-level
element (a stanza or a negotiation element) whole, the stream's end. Limits are checked as bytes arrive, before a
stanza is built: a stanza longer than ``max_stanza_bytes`` or nested deeper than ``max_depth`` raises
:class:`~pica.errors.FrameTooLarge` or :class:`~pica.errors.InvalidFrame`, and nothing else is ever raised, whatever
the bytes. A chunk is fed to expat in slices no longer than the stanza limit, so that one huge read cannot make the
parser buffer it whole before the check.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Final
from xml.parsers import expat

from pica.errors import FrameTooLarge, InvalidFrame

NS_STREAM: Final = "http://etherx.jabber.org/streams"
NS_CLIENT: Final = "jabber:client"
NS_TLS: Final = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL: Final = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND: Final = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION: Final = "urn:ietf:params:xml:ns:xmpp-session"
NS_STANZAS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS_ERR: Final = "urn:ietf:params:xml:ns:xmpp-streams"
NS_ROSTER: Final = "jabber:iq:roster"
NS_PING: Final = "urn:xmpp:ping"
NS_DISCO_INFO: Final = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS: Final = "http://jabber.org/protocol/disco#items"
NS_CAPS: Final = "http://jabber.org/protocol/caps"
NS_RECEIPTS: Final = "urn:xmpp:receipts"
NS_MARKERS: Final = "urn:xmpp:chat-markers:0"
NS_CHATSTATES: Final = "http://jabber.org/protocol/chatstates"
NS_CORRECT: Final = "urn:xmpp:message-correct:0"
NS_RETRACT: Final = "urn:xmpp:message-retract:1"
NS_SID: Final = "urn:xmpp:sid:0"
NS_SM: Final = "urn:xmpp:sm:3"
NS_XML: Final = "http://www.w3.org/XML/1998/namespace"
NS_MAM: Final = "urn:xmpp:mam:2"
NS_RSM: Final = "http://jabber.org/protocol/rsm"
NS_DATA: Final = "jabber:x:data"
NS_FORWARD: Final = "urn:xmpp:forward:0"
NS_DELAY: Final = "urn:xmpp:delay"
NS_CARBONS: Final = "urn:xmpp:carbons:2"
NS_MUC: Final = "http://jabber.org/protocol/muc"
NS_MUC_USER: Final = "http://jabber.org/protocol/muc#user"

_SEP: Final = "\x01"
"""expat's separator between a name's namespace and its local part: a character no XML name may contain."""


@dataclass(slots=True)
class Element:
    """An XML element: its namespace and local name, attributes (namespaced ones as ``{ns}name``), children and
    text (the concatenated character data directly inside it; mixed content keeps no order, XMPP needs none)."""

    name: str
    ns: str = NS_CLIENT
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def child(self, name: str, ns: str | None = None) -> Element | None:
        for c in self.children:
            if c.name == name and (ns is None or c.ns == ns):
                return c
        return None

    def child_ns(self, ns: str) -> Element | None:
        """The first child in namespace ``ns``, whatever its name (a chat state, a marker)."""
        for c in self.children:
            if c.ns == ns:
                return c
        return None

    def add(self, child: Element) -> Element:
        self.children.append(child)
        return child

    def get(self, attr: str, default: str = "") -> str:
        return self.attrs.get(attr, default)

    def to_bytes(self, parent_ns: str = NS_CLIENT) -> bytes:
        return self.to_str(parent_ns).encode()

    def to_str(self, parent_ns: str = NS_CLIENT) -> str:
        parts: list[str] = []
        self._write(parts, parent_ns)
        return "".join(parts)

    def _write(self, out: list[str], parent_ns: str) -> None:
        out.append("<" + self.name)
        if self.ns != parent_ns:
            out.append(f' xmlns="{escape_attr(self.ns)}"')
        for key, value in self.attrs.items():
            if key.startswith("{"):
                ns, _, local = key[1:].partition("}")
                key = "xml:" + local if ns == NS_XML else local
            out.append(f' {key}="{escape_attr(value)}"')
        if not self.children and not self.text:
            out.append("/>")
            return
        out.append(">")
        if self.text:
            out.append(escape_text(self.text))
        for c in self.children:
            c._write(out, self.ns)
        out.append(f"</{self.name}>")


def el(name: str, ns: str = NS_CLIENT, text: str = "", /, *children: Element, **attrs: str | None) -> Element:
    """Build an element; attribute names with a trailing underscore lose it (``type_`` → ``type``)."""
    return Element(name, ns, {k.rstrip("_"): v for k, v in attrs.items() if v is not None}, list(children), text)


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace(
        "\t", "&#9;")


# ---------------------------------------------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The ``<stream:stream>`` opening tag's attributes (``to``, ``version``, ``{ns}lang``...)."""

    attrs: dict[str, str]


@dataclass(frozen=True, slots=True)
class Stanza:
    element: Element


@dataclass(frozen=True, slots=True)
class StreamEnd:
    pass


Event = StreamOpen | Stanza | StreamEnd


class _Refused(Exception):
    """Raised inside expat's callbacks; turned into InvalidFrame by ``feed``."""


def _split(name: str) -> tuple[str, str]:
    ns, sep, local = name.rpartition(_SEP)
    return (ns, local) if sep else ("", name)


class StreamReader:
    """An incremental reader of one XML stream (a new one after each stream restart: STARTTLS, SASL success)."""

    __slots__ = ("_depth", "_events", "_fed", "_max_depth", "_max_stanza", "_parser", "_stack", "_start", "_text")

    def __init__(self, max_stanza_bytes: int, max_depth: int) -> None:
        self._max_stanza = max_stanza_bytes
        self._max_depth = max_depth
        self._events: list[Event] = []
        self._stack: list[Element] = []
        self._depth = 0
        self._fed = 0
        """Bytes fed so far."""
        self._start = 0
        """Byte offset where the stanza being read began (its ``<``), or where the stream's opening tag may."""
        self._text = 0
        p = expat.ParserCreate("UTF-8", namespace_separator=_SEP)
        p.buffer_text = True
        p.ordered_attributes = False
        p.StartElementHandler = self._start_element
        p.EndElementHandler = self._end_element
        p.CharacterDataHandler = self._chars
        p.StartDoctypeDeclHandler = self._refuse_dtd
        p.EntityDeclHandler = self._refuse_entity
        p.UnparsedEntityDeclHandler = self._refuse_entity
        p.ExternalEntityRefHandler = self._refuse_external
        p.ProcessingInstructionHandler = self._refuse_pi
        p.CommentHandler = self._refuse_comment
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser = p

    @property
    def depth(self) -> int:
        return self._depth

    def feed(self, data: bytes) -> list[Event]:
        """The events the bytes complete. Raises FrameTooLarge (a stanza over the limit) or InvalidFrame (bad XML,
        a refused construct, nesting too deep); after either the stream is over."""
        step = max(1, self._max_stanza)
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            try:
                self._parser.Parse(chunk, False)
            except _Refused as exc:
                raise InvalidFrame(str(exc)) from None
            except expat.ExpatError as exc:
                raise InvalidFrame(f"not well-formed XML: {expat.errors.messages[exc.code]}") from None
            except FrameTooLarge:
                raise
            except (ValueError, RecursionError, UnicodeError) as exc:
                raise InvalidFrame(f"not well-formed XML: {exc}") from None
            self._fed += len(chunk)
            if self._fed - self._start > self._max_stanza:
                if self._depth >= 2:
                    raise FrameTooLarge(f"stanza over {self._max_stanza} bytes")
                if self._depth == 0:
                    raise FrameTooLarge(f"stream header over {self._max_stanza} bytes")
            if self._depth == 1:
                self._start = self._fed  # between stanzas (whitespace keep-alives): nothing is buffered
        events, self._events = self._events, []
        return events

    # expat callbacks

    def _start_element(self, name: str, attrs: dict[str, str]) -> None:
        ns, local = _split(name)
        self._depth += 1
        if self._depth > self._max_depth:
            raise _Refused(f"elements nested deeper than {self._max_depth}")
        plain = {}
        for key, value in attrs.items():
            a_ns, a_local = _split(key)
            plain["{" + a_ns + "}" + a_local if a_ns else a_local] = value
        if self._depth == 1:
            if local != "stream" or ns != NS_STREAM:
                raise _Refused("the stream must open with <stream:stream>")
            self._events.append(StreamOpen(plain))
            return
        if self._depth == 2:
            self._start = self._parser.CurrentByteIndex
        element = Element(local, ns, plain)
        if self._stack:
            self._stack[-1].children.append(element)
        self._stack.append(element)

    def _end_element(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._events.append(StreamEnd())
            return
        element = self._stack.pop()
        if self._depth == 1:
            end = self._parser.CurrentByteIndex
            if end - self._start > self._max_stanza:
                raise FrameTooLarge(f"stanza over {self._max_stanza} bytes")
            self._events.append(Stanza(element))

    def _chars(self, data: str) -> None:
        if self._stack:
            self._stack[-1].text += data
        # text at depth 1 is whitespace between stanzas (keep-alives): dropped

    def _refuse_dtd(self, *args: object) -> None:
        raise _Refused("a document type declaration (DTDs are refused)")

    def _refuse_entity(self, *args: object) -> None:
        raise _Refused("an entity declaration (entities are refused)")

    def _refuse_external(self, *args: object) -> int:
        raise _Refused("an external entity reference (refused)")

    def _refuse_pi(self, *args: object) -> None:
        raise _Refused("a processing instruction (refused in XMPP)")

    def _refuse_comment(self, *args: object) -> None:
        raise _Refused("a comment (refused in XMPP)")


def stream_header(stream_id: str, domain: str, lang: str = "en") -> bytes:
    """The server's opening tag (its XML declaration first), answering a client's."""
    return (f"<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}' "
            f"id='{escape_attr(stream_id)}' from='{escape_attr(domain)}' version='1.0' "
            f"xml:lang='{escape_attr(lang)}'>").encode()


STREAM_END: Final = b"</stream:stream>"


def stream_element(name: str, *children: Element) -> bytes:
    """An element of the stream's own namespace (``stream:features``, ``stream:error``), written with the stream's
    prefix as clients expect."""
    inner = "".join(c.to_str(NS_CLIENT) for c in children)
    return f"<stream:{name}>{inner}</stream:{name}>".encode() if inner else f"<stream:{name}/>".encode()


def stream_error(condition: str, text: str = "") -> bytes:
    """A stream error (RFC 6120 section 4.9): the stream ends after it."""
    parts = [el(condition, NS_STREAMS_ERR)]
    if text:
        parts.append(el("text", NS_STREAMS_ERR, text))
    return stream_element("error", *parts)


def stanza_error(stanza: Element, kind: str, condition: str, text: str = "") -> Element:
    """The error answer to ``stanza`` (RFC 6120 section 8.3): its id, from and to swapped."""
    answer = el(stanza.name, NS_CLIENT, "", type_="error")
    if stanza.get("id"):
        answer.attrs["id"] = stanza.get("id")
    if stanza.get("to"):
        answer.attrs["from"] = stanza.get("to")
    error = answer.add(el("error", NS_CLIENT, "", el(condition, NS_STANZAS), type_=kind))
    if text:
        error.add(el("text", NS_STANZAS, text))
    return answer


# ---------------------------------------------------------------------------------------------------------- JIDs


@dataclass(frozen=True, slots=True)
class Jid:
    local: str
    domain: str
    resource: str = ""

    @property
    def bare(self) -> str:
        return f"{self.local}@{self.domain}" if self.local else self.domain

    def __str__(self) -> str:
        return f"{self.bare}/{self.resource}" if self.resource else self.bare


def parse_jid(text: str) -> Jid | None:
    """``local@domain/resource`` (each part optional but the domain); None for what is not a JID. Parts are compared
    case-insensitively for the local part and domain (a simplification of RFC 7622's PRECIS profiles)."""
    if not text or len(text) > 3071:
        return None
    bare, _, resource = text.partition("/")
    local, at, domain = bare.rpartition("@")
    if not at:
        local, domain = "", bare
    if not domain or (at and not local) or len(local) > 1023 or len(resource) > 1023:
        return None
    return Jid(local.lower(), domain.lower(), resource)


# ---------------------------------------------------------------------------------------------------------- SASL


def sasl_plain(payload: str) -> tuple[str, str] | None:
    """The username and password of a SASL PLAIN message (RFC 4616: ``authzid NUL authcid NUL passwd``, base64),
    or None if it is not one. An authorization identity other than the user's own is refused by the caller."""
    try:
        raw = base64.b64decode(payload.strip(), validate=True)
        authzid, authcid, password = raw.decode("utf-8").split("\x00")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not authcid or not password:
        return None
    if authzid and authzid.partition("@")[0].lower() != authcid.lower():
        return None
    return authcid, password

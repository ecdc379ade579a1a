"""The pure mapping between Pica's frames and XMPP stanzas (docs/protocol.md, section 31): no I/O, no state.

The gateway resolves user ids to usernames first (a JID is ``username@domain``) and hands the names in.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from pica.core.validation import check_client_msg_id
from pica.errors import BadRequest
from pica.protocol import frames as f
from pica.protocol import xmpp as x
from pica.protocol.ids import direct_members
from pica.protocol.xmpp import Element, el

FEATURES: Final = (x.NS_DISCO_INFO, x.NS_DISCO_ITEMS, x.NS_PING, x.NS_RECEIPTS, x.NS_MARKERS, x.NS_CHATSTATES,
                   x.NS_CORRECT, x.NS_RETRACT, x.NS_SID, x.NS_CARBONS, x.NS_SM, x.NS_MAM, x.NS_MUC)
"""What the server says it speaks in disco#info (XEP-0030) and hashes into its caps (XEP-0115)."""

RETRACT_FALLBACK: Final = "This person attempted to retract a previous message, but it's unsupported by your client."


def stanza_id(conversation_id: str, seq: int) -> str:
    """The id the server gives a message it delivers: its place in the store, so that a receipt, a marker, a
    correction or a retraction naming it needs no lookup (``d:1:2:7`` is seq 7 of ``d:1:2``)."""
    return f"{conversation_id}:{seq}"


def parse_stanza_id(text: str) -> tuple[str, int] | None:
    conversation_id, sep, seq = text.rpartition(":")
    if not sep or not seq.isdigit() or len(seq) > 18:
        return None
    if direct_members(conversation_id) is None and not (conversation_id[:2] == "g:" and conversation_id[2:].isdigit()):
        return None
    return conversation_id, int(seq)


def client_msg_id(message: Element) -> str | None:
    """The ``client_msg_id`` of a sent message: its XEP-0359 origin-id, else its stanza id; one too long for Pica
    (over 64 characters) is hashed, so that a resend still maps to the same id. None when there is neither."""
    origin = message.child("origin-id", x.NS_SID)
    raw = origin.get("id") if origin is not None and origin.get("id") else message.get("id")
    if not raw:
        return None
    try:
        return check_client_msg_id(raw)
    except BadRequest:
        return "h-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def text_of(body: dict[str, Any]) -> str:
    """What an XMPP client shows of a Pica body it has no form for (files, voice, stickers...)."""
    text = body.get("text")
    if isinstance(text, str):
        return text
    for kind in ("file", "image", "voice", "video", "call"):
        if kind in body:
            return f"[{kind}]"
    return "[message]"


def message_out(msg: f.Msg, me: int, names: dict[int, str], domain: str) -> Element | None:
    """A 1:1 ``msg`` as a ``<message type="chat">`` (None for what has no XMPP form: another conversation kind, or
    my own message from another device, which only a carbons-enabled stream is sent)."""
    if not msg.conversation_id.startswith("d:"):
        return None
    sender = names.get(msg.sender)
    if sender is None:
        return None
    sid = stanza_id(msg.conversation_id, msg.seq)
    out = el("message", x.NS_CLIENT, "", id=sid, type_="chat", to=f"{names.get(me, '')}@{domain}")
    out.attrs["from"] = f"{sender}@{domain}/pica"
    body = msg.body
    edit, recall = body.get("edit"), body.get("recall")
    if isinstance(edit, dict):
        out.add(el("body", x.NS_CLIENT, "[recalled]" if edit.get("recalled") else str(edit.get("text", ""))))
        out.add(el("replace", x.NS_CORRECT, "", id=stanza_id(msg.conversation_id, int(edit.get("seq", 0)))))
    elif isinstance(recall, dict):
        out.add(el("body", x.NS_CLIENT, RETRACT_FALLBACK))
        out.add(el("retract", x.NS_RETRACT, "", id=stanza_id(msg.conversation_id, int(recall.get("seq", 0)))))
        out.add(el("store", "urn:xmpp:hints"))
    elif "recalled" in body or "deleted" in body or "system" in body:
        return None
    else:
        out.add(el("body", x.NS_CLIENT, text_of(body)))
        out.add(el("request", x.NS_RECEIPTS))
        out.add(el("markable", x.NS_MARKERS))
    out.add(el("origin-id", x.NS_SID, "", id=msg.client_msg_id))
    out.add(el("stanza-id", x.NS_SID, "", id=sid, by=f"{names.get(me, '')}@{domain}"))
    return out


def room_jid(group_id: int, domain: str) -> str:
    """A group's MUC room (XEP-0045): ``g<id>@conference.<domain>``."""
    return f"g{group_id}@conference.{domain}"


def room_of(jid: x.Jid, domain: str) -> int | None:
    """The group id of a room JID, else None."""
    if jid.domain != "conference." + domain or not jid.local.startswith("g") or not jid.local[1:].isdigit():
        return None
    return int(jid.local[1:])


def room_message(msg: f.Msg, group_id: int, sender: str, domain: str, to: str, message_id: str | None = None
                 ) -> Element | None:
    """A group message as a ``groupchat`` message from the sender's occupant JID (their username as nickname);
    ``message_id``: the sender's own id, in the reflection of their message back to them. None for a group notice
    (section 31.9)."""
    if "system" in msg.body or "recalled" in msg.body or "deleted" in msg.body:
        return None
    room = room_jid(group_id, domain)
    sid = stanza_id(msg.conversation_id, msg.seq)
    out = el("message", x.NS_CLIENT, "", id=message_id or sid, type_="groupchat", to=to)
    out.attrs["from"] = f"{room}/{sender}"
    body = msg.body
    edit, recall = body.get("edit"), body.get("recall")
    if isinstance(edit, dict):
        out.add(el("body", x.NS_CLIENT, str(edit.get("text", ""))))
        out.add(el("replace", x.NS_CORRECT, "", id=stanza_id(msg.conversation_id, int(edit.get("seq", 0)))))
    elif isinstance(recall, dict):
        out.add(el("body", x.NS_CLIENT, RETRACT_FALLBACK))
        out.add(el("retract", x.NS_RETRACT, "", id=stanza_id(msg.conversation_id, int(recall.get("seq", 0)))))
    else:
        out.add(el("body", x.NS_CLIENT, text_of(body)))
    out.add(el("origin-id", x.NS_SID, "", id=msg.client_msg_id))
    out.add(el("stanza-id", x.NS_SID, "", id=sid, by=room))
    return out


def occupant(group_id: int, domain: str, nick: str, role: str, to: str, codes: tuple[str, ...] = (),
             gone: bool = False) -> Element:
    """An occupant's presence in a room; ``codes``: XEP-0045 status codes (110: this is you, 210: the server
    chose your nickname)."""
    affiliation = {"owner": "owner", "admin": "admin"}.get(role, "member")
    item = el("item", x.NS_MUC_USER, "", affiliation=affiliation, role="none" if gone else
              ("moderator" if affiliation != "member" else "participant"))
    info = el("x", x.NS_MUC_USER, "", item, *(el("status", x.NS_MUC_USER, "", code=c) for c in codes))
    out = el("presence", x.NS_CLIENT, "", info, to=to, type_="unavailable" if gone else None)
    out.attrs["from"] = f"{room_jid(group_id, domain)}/{nick}"
    return out


def carbon(message: Element, me_bare: str) -> Element:
    """My own message from another device, wrapped as a sent carbon (XEP-0280)."""
    wrapper = el("message", x.NS_CLIENT, "", type_="chat", to=message.get("from"))
    wrapper.attrs["from"] = me_bare
    sent = wrapper.add(el("sent", x.NS_CARBONS))
    sent.add(el("forwarded", x.NS_FORWARD, "", message))
    return wrapper


def stamp(ts_ms: int) -> str:
    """XEP-0082's date-time, UTC, with milliseconds."""
    import datetime
    when = datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def archived(msg: f.Msg, names: dict[int, str], domain: str, me_full: str, query_id: str) -> Element | None:
    """One result of a MAM query (XEP-0313): the stored message, forwarded with its time, its archive id being
    its place in the timeline."""
    sender = names.get(msg.sender)
    members = direct_members(msg.conversation_id)
    if sender is None or members is None:
        return None
    peer = names.get(members[0] if members[1] == msg.sender else members[1])
    original = message_out(msg, msg.sender, names, domain)
    if original is None or peer is None:
        return None
    original.attrs["to"] = f"{peer}@{domain}"
    sid = stanza_id(msg.conversation_id, msg.seq)
    result = el("result", x.NS_MAM, "", id=sid, queryid=query_id or None)
    result.add(el("forwarded", x.NS_FORWARD, "", el("delay", x.NS_DELAY, "", stamp=stamp(msg.ts)), original))
    return el("message", x.NS_CLIENT, "", result, to=me_full)


def mam_fin(first: str | None, last: str | None, complete: bool) -> Element:
    rsm = el("set", x.NS_RSM)
    if first is not None and last is not None:
        rsm.add(el("first", x.NS_RSM, first))
        rsm.add(el("last", x.NS_RSM, last))
    return el("fin", x.NS_MAM, "", rsm, complete="true" if complete else "false")


def form_fields(form: Element | None) -> dict[str, str]:
    """A data form's (XEP-0004) fields: var → first value."""
    if form is None:
        return {}
    out = {}
    for field in form.children:
        value = field.child("value", x.NS_DATA)
        if field.name == "field" and field.get("var"):
            out[field.get("var")] = value.text if value is not None else ""
    return out


def receipts_out(receipt: f.Receipt, peer: str, domain: str, sent: list[tuple[int, str]]) -> list[Element]:
    """A peer's delivered/read cursor as XEP-0184 receipts for each of my tracked messages it covers and an XEP-0333
    ``displayed`` marker for the newest one read. ``sent``: my messages of the conversation, (seq, stanza id)."""
    out: list[Element] = []
    who = f"{peer}@{domain}/pica"
    delivered = max(receipt.delivered or 0, receipt.read or 0)
    for seq, sid in sent:
        if seq <= delivered:
            m = el("message", x.NS_CLIENT, "", el("received", x.NS_RECEIPTS, "", id=sid))
            m.attrs["from"] = who
            out.append(m)
    if receipt.read:
        covered = [sid for seq, sid in sent if seq <= receipt.read]
        if covered:
            m = el("message", x.NS_CLIENT, "", el("displayed", x.NS_MARKERS, "", id=covered[-1]), type_="chat")
            m.attrs["from"] = who
            out.append(m)
    return out


def typing_out(peer: str, domain: str) -> Element:
    m = el("message", x.NS_CLIENT, "", el("composing", x.NS_CHATSTATES), type_="chat")
    m.attrs["from"] = f"{peer}@{domain}/pica"
    return m


def presence_out(peer: str, domain: str, online: bool) -> Element:
    p = el("presence", x.NS_CLIENT, "", type_=None if online else "unavailable")
    p.attrs["from"] = f"{peer}@{domain}/pica" if online else f"{peer}@{domain}"
    return p


def subscription_of(state: str) -> tuple[str, str | None]:
    """A Pica contact state as an RFC 6121 roster item's (subscription, ask)."""
    return {"accepted": ("both", None), "outgoing": ("none", "subscribe")}.get(state, ("none", None))


def roster_item(peer: str, domain: str, state: str) -> Element:
    subscription, ask = subscription_of(state)
    item = el("item", x.NS_ROSTER, "", jid=f"{peer}@{domain}", name=peer, subscription=subscription)
    if ask:
        item.attrs["ask"] = ask
    if state != "none":
        item.add(el("group", x.NS_ROSTER, "Pica"))
    else:
        item.attrs["subscription"] = "remove"
    return item


def contact_out(peer: str, domain: str, state: str, me_full: str) -> list[Element]:
    """A change of my relation to ``peer`` (a ``contact`` frame): a roster push, and for an incoming request a
    presence subscription request, for an acceptance a ``subscribed``."""
    push = el("iq", x.NS_CLIENT, "", el("query", x.NS_ROSTER, "", roster_item(peer, domain, state)),
              type_="set", id=f"push-{peer}-{state}", to=me_full)
    out = [push]
    kind = {"incoming": "subscribe", "accepted": "subscribed", "none": "unsubscribed"}.get(state)
    if kind:
        p = el("presence", x.NS_CLIENT, "", type_=kind)
        p.attrs["from"] = f"{peer}@{domain}"
        out.append(p)
    return out


def disco_info(domain: str) -> Element:
    query = el("query", x.NS_DISCO_INFO, "", el("identity", x.NS_DISCO_INFO, "", category="server", type_="im",
                                                 name="Pica"))
    for feature in FEATURES:
        query.add(el("feature", x.NS_DISCO_INFO, "", var=feature))
    return query


def caps_hash() -> str:
    """XEP-0115's verification string of :func:`disco_info`, SHA-1, base64."""
    import base64
    text = "server/im//Pica<" + "".join(feature + "<" for feature in sorted(FEATURES))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def iq_result(iq: Element, *children: Element) -> Element:
    out = el("iq", x.NS_CLIENT, "", *children, type_="result", id=iq.get("id"))
    if iq.get("to"):
        out.attrs["from"] = iq.get("to")
    return out

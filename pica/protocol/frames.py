"""Every frame of the Pica client protocol, version 1.

One frame model serves every transport: WebSocket text frames carry it as JSON, WebSocket binary frames and the TCP
protocol as MessagePack. A frame is a map whose ``t`` field names its type. docs/protocol.md is the normative
description; the field constraints here are the machine-checked half of it and must agree with it.

Naming: a client request may carry ``id`` (an integer the client chooses); the server's reply to it carries the same
value as ``ref``. Optional fields that are absent/None are omitted on the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

PROTOCOL_VERSION: Final = 1

# Identifier shapes shared by frames and the HTTP API.
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ConversationId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RequestId = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
UserIdField = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
DeviceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
CallId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Frame(msgspec.Struct, tag_field="t", omit_defaults=True, forbid_unknown_fields=False):
    """Base of all frames. Unknown fields are ignored so that later minor versions can add fields."""


# --------------------------------------------------------------------------------------------------- client frames


class Auth(_Frame, tag="auth"):
    """First frame on a connection that was not authenticated in the WebSocket upgrade request."""

    token: Token
    v: int = PROTOCOL_VERSION
    device: DeviceName | None = None


class Send(_Frame, tag="send"):
    """Send a message to a user (``to``) or a group (``group_id``): exactly one of the two.
    ``client_msg_id`` is the idempotency key: unique per sending user, forever."""

    client_msg_id: ClientMsgId
    body: dict[str, Any]
    to: UserIdField | None = None
    group_id: UserIdField | None = None
    id: RequestId | None = None


class Read(_Frame, tag="read"):
    """Read receipt: the user has read ``conversation_id`` up to and including ``seq`` (cumulative)."""

    conversation_id: ConversationId
    seq: Seq
    id: RequestId | None = None


class Typing(_Frame, tag="typing"):
    """Client to server: "I am typing in this conversation". Server to client: ``user_id`` is typing.
    Ephemeral, rate-limited, never stored."""

    conversation_id: ConversationId
    user_id: int | None = None


class Recall(_Frame, tag="recall"):
    """Recall (unsend) one of my messages within the recall window; appends a recall event to the conversation."""

    conversation_id: ConversationId
    seq: Seq
    client_msg_id: ClientMsgId
    id: RequestId | None = None


class Edit(_Frame, tag="edit"):
    """Replace the text of one of my text messages; appends an edit event to the conversation."""

    conversation_id: ConversationId
    seq: Seq
    text: Annotated[str, msgspec.Meta(min_length=1)]
    client_msg_id: ClientMsgId
    id: RequestId | None = None


class Unpreview(_Frame, tag="unpreview"):
    """Remove the link preview of one of my messages (or refuse it before it comes); appends a preview event."""

    conversation_id: ConversationId
    seq: Seq
    client_msg_id: ClientMsgId
    id: RequestId | None = None


class Delete(_Frame, tag="delete"):
    """Delete a message for myself only: it reads as a tombstone on all my devices."""

    conversation_id: ConversationId
    seq: Seq
    id: RequestId | None = None


class Recv(_Frame, tag="recv"):
    """Delivery ack: this device holds every message of ``conversation_id`` up to and including ``seq``."""

    conversation_id: ConversationId
    seq: Seq


class Sync(_Frame, tag="sync"):
    """Ask for everything after the given per-conversation cursors (absent conversation: from the start)."""

    cursors: dict[ConversationId, Seq] = {}
    limit: Limit | None = None
    id: RequestId | None = None
    stream: bool = False
    """Send every page, one after the other as the client reads them, without a ``sync`` per page."""


class History(_Frame, tag="history"):
    """Page through one conversation: ``before`` pages backwards, ``after`` forwards, neither gives the latest."""

    conversation_id: ConversationId
    before: Seq | None = None
    after: Seq | None = None
    limit: Limit | None = None
    id: RequestId | None = None


class Ping(_Frame, tag="ping"):
    id: RequestId | None = None


class Answer(_Frame, tag="answer"):
    """Accept or decline my pending invitation to group ``group_id`` (answered with ``done``, or an ``error``)."""

    group_id: UserIdField
    accept: bool
    id: RequestId | None = None


class CallInvite(_Frame, tag="call_invite"):
    """Call user ``to``: ``sdp`` is the caller's WebRTC offer. Answered with ``call_placed`` (or an ``error``:
    ``busy``, ``forbidden``, ``user_not_found``, ``rate_limited``, ``bad_request``). Calls are section "Calls" of
    docs/protocol.md."""

    to: UserIdField
    sdp: Annotated[str, msgspec.Meta(min_length=1)]
    media: Literal["audio", "video"] = "audio"
    id: RequestId | None = None


class CallAccept(_Frame, tag="call_accept"):
    """The callee's device answers (``sdp``: the WebRTC answer); the first device to accept wins."""

    call_id: CallId
    sdp: Annotated[str, msgspec.Meta(min_length=1)]
    id: RequestId | None = None


class CallDecline(_Frame, tag="call_decline"):
    """The callee refuses a ringing call."""

    call_id: CallId
    id: RequestId | None = None


class CallCancel(_Frame, tag="call_cancel"):
    """The caller gives up before the call is answered."""

    call_id: CallId
    id: RequestId | None = None


class CallHangup(_Frame, tag="call_hangup"):
    """Either party ends an answered call."""

    call_id: CallId
    id: RequestId | None = None


class CallRinging(_Frame, tag="call_ringing"):
    """Client to server: this callee device is ringing. Server to client (the caller's device): the callee rings."""

    call_id: CallId
    id: RequestId | None = None


class CallCandidate(_Frame, tag="call_candidate"):
    """A trickled ICE candidate (RTCIceCandidate's fields), relayed to the other party's device in the call. An
    empty ``candidate`` is the end of candidates."""

    call_id: CallId
    candidate: str
    sdp_mid: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sdp_mline_index: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None
    id: RequestId | None = None


class Pong(_Frame, tag="pong"):
    ref: RequestId | None = None


# --------------------------------------------------------------------------------------------------- server frames


class Ready(_Frame, tag="ready"):
    """Authentication succeeded. Timings are in seconds; ``time`` is the server clock in ms since the epoch."""

    v: int
    user_id: int
    device: str
    session: str
    heartbeat: float
    idle_timeout: float
    max_frame: int
    time: int
    recall_window: float = 0.0
    """Seconds after sending during which a message may be recalled (0: not announced)."""
    page_size: int = 0
    """The server's ``history_page_size``: most items one page of sync, history, the conversation list or search
    holds, whatever ``limit`` asked for (0: not announced)."""


class Sent(_Frame, tag="sent"):
    """Server ack: the message is durably committed. ``duplicate`` is true when this ``client_msg_id`` had been
    stored before and this ack repeats the original one."""

    client_msg_id: str
    conversation_id: str
    seq: int
    ts: int
    ref: RequestId | None = None
    duplicate: bool = False


class Msg(_Frame, tag="msg"):
    """A message of a conversation: pushed live, or an element of ``synced`` and ``page``."""

    conversation_id: str
    seq: int
    sender: int
    client_msg_id: str
    ts: int
    body: dict[str, Any]


class Synced(_Frame, tag="synced"):
    """One page of a sync: messages ordered by (conversation_id, seq); ``more`` asks the client to sync again."""

    msgs: list[Msg]
    more: bool
    ref: RequestId | None = None


class Page(_Frame, tag="page"):
    """One page of history, ascending by seq; ``more`` says older (or newer, for ``after``) messages exist."""

    conversation_id: str
    msgs: list[Msg]
    more: bool
    ref: RequestId | None = None


class Receipt(_Frame, tag="receipt"):
    """``user_id`` has received (``delivered``) or read (``read``) ``conversation_id`` up to that seq. Sent to the
    other member of a 1:1 conversation and to the user's own other devices; group cursors are read over HTTP. A
    receipt of a ``read`` carries both cursors (reading moves the delivered cursor too), one of a ``recv`` only
    ``delivered``."""

    conversation_id: str
    user_id: int
    delivered: int | None = None
    read: int | None = None


class Done(_Frame, tag="done"):
    """A request without a reply of its own (``read``, ``delete``) succeeded."""

    ref: RequestId | None = None


class Presence(_Frame, tag="presence"):
    """A contact or 1:1 peer came online or went offline. ``last_seen``: ms since the epoch (0 = never)."""

    user_id: int
    online: bool
    last_seen: int


class Contact(_Frame, tag="contact"):
    """My relation to ``user_id`` changed: ``incoming`` / ``outgoing`` request, ``accepted``, or ``none``."""

    user_id: int
    state: str


class Error(_Frame, tag="error"):
    """A request failed (``ref`` names it) or the connection is about to close (no ``ref``)."""

    code: str
    message: str
    ref: RequestId | None = None
    retryable: bool = False
    retry_after: float | None = None
    """With ``rate_limited``: seconds after which the same request will be accepted."""


class Invitation(_Frame, tag="invitation"):
    """An invitation of mine to a group: ``pending`` (someone wants to add me and my ``group_add`` setting asks for
    my consent), or ``accepted`` / ``declined`` by one of my devices."""

    group_id: int
    name: str
    inviter_id: int
    state: str


class Resync(_Frame, tag="resync"):
    """Live frames may have been missed (the cluster bus was interrupted): sync every conversation now. Nothing
    acked is lost; it is only not pushed."""

    reason: str = ""


class CallPlaced(_Frame, tag="call_placed"):
    """The reply to ``call_invite``: the call exists and the callee's devices are being rung (``timeout``: seconds
    they ring before the call ends as missed)."""

    call_id: str
    timeout: float
    ref: RequestId | None = None


class CallIncoming(_Frame, tag="call_incoming"):
    """To every device of the callee: ``caller`` calls (``sdp``: the offer). Answer with ``call_accept``, refuse
    with ``call_decline``, or say ``call_ringing``."""

    call_id: str
    caller: int
    media: str
    sdp: str
    timeout: float


class CallAccepted(_Frame, tag="call_accepted"):
    """To the caller's device: the callee answered (``sdp``: the answer)."""

    call_id: str
    sdp: str


class CallEnded(_Frame, tag="call_ended"):
    """The call is over for this device: ``reason`` is one of ``declined``, ``cancelled``, ``timeout``, ``hung_up``,
    ``answered_elsewhere``, ``declined_elsewhere``, ``disconnected``, ``shutdown``."""

    call_id: str
    reason: str


class ConversationState(_Frame, tag="conversation"):
    """My own state of a conversation changed, on one of my devices (protocol section 29.4): all of it. Absent
    fields have their defaults (no draft, not pinned to the top, not archived, not marked unread, not muted)."""

    conversation_id: str
    draft: str = ""
    draft_ts: int = 0
    pinned_at: int = 0
    archived: bool = False
    marked_unread: bool = False
    muted_until: int | None = None
    level: str = "all"


class Close(_Frame, tag="close"):
    """Last frame before the server closes a TCP connection; on WebSocket the close frame carries the same code."""

    code: int
    reason: str


# ---------------------------------------------------------------- reactions and threads (docs/protocol.md section 28)


class React(_Frame, tag="react"):
    """Add (or, ``remove``, take back) an emoji reaction to a message; appends a reaction event."""

    conversation_id: ConversationId
    seq: Seq
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    client_msg_id: ClientMsgId
    remove: bool = False
    id: RequestId | None = None


class Thread(_Frame, tag="thread"):
    """Page through the thread under group message ``root``, oldest first, after ``after``."""

    conversation_id: ConversationId
    root: Seq
    after: Seq = 0
    limit: Limit | None = None
    id: RequestId | None = None


class ThreadPage(_Frame, tag="thread_page"):
    """One page of a thread (answer to ``thread``)."""

    conversation_id: str
    root: int
    msgs: list[Msg]
    more: bool
    ref: int | None = None


CallControlFrame = CallAccept | CallDecline | CallCancel | CallHangup | CallRinging | CallCandidate
CallClientFrame = CallInvite | CallControlFrame
ClientFrame = (
    Auth | Send | Recv | Read | Typing | Recall | Edit | Delete | Sync | History | Answer | Ping | Pong
    | CallClientFrame | React | Thread | Unpreview
)
ServerFrame = (
    Ready | Sent | Msg | Synced | Page | Receipt | Done | Presence | Contact | Invitation | Typing | Error | Resync
    | Close | Ping | Pong | CallPlaced | CallIncoming | CallRinging | CallAccepted | CallCandidate | CallEnded
    | ConversationState
    | ThreadPage
)

CLIENT_FRAME_TYPES: Final = frozenset(
    {"auth", "send", "recv", "read", "typing", "recall", "edit", "delete", "sync", "history", "answer", "ping",
     "pong", "call_invite", "call_accept", "call_decline", "call_cancel", "call_hangup", "call_ringing",
     "call_candidate", "react", "thread", "unpreview"}
)
SERVER_FRAME_TYPES: Final = frozenset(
    {"ready", "sent", "msg", "synced", "page", "receipt", "done", "presence", "contact", "invitation", "typing",
     "error", "resync", "close", "ping", "pong", "call_placed", "call_incoming", "call_ringing", "call_accepted",
     "call_candidate", "call_ended", "conversation", "thread_page"}
)

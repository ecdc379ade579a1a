"""The store interface: everything Pica keeps durably.

Backends: :mod:`pica.store.sqlite` (embedded default). A PostgreSQL backend implements the same class; one contract
test suite (tests/store) runs against every backend. All methods are coroutines that never block the event loop.
Backends wrap their driver's errors: callers see :class:`~pica.errors.StoreUnavailable` for a store that cannot
answer (retryable) and the domain errors of :mod:`pica.errors` for requests that can never succeed.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pica.errors import PicaError
from pica.protocol.frames import Msg


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    username: str
    password_hash: str
    created_at: int
    banned: bool = False
    """Set by an administrator: no login, tokens refused (a default, so records built without it stay valid)."""
    deleted: bool = False
    """The account was deleted: a tombstone whose id still resolves, with no username, password or settings."""


PRIVACY_LEVELS: Final = ("everyone", "contacts", "nobody")
"""The values of the ``group_add`` and ``presence`` settings."""


@dataclass(frozen=True, slots=True)
class UserSettings:
    only_contacts: bool = False
    group_add: str = "everyone"
    """Who may add the user to a group; the others' adds become invitations (group_rules.add_outcome)."""
    presence: str = "everyone"
    """Who sees the user's online state and last seen, among those related to them (pica/core/privacy.py)."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A signed-in session (one login: a device or a browser), as its user lists it. Times in ms."""

    session_id: str
    user_id: int
    created_at: int
    last_used_at: int
    """The login or the last refresh of its access token."""
    expires_at: int
    """When its refresh token stops working unless used before (each refresh moves it on)."""
    address: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class SessionState:
    """What accepting an access token needs to know of its session."""

    user_id: int
    expires_at: int
    revoked: bool
    banned: bool


RefreshOutcome = Literal["rotated", "reused", "revoked", "banned", "expired", "unknown"]


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The answer to a refresh (see :func:`pica.store.sessions.refresh_decision`). ``rotated``: ``generation`` is
    the new refresh token's; ``reused``: an old refresh token came back, and the session was revoked."""

    outcome: RefreshOutcome
    user_id: int = 0
    generation: int = 0
    expires_at: int = 0


@dataclass(frozen=True, slots=True)
class ScramKeyRecord:
    """A user's SCRAM credentials for one mechanism (RFC 5802; base64 fields), and the SHA-256 of the password hash
    they were derived under (pica/core/scram.py)."""

    user_id: int
    mechanism: str
    salt: str
    iterations: int
    stored_key: str
    server_key: str
    password_tag: str


@dataclass(frozen=True, slots=True)
class RevokedSession:
    session_id: str
    user_id: int
    revoked_at: int
    reason: str = ""
    """Why it ended: ``logout``, ``revoked_by_user``, ``revoked_by_admin``, ``password_changed``, ``refresh_reuse``,
    ``too_many_sessions``, ``account_deleted``."""


@dataclass(slots=True)
class MessageRecord:
    """A stored message as a reader sees it. Not frozen, though nobody changes one: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` and costs ten times as much (about 1.7 µs of the
    3 µs a synced message cost, a million of them in a long catch-up). Treat it as immutable."""

    conversation_id: str
    seq: int
    sender: int
    client_msg_id: str
    ts: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of an append. ``duplicate``: the (sender, client_msg_id) pair was stored before, and the fields are
    those of the original message; nothing new was written."""

    conversation_id: str
    seq: int
    ts: int
    duplicate: bool
    members_version: int = 0
    """Groups: the membership version the message was committed under (fan-out caches compare it)."""


@dataclass(frozen=True, slots=True)
class DirectAppend:
    """A 1:1 message. The store creates the conversation and both memberships on its first message."""

    conversation_id: str
    sender: int
    recipient: int
    client_msg_id: str
    body_json: bytes
    """The body, already validated and JSON-encoded."""
    ts: int
    search_text: str = ""
    """What full-text search indexes: the body's document (:func:`pica.protocol.tokens.document`), its tokens;
    empty: not searchable."""
    file_ids: tuple[str, ...] = ()
    """Uploaded files the body references (checked to be the sender's): stored as references with the message."""


@dataclass(frozen=True, slots=True)
class GroupAppend:
    """A group message; the sender must be a member allowed to speak (not muted, group not muted or dissolved)."""

    conversation_id: str
    sender: int
    client_msg_id: str
    body_json: bytes
    ts: int
    search_text: str = ""
    file_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One line of a user's conversation list. ``unread`` = last_seq - read_seq (sending marks read)."""

    conversation_id: str
    kind: str
    last_seq: int
    last_ts: int
    delivered_seq: int
    read_seq: int
    name: str = ""
    peer_id: int = 0
    peer_delivered_seq: int = 0
    peer_read_seq: int = 0
    group_id: int = 0
    last_message: MessageRecord | None = None
    unread_mentions: int = 0
    """Messages after the read cursor that mention the user (or @all); filled by the chat service."""

    @property
    def unread(self) -> int:
        return max(0, self.last_seq - self.read_seq)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: int
    conversation_id: str
    name: str
    owner_id: int
    muted_all: bool
    dissolved: bool
    created_at: int
    member_count: int = 0
    members_version: int = 0


@dataclass(frozen=True, slots=True)
class ReadCursors:
    """A member's two cursors right after a ``read`` moved them (the read cursor carries the delivered one)."""

    delivered: int
    read: int


@dataclass(frozen=True, slots=True)
class MemberRecord:
    user_id: int
    role: str
    muted: bool
    joined_seq: int
    delivered_seq: int
    read_seq: int
    username: str = ""


@dataclass(frozen=True, slots=True)
class GroupAction:
    """A change to a group, checked against the actor's role inside the transaction (docs/protocol.md, "Groups").
    ``kind``: add, remove, leave, role, transfer, rename, mute, mute_all, dissolve."""

    kind: str
    actor: int
    group_id: int
    ts: int
    user_ids: tuple[int, ...] = ()
    role: str = ""
    name: str = ""
    flag: bool = False
    max_members: int = 0


@dataclass(frozen=True, slots=True)
class GroupChange:
    """What a committed GroupAction did: the system notice it appended, and who joined or left the timeline.
    ``notice`` None: an add that only invited (``invited``: users whose consent is needed), so nothing changed in
    the timeline."""

    group: GroupRecord
    notice: MessageRecord | None
    added: tuple[int, ...]
    removed: tuple[int, ...]
    invited: tuple[int, ...] = ()
    """Users the add or creation invited rather than added, as the actor is told. Includes those who blocked the
    actor, for whom no invitation was stored: the actor cannot tell them apart (a block is not disclosed)."""
    invitations: tuple[int, ...] = ()
    """The invitations actually stored (``invited`` without those who blocked the actor): who is told of one."""
    told: tuple[tuple[int, MessageRecord], ...] = ()
    """A removal: (removed user, the ``removed_from_group`` notice appended to their own timeline ``u:<id>``)."""


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """A pending invitation to a group, as the invitee lists it."""

    group_id: int
    name: str
    inviter_id: int
    created_at: int


@dataclass(frozen=True, slots=True)
class EventAppend:
    """A recall, edit, link preview (``preview``) or preview removal (``unpreview``) of message ``target_seq`` by (or,
    for ``preview``, on behalf of) its author."""

    kind: str
    conversation_id: str
    user_id: int
    target_seq: int
    client_msg_id: str
    ts: int
    text: str = ""
    window_ms: int = 0
    preview: dict[str, Any] | None = None
    """``preview`` (a link preview attached by the server for the author): the preview's fields."""
    moderated: bool = False
    """A recall by an administrator (``DELETE /v1/admin/messages/...``): ``user_id`` is the author, whose message it
    stays; membership, authorship and the recall window are not asked, and the event says ``"moderated": true``."""


@dataclass(frozen=True, slots=True)
class ContactRecord:
    user_id: int
    username: str
    state: str
    updated_at: int


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """A user related to the viewer (contact or 1:1 peer) who has not blocked them, with what the presence rule
    (pica/core/privacy.py) needs: their ``presence`` setting and whether the two are accepted contacts."""

    user_id: int
    last_seen: int
    presence: str = "everyone"
    contact: bool = False


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int
    contact: bool
    """An accepted contact (rather than only a 1:1 peer)."""


@dataclass(frozen=True, slots=True)
class PresenceAudience:
    """Who is related to a user and not blocked by them (``viewers``), and the user's ``presence`` setting: the
    facts from which the presence rule picks who is told."""

    presence: str
    viewers: tuple[Viewer, ...]


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[MessageRecord]
    more: bool


@dataclass(frozen=True, slots=True)
class SyncPage:
    """A page of a sync, its messages already the wire's ``msg`` frames: a long catch-up reads a million of them,
    and a record per message, then a frame made from it, was a third of a synced message's CPU (BENCHMARKS.md,
    catch-up). Ordered by (conversation_id, seq); hidden messages read as tombstones."""

    messages: list[Msg]
    more: bool


# ---------------------------------------------------------------------------------------------------------- jobs
# Side work written in the same transaction as the message it follows (the transactional outbox; pica/store/jobs.py,
# pica/jobs). The records cross the SQLite writer's socket like every record of this module.


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook endpoint and the event types it wants: exact names (``message.created``) or a family
    (``group.*``; ``*`` is everything)."""

    endpoint_id: str
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobRules:
    """What the store's write transactions turn into job rows (:mod:`pica.store.job_rules`). None or no
    subscriptions: no job is written and the hot path costs one branch."""

    subscriptions: tuple[Subscription, ...] = ()
    stream: tuple[str, ...] = ()
    """Event patterns published to the event stream (``[event_stream]``), in commit order per conversation."""
    bots: frozenset[int] = frozenset()
    """Bots with a webhook: each gets ``message.created`` for the messages of its conversations (pica/store/bots.py)."""
    push_delay_ms: int | None = None
    """Push on (``[push]`` has a platform): every stored message also queues one ``push`` job, due this many ms
    after its commit. None: off."""

    previews: bool = False
    """Link previews on (``previews.enabled``): a stored message whose text has a link also queues a ``preview``
    job."""

    @property
    def events(self) -> bool:
        """Whether any job is made of events (webhooks, the stream, bots, push); previews alone are not."""
        return bool(self.subscriptions or self.stream or self.bots) or self.push_delay_ms is not None

    @property
    def empty(self) -> bool:
        return not self.events and not self.previews


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job of the durable queue. ``key`` is its idempotency key (a webhook's ``webhook-id``); ``attempts`` counts
    claims, and is the fencing token a worker finishes the job with (a worker whose lease ran out and whose job was
    claimed again cannot finish it any more). ``state``: queued, running (``run_at`` is then the lease's end) or
    dead."""

    job_id: int
    key: str
    kind: str
    target: str
    payload: bytes
    state: str
    attempts: int
    run_at: int
    created_at: int
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a claimed job ended: ``done`` (deleted), else queued again at ``run_at`` or, with ``dead``, kept for an
    operator (``pica jobs list|retry|drop``)."""

    job_id: int
    attempts: int
    done: bool
    run_at: int = 0
    dead: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An uploaded file (docs/protocol.md, "Files"): its bytes are the blob ``sha256``."""

    file_id: str
    owner: int
    sha256: str
    size: int
    content_type: str
    """What the server found the bytes to be (sniffed), never what the client said."""
    name: str
    created_at: int
    meta: dict[str, Any] = field(default_factory=dict)
    """What the server learned of the content: ``width``, ``height``, ``placeholder``, ``thumbnails`` (sizes made)."""


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A resumable upload not finished yet (the tus protocol); its bytes so far are in the node's upload directory."""

    upload_id: str
    owner: int
    length: int
    received: int
    """Bytes received and synced: where the next PATCH must start."""
    name: str
    created_at: int
    touched_at: int


@dataclass(frozen=True, slots=True)
class FileSweep:
    """What one housekeeping pass removed from the store: the files' rows, and the blobs no row uses any more (whose
    bytes the caller deletes), and the abandoned uploads (whose partial bytes the caller deletes)."""

    files: int
    blobs: list[str]
    uploads: list[str]


@dataclass(frozen=True, slots=True)
class JobStats:
    queued: int
    running: int
    dead: int
    oldest_queued_at: int | None
    """created_at (ms) of the oldest queued job."""


# ---------------------------------------------------------------------------------------------------------- push
# Push targets and notification settings (pica/store/devices.py); the job that pushes a message reads them (pica/push).

PUSH_PLATFORMS: Final = ("apns", "fcm", "webpush")
NOTIFICATION_LEVELS: Final = ("all", "mentions", "none")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A push target of one session. ``token``: the APNs device token, the FCM registration token, or the Web Push
    subscription's endpoint URL (whose ``p256dh`` and ``auth`` keys are then set, base64url)."""

    device_id: str
    user_id: int
    session_id: str
    platform: str
    token: str
    p256dh: str = ""
    auth: str = ""
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class NotificationSetting:
    conversation_id: str
    level: str = "all"
    mute_until: int | None = None
    """ms since the epoch; None: not muted."""


@dataclass(frozen=True, slots=True)
class PinRecord:
    """A pinned message of a conversation, as the reader sees it (docs/protocol.md section 29.2)."""

    message: MessageRecord
    pinned_by: int
    ts: int


@dataclass(frozen=True, slots=True)
class PinChange:
    """What a pin or unpin did: ``notice`` the timeline's pin notice (None: nothing changed, it was pinned, or not
    pinned, already); ``members_version`` the group's membership version (0 for a 1:1), for its delivery."""

    notice: MessageRecord | None
    members_version: int = 0


@dataclass(frozen=True, slots=True)
class PrefsChange:
    """A change of a user's own state of a conversation; None leaves a field as it is."""

    draft: str | None = None
    pinned: bool | None = None
    archived: bool | None = None
    marked_unread: bool | None = None


@dataclass(frozen=True, slots=True)
class ConversationPrefs:
    """A user's own state of a conversation (docs/protocol.md section 29.3-29.4); the defaults when they never set
    any. ``mute_until`` and ``level`` are the notification setting's (section 23.7)."""

    conversation_id: str
    draft: str = ""
    draft_ts: int = 0
    pinned_at: int = 0
    """0: not pinned to the top of the list; else when it was."""
    archived: bool = False
    marked_unread: bool = False
    mute_until: int | None = None
    level: str = "all"


@dataclass(frozen=True, slots=True)
class PushMessage:
    """A message as its push job sees it: the message (None when it is gone), its sender's name, its group's name."""

    message: MessageRecord
    state: str
    """``normal``, ``recalled``, ..."""
    sender_name: str
    group_name: str
    thread_participants: frozenset[int] = frozenset()
    """For a thread message: who takes part in its thread (docs/protocol.md section 28)."""


@dataclass(frozen=True, slots=True)
class PushCandidate:
    """A member of the message's conversation with at least one device: the facts of the push rule."""

    user_id: int
    joined_seq: int
    delivered_seq: int
    level: str
    mute_until: int | None
    privacy: bool


@dataclass(frozen=True, slots=True)
class PushAudience:
    devices: list[DeviceRecord]
    """Of sessions still live."""
    badges: dict[int, int]
    """Per user: unread messages over all their conversations."""
    ended: list[str]
    """Devices of ended sessions, to delete."""


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """An endpoint registered through the admin command (those of the TOML file live in the configuration)."""

    endpoint_id: str
    url: str
    secret: str
    events: tuple[str, ...]
    created_at: int
    disabled: bool = False


# ---------------------------------------------------------------------------------------------------------- bots
# Bot accounts (pica/store/bots.py, pica/core/bots.py): a user signing in with an API key, of which the store keeps the
# SHA-256 and the session it opens.


@dataclass(frozen=True, slots=True)
class BotRecord:
    user_id: int
    username: str
    webhook_url: str
    created_at: int
    key_created_at: int


@dataclass(frozen=True, slots=True)
class BotKeyState:
    """What a bot key's hash finds: the bot, its key's session, and whether that session still works."""

    user_id: int
    session_id: str
    expires_at: int
    revoked: bool
    banned: bool


def bot_endpoint_id(user_id: int) -> str:
    """The webhook endpoint a bot's deliveries go to (a job's target; with the event, its ``webhook-id``)."""
    return f"bot_{user_id}"


@dataclass(frozen=True, slots=True)
class BotWebhook:
    """Where a bot with a webhook receives its messages (an endpoint of the operator's: ``pica bot create``)."""

    user_id: int
    url: str
    secret: str
# ---------------------------------------------------------------------------------------------------- administration


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An administrative action, written in the transaction of the change it records (pica/store/admin.py)."""

    actor_id: int
    """The administrator's user id; 0 for the ``pica`` command line."""
    actor: str
    """The administrator's username, or ``cli``."""
    action: str
    target: str
    """``user:<id>``, ``group:<id>``, ``message:<conversation_id>:<seq>``, ``report:<id>``."""
    details: dict[str, Any]
    address: str
    ts: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    audit_id: int
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class AdminUser:
    """A user as the admin listing shows it."""

    user: UserRecord
    admin: bool


@dataclass(frozen=True, slots=True)
class ReportRecord:
    report_id: int
    reporter: int
    conversation_id: str
    seq: int
    sender: int
    body: dict[str, Any]
    """The message as the reporter saw it when reporting."""
    reason: str
    state: str
    """``open`` or ``resolved``."""
    action: str
    """How it was resolved (``dismiss``, ``remove_message``, ``ban_sender``); empty while open."""
    resolved_by: int
    resolved_at: int
    created_at: int


@dataclass(frozen=True, slots=True)
class AdminStats:
    users: int
    banned_users: int
    deleted_users: int
    admins: int
    groups: int
    dissolved_groups: int
    conversations: int
    messages: int
    """Entries of every timeline, notices and events included (the sum of the conversations' last seqs)."""
    open_reports: int
    live_sessions: int
CommitObserver = Callable[[int, float, float], None]
"""Told, on the event loop, of each transaction of the store's writer (SQLite's writer, PostgreSQL's write lanes),
before its operations are answered: how many operations it held, its seconds from BEGIN to the end of COMMIT, and
the COMMIT's seconds alone (where SQLite's fsync or PostgreSQL's WAL flush is waited for)."""


# ------------------------------------------------------------------------- reactions, replies, threads, mentions


@dataclass(frozen=True, slots=True)
class LinkedAppend:
    """A message that names another message or people (docs/protocol.md section 28): a reply (``reply_seq``), a
    thread message (``thread_root``), mentions. Appended like ``message``, in one transaction that also writes the
    quote's truth into the body and records the links; ``body`` is the validated body, ``message.body_json`` unused.
    """

    message: DirectAppend | GroupAppend
    body: dict[str, Any]
    reply_seq: int = 0
    thread_root: int = 0
    mentions: tuple[int, ...] = ()
    mention_all: bool = False
    quote_chars: int = 100
    mention_all_members: int = 20
    """Above this many members only the owner and admins may mention @all."""


@dataclass(frozen=True, slots=True)
class ReactionAppend:
    """``user_id`` adds (or, ``remove``, takes back) ``emoji`` on message ``target_seq``."""

    conversation_id: str
    user_id: int
    target_seq: int
    emoji: str
    remove: bool
    client_msg_id: str
    ts: int
    per_message: int = 20
    """Distinct emoji a message may carry."""
    per_user: int = 3
    """Emoji one user may have on one message."""


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A thread the user takes part in: its size, its newest message and the user's unread messages in it."""

    root_seq: int
    count: int
    last_seq: int
    read_seq: int
    unread: int


class Store(abc.ABC):
    @abc.abstractmethod
    def observe_commits(self, observer: CommitObserver | None) -> None:
        """Report the writer's transactions to ``observer`` from now on (None: stop)."""

    @abc.abstractmethod
    def write_backlog(self) -> int:
        """Write operations submitted and not yet answered (for /metrics)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish every write already submitted, then release resources."""

    # accounts
    @abc.abstractmethod
    async def create_user(self, username: str, password_hash: str, now_ms: int) -> int:
        """Raises UsernameTaken."""

    @abc.abstractmethod
    async def create_users(self, usernames: Sequence[str], password_hash: str, now_ms: int) -> list[int | None]:
        """Many accounts sharing one password hash, in one transaction (a bulk import, a benchmark's seed): each
        one's id in order, None for a name already taken (the others are created all the same)."""

    @abc.abstractmethod
    async def create_invite(self, code_hash: str, uses: int, expires_at: int, now_ms: int) -> None:
        """An invite code (its SHA-256) good for ``uses`` registrations until ``expires_at`` (ms)."""

    @abc.abstractmethod
    async def register_with_invite(self, code_hash: str, username: str, password_hash: str, now_ms: int) -> int:
        """Spend one use of the invite and create the account, or neither. Raises Forbidden (unknown, used up or
        expired invite) or UsernameTaken."""

    @abc.abstractmethod
    async def get_user_by_name(self, username: str) -> UserRecord | None: ...

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> UserRecord | None: ...

    # sessions (pica/store/sessions.py)
    @abc.abstractmethod
    async def create_session(self, session: SessionRecord, max_live: int, forget_before: int) -> None:
        """Store a new session (generation 0). Beyond ``max_live`` live sessions the user's least recently used are
        revoked; the user's rows revoked or expired before ``forget_before`` are deleted."""

    @abc.abstractmethod
    async def create_sessions(self, sessions: Sequence[SessionRecord], max_live: int, forget_before: int) -> None:
        """:meth:`create_session` for many sessions in one transaction."""

    @abc.abstractmethod
    async def session_state(self, session_id: str) -> SessionState | None: ...

    @abc.abstractmethod
    async def session_states(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The state of each of ``session_ids`` that exists (one read for all)."""

    @abc.abstractmethod
    async def refresh_session(self, session_id: str, generation: int, now_ms: int, ttl_ms: int,
                              grace_ms: int) -> Refreshed:
        """Rotate the session's refresh token if ``generation`` is its current one (or the one before, within
        ``grace_ms`` of the rotation: a client that lost the answer); revoke the session if an older one came
        back."""

    @abc.abstractmethod
    async def list_sessions(self, user_id: int, now_ms: int) -> list[SessionRecord]:
        """The user's live sessions, most recently used first."""

    @abc.abstractmethod
    async def revoke_session(self, user_id: int, session_id: str, now_ms: int, reason: str) -> bool:
        """Whether a live session of this user was revoked."""

    @abc.abstractmethod
    async def revoke_user_sessions(self, user_id: int, now_ms: int, reason: str, *, keep: str | None = None) -> int:
        """Revoke every live session of the user but ``keep``; how many were revoked."""

    @abc.abstractmethod
    async def set_password(self, user_id: int, password_hash: str, now_ms: int, *, keep: str | None = None) -> int:
        """Replace the password and revoke every live session but ``keep``, in one transaction; how many were
        revoked. Raises UserNotFound."""

    @abc.abstractmethod
    async def scram_key(self, user_id: int, mechanism: str) -> ScramKeyRecord | None:
        """The user's SCRAM credentials for ``mechanism`` (``SCRAM-SHA-1``, ``SCRAM-SHA-256``), if derived."""

    @abc.abstractmethod
    async def set_scram_keys(self, keys: Sequence[ScramKeyRecord]) -> None:
        """Store (or replace) SCRAM credentials."""

    @abc.abstractmethod
    async def revoked_sessions(self, since_ms: int) -> list[RevokedSession]:
        """Sessions revoked at or after ``since_ms`` (every node polls this to close their sockets)."""

    @abc.abstractmethod
    async def forget_sessions(self, before_ms: int) -> int:
        """Delete the rows of sessions revoked or expired before ``before_ms``; how many."""

    # administration (the ``pica user`` / ``pica group`` commands)
    @abc.abstractmethod
    async def list_users(self, limit: int, after_id: int = 0, *, banned_only: bool = False) -> list[UserRecord]:
        """Users with user_id > after_id, ascending, at most ``limit`` (keyset paging)."""

    @abc.abstractmethod
    async def set_banned(self, user_id: int, banned: bool) -> None:
        """Raises UserNotFound."""

    @abc.abstractmethod
    async def list_all_groups(self, limit: int, after_id: int = 0) -> list[GroupRecord]:
        """Every group (dissolved ones included) with group_id > after_id, ascending, at most ``limit``."""

    # the admin role, the audit log and reports (pica/store/admin.py): every write takes the AuditEntry it records
    @abc.abstractmethod
    async def is_admin(self, user_id: int) -> bool: ...

    @abc.abstractmethod
    async def admin_users(self, limit: int, after_id: int, query: str, banned: bool | None) -> list[AdminUser]:
        """Live users with user_id > after_id whose name contains ``query`` (case-insensitive), ascending."""

    @abc.abstractmethod
    async def admin_create_user(self, username: str, password_hash: str, grant_admin: bool,
                                audit: AuditEntry) -> int:
        """Raises UsernameTaken. The audit row's target becomes ``user:<new id>``."""

    @abc.abstractmethod
    async def admin_create_group(self, owner: int, name: str, members: list[int], max_members: int,
                                 audit: AuditEntry) -> GroupChange:
        """``create_group`` with its audit row (whose target becomes ``group:<new id>``)."""

    @abc.abstractmethod
    async def admin_set_flag(self, user_id: int, flag: Literal["banned", "admin"], value: bool,
                             audit: AuditEntry) -> None:
        """Ban or unban, grant or revoke the admin role. Raises UserNotFound."""

    @abc.abstractmethod
    async def admin_set_password(self, user_id: int, password_hash: str, audit: AuditEntry) -> int:
        """A new password; every session ended; how many ended."""

    @abc.abstractmethod
    async def admin_end_sessions(self, user_id: int, session_id: str | None, audit: AuditEntry) -> int:
        """End one session (``session_id``) or all of the user's; how many ended."""

    @abc.abstractmethod
    async def admin_delete_user(self, user_id: int, audit: AuditEntry) -> list[GroupChange]:
        """``delete_account`` with its audit row."""

    @abc.abstractmethod
    async def admin_group_action(self, action: GroupAction, audit: AuditEntry) -> GroupChange:
        """``group_action`` with its audit row (the administrator acts as the group's owner)."""

    @abc.abstractmethod
    async def admin_group(self, group_id: int) -> tuple[GroupRecord, list[MemberRecord]]:
        """Any group with its members; raises GroupNotFound."""

    @abc.abstractmethod
    async def moderate_message(self, request: EventAppend, audit: AuditEntry
                               ) -> tuple[AppendResult, MessageRecord]:
        """Remove a message for everyone: a moderated recall (``request.moderated``) with its audit row."""

    @abc.abstractmethod
    async def message_author(self, conversation_id: str, seq: int) -> int | None:
        """The sender of a stored message, None when there is none."""

    @abc.abstractmethod
    async def create_report(self, reporter: int, message: MessageRecord, reason: str, ts: int) -> ReportRecord:
        """A report of a message the reporter can see; a repeat by the same reporter answers the first."""

    @abc.abstractmethod
    async def list_reports(self, state: str | None, limit: int, after_id: int) -> list[ReportRecord]: ...

    @abc.abstractmethod
    async def resolve_report(self, report_id: int, action: str, audit: AuditEntry) -> ReportRecord:
        """Raises NotFound; a resolved report is refused (Conflict)."""

    @abc.abstractmethod
    async def list_audit(self, limit: int, before_id: int | None) -> list[AuditRecord]:
        """The newest first: entries with audit_id < before_id (None: from the newest)."""

    @abc.abstractmethod
    async def admin_stats(self, now_ms: int) -> AdminStats: ...

    # messages
    @abc.abstractmethod
    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        """Assign the conversation's next seq and commit durably; the future resolves after the commit. Fails with
        UserNotFound when the recipient does not exist. A repeated (sender, client_msg_id) resolves to the original
        result, duplicate=True.

        A future rather than a coroutine: the hot path chains callbacks on it instead of running a task per message,
        and appends submitted in one order resolve in that order (per conversation, seq order)."""

    @abc.abstractmethod
    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int
    ) -> Page:
        """Messages of a conversation the user is a member of, ascending by seq. With ``before`` (or neither) the
        newest ``limit`` messages below it; with only ``after`` the oldest ``limit`` above it. ``more`` says the
        page was cut. Raises ConversationNotFound when the user is not a member (or it does not exist)."""

    @abc.abstractmethod
    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int) -> SyncPage:
        """Messages after the cursors in every conversation of the user, ordered by (conversation_id, seq), at most
        ``limit``; conversations absent from ``cursors`` start from the beginning of the user's membership."""

    @abc.abstractmethod
    async def sync_plan(self, user_id: int, cursors: Mapping[str, int]) -> list[tuple[str, int, int]]:
        """A streamed sync's start: the user's conversations that have messages after the cursors (as for
        :meth:`sync`), ordered by id, each as (id, the seq its messages start after, its last seq now). The stream
        reads no further than that last seq: what the user could see when it began."""

    @abc.abstractmethod
    async def sync_after(self, user_id: int, pending: Sequence[tuple[str, int, int]], limit: int) -> SyncPage:
        """One page of a streamed sync: up to ``limit`` messages of each ``(conversation_id, after, until)`` of
        ``pending`` in turn, by seq (hidden ones as tombstones, as in :meth:`sync`)."""

    @abc.abstractmethod
    def append_group(self, request: GroupAppend) -> asyncio.Future[AppendResult]:
        """As append_direct, for a group. Fails with Forbidden for a non-member and for a group that does not exist
        (the same error, message included), and when the member may not speak. Returns the group's membership
        version in ``AppendResult``."""

    @abc.abstractmethod
    def append_event(self, request: EventAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        """Recall or edit: check author and window, change the target's state, append the event. Returns the
        append result and the stored event message."""

    @abc.abstractmethod
    async def mark_delivered(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        """Advance the user's delivered cursor (clamped to the conversation's last seq). Returns the new cursor when
        it moved, None otherwise (including when the user is not a member)."""

    @abc.abstractmethod
    async def mark_read(self, user_id: int, conversation_id: str, seq: int) -> ReadCursors | None:
        """Advance the user's read (and delivered) cursor, clamped; both cursors when the read cursor moved, else
        None. Raises ConversationNotFound for a non-member."""

    @abc.abstractmethod
    async def hide_message(self, user_id: int, conversation_id: str, seq: int, ts: int) -> MessageRecord:
        """Delete for me: the message reads as a tombstone ({"deleted": true}) for this user from now on. Returns
        the notice appended to the user's own timeline ``u:<id>``. ConversationNotFound / MessageNotFound."""

    @abc.abstractmethod
    async def conversation_members(self, conversation_id: str) -> list[int]: ...

    @abc.abstractmethod
    async def group_fanout(self, conversation_id: str) -> tuple[int, dict[int, int]]:
        """(membership version, {member id: joined_seq}) of a group conversation, for the fan-out cache."""

    @abc.abstractmethod
    async def direct_refusal(self, sender: int, recipient: int) -> PicaError | None:
        """Why ``sender`` may not message ``recipient`` one to one now (the send policy: UserNotFound, Forbidden),
        or None. A read: the append checks again at commit time."""

    @abc.abstractmethod
    async def member_cursors(self, user_id: int, conversation_id: str) -> list[MemberRecord]:
        """Every member with their cursors; ConversationNotFound unless ``user_id`` is a member."""

    @abc.abstractmethod
    async def list_conversations(
        self, user_id: int, *, limit: int, before_ts: int | None, before_id: str = ""
    ) -> list[ConversationSummary]:
        """The user's conversations, most recently active first (ties by conversation id), with their last message.
        The next page starts after (before_ts, before_id): the last item of the previous page."""

    @abc.abstractmethod
    async def search(self, user_id: int, query: str, *, conversation_id: str | None, limit: int,
                     sender: int | None = None, since: int | None = None, until: int | None = None,
                     kind: str | None = None) -> list[MessageRecord]:
        """The ``limit`` newest messages matching ``query`` (words, all required; docs/protocol.md section 15) in
        the user's current conversations and visible part of each timeline; recalled and hidden messages excluded.
        Narrowed to one conversation, one sender, ``since <= ts < until``, a kind (``file``, ``link``)."""

    @abc.abstractmethod
    async def reindex_search(self, *, only_if_stale: bool = False) -> int:
        """Rebuild the search index with the current tokenizer; how many messages were read. ``only_if_stale``:
        only when the index was built by an older tokenizer (0 when it was not)."""

    # groups
    @abc.abstractmethod
    async def create_group(self, owner: int, name: str, members: list[int], ts: int, max_members: int) -> GroupChange:
        """Create a group whose first message is a ``created`` notice. Raises UserNotFound, BadRequest (size)."""

    @abc.abstractmethod
    async def group_action(self, action: GroupAction) -> GroupChange: ...

    @abc.abstractmethod
    async def get_group(self, user_id: int, group_id: int) -> GroupRecord:
        """GroupNotFound unless the user is a member."""

    @abc.abstractmethod
    async def list_groups(self, user_id: int) -> list[GroupRecord]: ...

    @abc.abstractmethod
    async def group_members(self, user_id: int, group_id: int) -> list[MemberRecord]:
        """GroupNotFound unless the user is a member."""

    # contacts, blocks, settings, presence
    @abc.abstractmethod
    async def contact_request(self, user_id: int, peer_id: int, ts: int) -> str:
        """Send (or, if the peer asked first, accept) a request. Returns the new state for the user."""

    @abc.abstractmethod
    async def contact_respond(self, user_id: int, peer_id: int, accept: bool, ts: int) -> str: ...

    @abc.abstractmethod
    async def contact_remove(self, user_id: int, peer_id: int) -> None: ...

    @abc.abstractmethod
    async def list_contacts(self, user_id: int) -> list[ContactRecord]: ...

    @abc.abstractmethod
    async def set_blocked(self, user_id: int, peer_id: int, blocked: bool, ts: int) -> None: ...

    @abc.abstractmethod
    async def list_blocked(self, user_id: int) -> list[int]: ...

    @abc.abstractmethod
    async def set_only_contacts(self, user_id: int, only_contacts: bool) -> None: ...

    @abc.abstractmethod
    async def get_only_contacts(self, user_id: int) -> bool: ...

    @abc.abstractmethod
    async def get_settings(self, user_id: int) -> UserSettings: ...

    @abc.abstractmethod
    async def set_privacy(self, user_id: int, *, group_add: str | None = None, presence: str | None = None) -> None:
        """Change the given privacy settings (None: unchanged); values from PRIVACY_LEVELS, else BadRequest."""

    @abc.abstractmethod
    async def presence_audience(self, user_id: int) -> PresenceAudience:
        """Who is related to this user (accepted contacts and 1:1 peers) minus users this user blocked, and the
        user's presence setting."""

    @abc.abstractmethod
    async def presence_audiences(self, user_ids: Sequence[int]) -> dict[int, PresenceAudience]:
        """:meth:`presence_audience` of each of these users (every one of them a key), in one read."""

    @abc.abstractmethod
    async def presence_of(self, viewer: int, user_ids: list[int]) -> list[PresenceRecord]:
        """Those of ``user_ids`` related to the viewer and not blocking them (and the viewer), with last_seen and
        the facts of the presence rule; others are left out."""

    # group invitations
    @abc.abstractmethod
    async def list_invitations(self, user_id: int) -> list[InvitationRecord]:
        """The user's pending invitations that are still valid (group not dissolved, inviter still its owner or an
        admin, the user not a member), by group id."""

    @abc.abstractmethod
    async def accept_invitation(self, user_id: int, group_id: int, ts: int, max_members: int) -> GroupChange:
        """Join the group the invitation is for, re-checked now: NotFound without a valid invitation (none, or its
        inviter is no longer the group's owner or an admin), Forbidden for a dissolved group, BadRequest when the
        user is a member already or the group is full."""

    @abc.abstractmethod
    async def decline_invitation(self, user_id: int, group_id: int) -> None:
        """Drop the invitation; NotFound when there is none."""

    # account lifecycle
    @abc.abstractmethod
    async def delete_account(self, user_id: int, ts: int) -> list[GroupChange]:
        """Delete the account in one transaction, per docs/protocol.md "Deleting an account": the user row becomes
        a tombstone (username freed, password and settings erased), contacts, blocks, hidden messages, cursors,
        invitations and the user's own timeline go, every group is left (an owner's passes to the next member by
        group_rules.successor, or is dissolved when nobody remains). Returns the group changes, in commit order,
        for the fan-out. UserNotFound when there is no such (undeleted) user."""

    @abc.abstractmethod
    async def sent_messages(self, user_id: int, after_client_msg_id: str, limit: int) -> list[MessageRecord]:
        """Messages the user sent, in ``client_msg_id`` order after ``after_client_msg_id`` (keyset paging over the
        idempotency index), at most ``limit``: for the data export."""

    @abc.abstractmethod
    async def set_last_seen(self, seen: Mapping[int, int]) -> None:
        """Store each user's last seen time (ms), in one transaction: the users of one batch of presence
        announcements who went offline."""

    # jobs (the durable queue of side work: pica/jobs) and webhook endpoints
    @abc.abstractmethod
    def set_job_rules(self, rules: JobRules | None, on_jobs: Callable[[], None] | None = None) -> None:
        """From now on, write transactions add the job rows ``rules`` says (None: none), and ``on_jobs`` is called
        after a commit that may have added some (the in-node worker's waker)."""

    # media (docs/protocol.md, "Files")
    @abc.abstractmethod
    async def reserve_blob(self, sha256: str, now_ms: int) -> None:
        """Mark content as being put now, before its bytes are written: the sweep leaves it alone for a grace."""

    @abc.abstractmethod
    async def add_file(self, record: FileRecord, quota_bytes: int) -> None:
        """Store an uploaded file's row; QuotaExceeded when the owner's files would pass ``quota_bytes``."""

    @abc.abstractmethod
    async def file_usage(self, owner: int) -> int:
        """Bytes of the files an owner has (each upload counted, even of the same content)."""

    @abc.abstractmethod
    async def readable_file(self, file_id: str, user_id: int) -> FileRecord | None:
        """The file, if ``user_id`` may read it: its owner, or a member who can see a message that references it
        (the timeline rule; a recall removes the reference). None for everyone else, existing or not."""

    @abc.abstractmethod
    async def open_upload(self, record: UploadRecord, max_open: int) -> None:
        """Start a resumable upload; Forbidden past ``max_open`` unfinished ones of the owner."""

    @abc.abstractmethod
    async def get_upload(self, upload_id: str, owner: int) -> UploadRecord | None:
        """The owner's unfinished upload, or None (another user's reads as absent)."""

    @abc.abstractmethod
    async def touch_upload(self, upload_id: str, received: int, now_ms: int) -> None:
        """Record progress (``received`` bytes are durable): the upload's expiry counts from now."""

    @abc.abstractmethod
    async def end_upload(self, upload_id: str) -> None:
        """Forget an upload (finished or cancelled)."""

    @abc.abstractmethod
    async def sweep_files(self, unreferenced_before: int, abandoned_before: int, limit: int) -> FileSweep:
        """Delete up to ``limit`` files made before ``unreferenced_before`` that no message references, the blobs
        no file uses that were not put since then, and the uploads untouched since ``abandoned_before``."""

    @abc.abstractmethod
    async def claim_jobs(self, now_ms: int, lease_ms: int, limit: int) -> list[JobRecord]:
        """Up to ``limit`` jobs due at ``now_ms`` (queued, or running with a lease that ran out), oldest due first,
        marked running until ``now_ms + lease_ms`` with one more attempt. Concurrent claimers never get the same
        job (SKIP LOCKED on PostgreSQL, the one writer on SQLite)."""

    @abc.abstractmethod
    async def finish_jobs(self, outcomes: list[JobOutcome]) -> int:
        """Apply outcomes of claimed jobs; one whose job was claimed again since (another attempt) is ignored.
        Returns how many applied."""

    @abc.abstractmethod
    async def list_jobs(self, state: str | None, limit: int, after_id: int = 0) -> list[JobRecord]:
        """Jobs (of one state, or all) with job_id > after_id, ascending."""

    @abc.abstractmethod
    async def retry_jobs(self, job_ids: list[int] | None, now_ms: int) -> int:
        """Queue dead jobs again with their attempts reset (None: every dead job). Returns how many."""

    @abc.abstractmethod
    async def drop_jobs(self, job_ids: list[int] | None) -> int:
        """Delete dead jobs (None: every dead job). Returns how many."""

    @abc.abstractmethod
    async def job_stats(self) -> JobStats: ...

    @abc.abstractmethod
    async def add_webhook(self, endpoint: WebhookEndpoint) -> None: ...

    @abc.abstractmethod
    async def list_webhooks(self) -> list[WebhookEndpoint]: ...

    @abc.abstractmethod
    async def remove_webhook(self, endpoint_id: str) -> bool:
        """False when there was no such endpoint."""

    @abc.abstractmethod
    async def disable_webhook(self, endpoint_id: str) -> None: ...

    # bots (pica/store/bots.py)
    @abc.abstractmethod
    async def create_bot(self, username: str, key_hash: str, session: SessionRecord, webhook_url: str,
                         webhook_secret: str) -> int:
        """A bot account (a user that cannot log in with a password) and its key's session (``session.user_id`` is
        ignored); the new user id. Raises UsernameTaken."""

    @abc.abstractmethod
    async def rotate_bot_key(self, user_id: int, key_hash: str, session: SessionRecord) -> None:
        """Replace the bot's key: the old key's session is revoked (its sockets close), the new one opened. Raises
        UserNotFound when the user is not a bot."""

    @abc.abstractmethod
    async def delete_bot(self, user_id: int, ts: int) -> list[GroupChange]:
        """Delete the bot's account (as ``delete_account``) and its key. Raises UserNotFound when not a bot."""

    @abc.abstractmethod
    async def list_bots(self) -> list[BotRecord]: ...

    @abc.abstractmethod
    async def bot_key_state(self, key_hash: str) -> BotKeyState | None: ...

    @abc.abstractmethod
    async def bot_webhooks(self) -> list[BotWebhook]: ...
    # push targets and notification settings (pica/store/devices.py)
    @abc.abstractmethod
    async def register_device(self, device: DeviceRecord, max_per_user: int, now_ms: int) -> DeviceRecord:
        """Register (or move here) a push target: the same platform and token registered before, by any session, is
        replaced. The user's devices of ended sessions are deleted first; TooManyDevices when ``max_per_user``
        remain."""

    @abc.abstractmethod
    async def list_devices(self, user_id: int, now_ms: int) -> list[DeviceRecord]:
        """The user's devices whose session is live, oldest first."""

    @abc.abstractmethod
    async def remove_device(self, user_id: int, device_id: str) -> bool:
        """False when the user has no such device."""

    @abc.abstractmethod
    async def drop_devices(self, device_ids: list[str]) -> int:
        """Delete devices whoever owns them (a push service said they are gone, or their session ended)."""

    @abc.abstractmethod
    async def set_notification_setting(self, user_id: int, setting: NotificationSetting) -> None:
        """ConversationNotFound unless the user is a member of the conversation."""

    @abc.abstractmethod
    async def get_notification_setting(self, user_id: int, conversation_id: str) -> NotificationSetting:
        """ConversationNotFound unless the user is a member of the conversation."""

    @abc.abstractmethod
    async def set_push_privacy(self, user_id: int, privacy: bool) -> None: ...

    @abc.abstractmethod
    async def get_push_privacy(self, user_id: int) -> bool: ...

    # ------------------------------------------------------------------------------------------ link previews

    @abc.abstractmethod
    async def cached_preview(self, url: str, since_ms: int) -> dict[str, Any] | None:
        """What a fetch of ``url`` at or after ``since_ms`` gave (``{}``: nothing to show); None: not cached."""

    @abc.abstractmethod
    async def cache_preview(self, url: str, preview: dict[str, Any], now_ms: int, expired_before_ms: int) -> None:
        """Remember a fetch of ``url``; rows older than ``expired_before_ms`` may be dropped."""

    @abc.abstractmethod
    async def push_candidates(self, conversation_id: str, seq: int) -> tuple[PushMessage | None, list[PushCandidate]]:
        """The message at ``seq`` and the conversation's members but its sender who have a device."""

    @abc.abstractmethod
    async def push_audience(self, user_ids: list[int], now_ms: int) -> PushAudience: ...

    # pins, drafts and per-conversation settings (pica/store/pins.py)
    @abc.abstractmethod
    async def set_pin(self, user_id: int, conversation_id: str, seq: int, pinned: bool, ts: int,
                      max_pins: int) -> PinChange:
        """Pin (or unpin) message ``seq``, with a notice in the timeline when that changed anything. Members of a
        1:1, a group's owner and admins; ConversationNotFound, MessageNotFound, Forbidden, TooManyPins."""

    @abc.abstractmethod
    async def list_pins(self, user_id: int, conversation_id: str) -> list[PinRecord]:
        """The conversation's pinned messages the user can see, most recently pinned first (recalled ones left out)."""

    @abc.abstractmethod
    async def set_prefs(self, user_id: int, conversation_id: str, change: PrefsChange, ts: int) -> ConversationPrefs:
        """Apply ``change`` to the user's state of the conversation; ConversationNotFound unless a member."""

    @abc.abstractmethod
    async def prefs_of(self, user_id: int, conversation_ids: list[str]) -> dict[str, ConversationPrefs]:
        """The user's state of each of these conversations that has one (a setting or a notification row)."""

    # reactions, replies, threads, mentions (docs/protocol.md section 28; pica/store/annotations.py)
    @abc.abstractmethod
    def append_linked(self, request: LinkedAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        """Append a reply, thread message or message with mentions (checked against the messages it names), with
        the quote's truth in its body; the stored message. A repeated client id answers the original."""

    @abc.abstractmethod
    def append_reaction(self, request: ReactionAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        """Change the target's reactions and append the reaction event; the event message."""

    @abc.abstractmethod
    async def thread_messages(self, user_id: int, conversation_id: str, root_seq: int, after: int,
                              limit: int) -> Page:
        """A thread's messages after ``after``, ascending; ConversationNotFound for a non-member."""

    @abc.abstractmethod
    async def threads(self, user_id: int, conversation_id: str, limit: int) -> list[ThreadSummary]:
        """The threads of a conversation the user takes part in, most recently active first."""

    @abc.abstractmethod
    async def mark_thread_read(self, user_id: int, conversation_id: str, root_seq: int, seq: int) -> None:
        """Move the user's read cursor in a thread they take part in (only forward)."""

    @abc.abstractmethod
    async def unread_mentions(self, user_id: int, conversation_ids: list[str]) -> dict[str, int]:
        """Per conversation, the messages after the user's read cursor that mention them (only those with any)."""

"""Pins (shared by a conversation's members) and a user's own state of a conversation: draft, pin to top, archive,
mark unread, mute (docs/protocol.md sections 29.2-29.4).

A pin's change is a notice in the timeline, delivered like a recall's event: members learn it live or by sync. A
user's own state is pushed to every device of theirs as a ``conversation`` frame carrying the whole state (so a
missed frame is repaired by the next one, or by the conversation list at reconnection); it never enters a timeline,
whose seqs every member would pay for. Saves are rate-limited per user (``conversations.drafts_per_user``,
``conversations.settings_per_user``): clients save a draft a moment after the typing stops.
"""

from __future__ import annotations

from pica.config import ConversationsConfig
from pica.core.chat import ChatService
from pica.core.ports import Clock, Delivery
from pica.core.ratelimit import Buckets, Rate, RateLimits
from pica.errors import BadRequest, ConversationNotFound
from pica.protocol import frames as f
from pica.protocol.ids import names_nothing
from pica.protocol.outbound import OutboundFrame
from pica.protocol.text import has_control_chars
from pica.store.base import (
    AppendResult,
    ConversationPrefs,
    MessageRecord,
    NotificationSetting,
    PinRecord,
    PrefsChange,
    Store,
)

__all__ = ["PinService", "PrefsService", "state_frame"]

_MAX_TS = 2**53 - 1


def _must_name_one(conversation_id: str) -> None:
    if names_nothing(conversation_id) or not conversation_id.startswith(("d:", "g:")):
        raise ConversationNotFound()


class PinService:
    def __init__(self, store: Store, chat: ChatService, clock: Clock, config: ConversationsConfig,
                 rates: RateLimits | None = None) -> None:
        self._store = store
        self._chat = chat
        self._clock = clock
        self._config = config
        self._rates = rates

    async def set_pin(self, user_id: int, conversation_id: str, seq: int, pinned: bool) -> MessageRecord | None:
        """Pin or unpin; the notice appended (None: it was so already, nothing changed)."""
        if self._rates is not None:  # the notice is a message of the timeline: it costs one
            self._rates.check(self._rates.sends, user_id, "messages")
        _must_name_one(conversation_id)
        ts = self._clock.now_ms()
        change = await self._store.set_pin(user_id, conversation_id, seq, pinned, ts, self._config.max_pins)
        notice = change.notice
        if notice is not None:
            self._chat.deliver_event(notice, AppendResult(conversation_id, notice.seq, notice.ts, False,
                                                          change.members_version))
        return notice

    async def pins(self, user_id: int, conversation_id: str) -> list[PinRecord]:
        _must_name_one(conversation_id)
        return await self._store.list_pins(user_id, conversation_id)


def state_frame(prefs: ConversationPrefs) -> f.ConversationState:
    return f.ConversationState(conversation_id=prefs.conversation_id, draft=prefs.draft, draft_ts=prefs.draft_ts,
                               pinned_at=prefs.pinned_at, archived=prefs.archived, marked_unread=prefs.marked_unread,
                               muted_until=prefs.mute_until, level=prefs.level)


class PrefsService:
    def __init__(self, store: Store, delivery: Delivery, clock: Clock, config: ConversationsConfig,
                 rates: RateLimits | None = None) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._config = config
        self._rates = rates
        keys = rates.config.max_keys if rates is not None else 100_000
        self._drafts = Buckets("drafts", Rate.parse(config.drafts_per_user), keys, "conversations.drafts_per_user")
        self._settings = Buckets("conversation_settings", Rate.parse(config.settings_per_user), keys,
                                 "conversations.settings_per_user")

    async def save_draft(self, user_id: int, conversation_id: str, text: str) -> ConversationPrefs:
        """Save (``text`` empty: clear) the user's draft of a conversation and tell their devices."""
        if self._rates is not None:
            self._rates.check(self._drafts, user_id, "draft saves")
        _must_name_one(conversation_id)
        if len(text) > self._config.max_draft_chars:
            raise BadRequest(f"a draft is at most {self._config.max_draft_chars} characters")
        if has_control_chars(text.replace("\n", "").replace("\t", "")):
            raise BadRequest("a draft must not contain control characters other than newlines and tabs")
        prefs = await self._store.set_prefs(user_id, conversation_id, PrefsChange(draft=text), self._clock.now_ms())
        self.announce(user_id, prefs)
        return prefs

    async def change(self, user_id: int, conversation_id: str, *, pinned: bool | None = None,
                     archived: bool | None = None, marked_unread: bool | None = None,
                     muted_until: int | None = None) -> ConversationPrefs:
        """Change the list settings named (None: unchanged); a ``muted_until`` already past unmutes. The mute is the
        notification setting's (protocol 23.7), whose level stays as it is."""
        if self._rates is not None:
            self._rates.check(self._settings, user_id, "settings changes")
        _must_name_one(conversation_id)
        if muted_until is not None:
            if not 0 <= muted_until <= _MAX_TS:
                raise BadRequest("muted_until must be a time in ms since the epoch")
            level = (await self._store.get_notification_setting(user_id, conversation_id)).level
            mute = muted_until if muted_until > self._clock.now_ms() else None
            await self._store.set_notification_setting(user_id, NotificationSetting(conversation_id, level, mute))
        prefs = await self._store.set_prefs(user_id, conversation_id,
                                            PrefsChange(pinned=pinned, archived=archived, marked_unread=marked_unread),
                                            self._clock.now_ms())
        self.announce(user_id, prefs)
        return prefs

    async def of(self, user_id: int, conversation_ids: list[str]) -> dict[str, ConversationPrefs]:
        return await self._store.prefs_of(user_id, conversation_ids)

    async def announce_current(self, user_id: int, conversation_id: str) -> None:
        """Tell the user's devices the conversation's state after a change made elsewhere (the notification
        setting's own route)."""
        found = await self._store.prefs_of(user_id, [conversation_id])
        self.announce(user_id, found.get(conversation_id, ConversationPrefs(conversation_id)))

    def announce(self, user_id: int, prefs: ConversationPrefs) -> None:
        self._delivery.deliver((user_id,), OutboundFrame(state_frame(prefs)))

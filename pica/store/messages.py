"""The message writes, written once for both dialects (see :mod:`pica.store.txn`).

Each function returns a transaction: the backend runs it inside its own transaction (SQLite's writer, a PostgreSQL
write lane or pooled connection) and commits. The rules they apply are the pure modules beside them
(:mod:`pica.store.append_rules`, :mod:`pica.store.event_rules`); here is only the order of the reads and writes.

Locking: every write of a conversation's timeline reads the conversation row first with ``lock_conversations``
(``FOR UPDATE`` on PostgreSQL, where that row's lock is the one seq authority across nodes; SQLite's single writer
holds the database lock already). Batches lock their conversations in id order, so concurrent batches cannot
deadlock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, Final

import msgspec

from pica.errors import ConversationNotFound, MessageNotFound, PicaError
from pica.protocol.bodies import stands_for_conversation
from pica.protocol.frames import Msg
from pica.protocol.ids import direct_peer, own_conversation_id
from pica.store import append_rules, links, media
from pica.store.append_rules import (
    Append,
    AppendPlan,
    GroupSender,
    Original,
    Outcome,
    Recipient,
    plan_appends,
)
from pica.store.base import (
    AppendResult,
    ConversationSummary,
    DirectAppend,
    EventAppend,
    GroupAppend,
    MemberRecord,
    MessageRecord,
    Page,
    ReadCursors,
    SyncPage,
)
from pica.store.event_rules import EventPlan, Target, plan_event, scrub_edits
from pica.store.sqlite_binding import bind
from pica.store.txn import Dialect, Read, Retry, Statement, Txn, Write

_json_encode: Final = msgspec.json.Encoder().encode
_json_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode
_json_decode_bodies: Final = msgspec.json.Decoder(list[dict[str, Any]]).decode
_json_decode_ints: Final = msgspec.json.Decoder(list[int]).decode
_json_decode_strs: Final = msgspec.json.Decoder(list[str]).decode

RECALLED_BODY_JSON: Final = b'{"recalled":true}'
DELETED_BODY: Final = {"deleted": True}


def message_row(row: Sequence[Any]) -> MessageRecord:
    """A message from (conversation_id, seq, sender, client_msg_id, ts, body[, hidden]); hidden reads as a
    tombstone, so seqs stay gap-free for every reader."""
    body = dict(DELETED_BODY) if len(row) > 6 and row[6] else _json_decode_body(row[5])
    return MessageRecord(row[0], row[1], row[2], row[3], row[4], body)


# --------------------------------------------------------------------------------------------------------- batches


def append_batch(requests: Sequence[Append], searches: Sequence[str | None]) -> Txn[list[Outcome]]:
    """Messages from clients, as many as the writer has waiting: one read of the facts and locks for the whole batch
    (and one of the group senders after it), the plan, then one write for all the tables. ``searches``: each
    message's search value as the dialect indexes it."""
    keys = sorted({(r.sender, r.client_msg_id) for r in requests})
    pairs = sorted({(r.recipient, r.sender) for r in requests if isinstance(r, DirectAppend)})
    conversations = sorted({r.conversation_id for r in requests})
    originals, recipients, last_seqs = yield from append_facts(keys, pairs, conversations)
    # Group members after the lock: a group change holds the same lock, so this sees the membership the messages
    # are committed under.
    group_senders: dict[tuple[str, int], GroupSender] = {}
    speakers = sorted({(r.conversation_id, r.sender) for r in requests if isinstance(r, GroupAppend)})
    if speakers:
        rows = yield Read("group_senders", ([s[0] for s in speakers], [s[1] for s in speakers]))
        group_senders = {(row[0], row[1]): GroupSender(row[2], bool(row[3]), bool(row[4]), bool(row[5]), row[6])
                         for row in rows}

    def plan() -> AppendPlan:
        return plan_appends(requests, searches, last_seqs=last_seqs, originals=originals, recipients=recipients,
                            group_senders=group_senders)

    decided = plan()
    created = sorted({m[0].conversation_id for m in decided.messages if m[0].conversation_id not in last_seqs})
    if created:
        first_ts = {m[0].conversation_id: m[0].ts for m in reversed(decided.messages)}
        yield Write("create_direct_conversations", (created, [first_ts[c] for c in created]))
        found = {row[0]: row[1] for row in (yield Read("lock_conversations", (created,)))}
        last_seqs.update(found)
        if any(found.values()):  # another node created it and committed messages first: take seqs after theirs
            decided = plan()
    if not decided.messages:
        return decided.outcomes
    rows = yield Read("store_messages", (
        *_columns([(c, seq, ts) for c, (seq, ts) in decided.last.items()], 3),
        *_columns([(r.conversation_id, seq, r.sender, r.client_msg_id, r.ts, r.body_json, search)
                   for r, seq, search in decided.messages], 7),
        *_columns([(c, u, decided.read.get((c, u), 0)) for c, u in decided.new_members], 3),
        *_columns([(c, u, seq) for (c, u), seq in decided.read.items()], 3),
    ))
    if rows[0][0] != len(decided.messages):
        # A concurrent transaction (another node or lane) committed one of these client ids while we waited on its
        # index entry: run again, and the new attempt reads it as an original.
        raise Retry()
    refs = [(file_id, r.conversation_id, seq) for r, seq, _ in decided.messages for file_id in r.file_ids]
    if refs:
        yield from media.refs_of(refs)
    return decided.outcomes


Facts = tuple[dict[tuple[int, str], Original], dict[tuple[int, int], Recipient], dict[str, int]]
"""What a batch is planned on besides its group senders: originals by (sender, client id), recipients by (recipient,
sender), last seqs by conversation (locked)."""


def append_facts(keys: Sequence[tuple[int, str]], pairs: Sequence[tuple[int, int]],
                 conversations: Sequence[str]) -> Txn[Facts]:
    """The facts of a batch that its conversations' locks do not guard, and those locks, in ONE read (on PostgreSQL
    one statement): the originals of (sender, client id) ``keys``, the settings of each (recipient, sender) of
    ``pairs``, and the last seq of each of ``conversations`` (sorted), whose rows it locks in that order."""
    # With the locks, a 1:1 batch on PostgreSQL is BEGIN, this, store, COMMIT, and the locks are held for no more
    # than the last three. In READ COMMITTED a statement's snapshot is taken at its start, before it waits for a lock,
    # so the facts may predate what a holder of one of the locks committed meanwhile; each of them tolerates that, as
    # it did when they were read in statements of their own before the lock:
    # - last seqs: ``FOR UPDATE`` answers the locked row's newest version (PostgreSQL re-reads it after the wait).
    # - originals: a client id committed meanwhile is not seen, and the insert finds it (ON CONFLICT, which looks past
    #   the snapshot): fewer rows inserted than planned, Retry, and the new attempt reads it as an original.
    # - recipient facts (blocks, contacts, settings, deleted accounts): no writer of them takes a conversation's lock,
    #   so waiting for one orders nothing; a send is decided on the facts as they stood when its statement began.
    # Group members are NOT among them: a group change holds the conversation's lock, so they are read after it.
    originals: dict[tuple[int, str], Original] = {}
    recipients: dict[tuple[int, int], Recipient] = {}
    last_seqs: dict[str, int] = {}
    for row in (yield Read("append_facts", ([k[0] for k in keys], [k[1] for k in keys], [p[0] for p in pairs],
                                            [p[1] for p in pairs], list(conversations)))):
        # (kind, conversation_id, user, peer, client_msg_id, seq, ts, body, state, blocks, refuses): see the SQL.
        if row[0] == "c":
            last_seqs[row[1]] = row[5]
        elif row[0] == "o":
            originals[(row[2], row[4])] = Original(row[1], row[5], row[6],
                                                   _json_decode_body(row[7]) if row[8] == "" else None)
        elif row[0] == "r":
            recipients[(row[2], row[3])] = Recipient(bool(row[9]), bool(row[10]))
    return originals, recipients, last_seqs


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    return tuple([row[i] for row in rows] for i in range(width))


# --------------------------------------------------------------------------------------------------------- singles


def _append_one(conversation_id: str, sender: int, client_msg_id: str | None, ts: int,
                body: dict[str, Any]) -> Txn[MessageRecord]:
    """A message the server appends (notices, recall/edit events, delete-for-me notes) in a conversation whose row
    this transaction holds: next seq, insert, marked read for its sender. ``client_msg_id`` None: the notice id
    ``~n:<conversation>:<seq>``."""
    rows = yield Read("lock_conversations", ([conversation_id],))
    if not rows:
        raise ConversationNotFound()
    seq = rows[0][1] + 1
    cmid = client_msg_id if client_msg_id is not None else f"~n:{conversation_id}:{seq}"
    yield Write("advance_conversations", ([conversation_id], [seq], [ts]))
    inserted = yield Write("insert_messages", ([conversation_id], [seq], [sender], [cmid], [ts], [_json_encode(body)],
                                               [None]))  # server-made messages are not searchable
    if inserted != 1:
        raise Retry()
    yield Write("mark_sender_read", ([conversation_id], [sender], [seq]))
    return MessageRecord(conversation_id, seq, sender, cmid, ts, body)


append_server_body: Final = _append_one
"""A message the server writes in a conversation whose row the calling transaction holds (a reaction event)."""


def append_notice(conversation_id: str, actor: int, event: dict[str, Any], ts: int) -> Txn[MessageRecord]:
    """A system notice ({"system": {...}}) in a conversation's timeline; its id is server-made (``~n:`` prefix)."""
    return _append_one(conversation_id, actor, None, ts, {"system": event})


def _original(sender: int, client_msg_id: str) -> Txn[MessageRecord | None]:
    rows = yield Read("find_original_message", (sender, client_msg_id))
    return message_row(rows[0]) if rows else None


def append_event(request: EventAppend, search_value: Any) -> Txn[tuple[AppendResult, MessageRecord]]:
    """Recall or edit: check author and window (:func:`plan_event`), change the target, append the event.
    ``search_value``: turns the edited text into the dialect's search value."""
    conversation_id = request.conversation_id
    # The conversation row first, as every writer of a conversation does: two edits of one message apply one after
    # the other, and a concurrent group change is either wholly before this or wholly after.
    yield Read("lock_conversations", ([conversation_id],))
    member = yield Read("member_state", (conversation_id, request.user_id))
    if not member:
        raise ConversationNotFound()
    existing = yield from _original(request.user_id, request.client_msg_id)
    if existing is not None:
        return AppendResult(existing.conversation_id, existing.seq, existing.ts, duplicate=True), existing
    target = yield from event_target(conversation_id, request.target_seq)
    plan = plan_event(request, joined_seq=member[0][0], dissolved=bool(member[0][1]), target=target)
    record = yield from apply_event(request, plan, search_value)
    return AppendResult(conversation_id, record.seq, request.ts, duplicate=False), record


def event_target(conversation_id: str, seq: int) -> Txn[Target | None]:
    target = yield Read("message_for_event", (conversation_id, seq))
    if not target:
        return None
    return Target(target[0][0], target[0][1], target[0][2], _json_decode_body(target[0][3]))


def apply_event(request: EventAppend, plan: EventPlan, search_value: Any) -> Txn[MessageRecord]:
    """Write a checked recall or edit: the target's new state, its edit events scrubbed (a recall), its search row,
    then the event message, sent by ``request.user_id`` (the author, also for a moderated recall)."""
    conversation_id = request.conversation_id
    scrubbed: list[tuple[int, dict[str, Any]]] = []
    if plan.state == "recalled":
        # The author's later messages hold the target's edit events; the recall window bounds how many there are.
        later = yield Read("later_messages_of", (conversation_id, request.target_seq, request.user_id))
        scrubbed = scrub_edits(request.target_seq, [(row[0], _json_decode_body(row[1])) for row in later])
        yield from media.drop_refs(conversation_id, request.target_seq)  # its files are no longer readable through it
        yield from links.on_recall(conversation_id, request.target_seq)  # replies read "recalled" (section 28)
    new_body = RECALLED_BODY_JSON if plan.body is None else _json_encode(plan.body)
    search = None if plan.search_text is None else search_value(plan.search_text)
    yield Write("change_message", ([conversation_id], [request.target_seq], [plan.state], [new_body], [search]))
    if scrubbed:  # edit events are never indexed for search: their bodies are all there is to rewrite
        yield Write("replace_bodies", ([conversation_id] * len(scrubbed), [seq for seq, _ in scrubbed],
                                       [_json_encode(body) for _, body in scrubbed]))
    yield Write("unindex_search", ([conversation_id], [request.target_seq]))
    yield Write("unqueue_search", ([conversation_id], [request.target_seq]))  # its old text, if not indexed yet
    if search is not None:
        yield Write("index_search", ([search], [conversation_id], [request.target_seq]))
    return (yield from _append_one(conversation_id, request.user_id, request.client_msg_id, request.ts, plan.event))


def hide_message(user_id: int, conversation_id: str, seq: int, ts: int) -> Txn[MessageRecord]:
    """Delete for me: the message reads as a tombstone for this user, and the user's own timeline ``u:<id>`` records
    it, so that every device of theirs learns it live or by sync. Idempotent."""
    rows = yield Read("member_range", (conversation_id, user_id))
    if not rows:
        raise ConversationNotFound()
    joined, last_seq = rows[0]
    if not joined < seq <= last_seq:
        raise MessageNotFound()
    client_msg_id = f"~d:{conversation_id}:{seq}"
    event = {"system": {"event": "deleted", "conversation_id": conversation_id, "seq": seq}}
    existing = yield from _original(user_id, client_msg_id)
    if existing is not None:
        return MessageRecord(own_conversation_id(user_id), existing.seq, user_id, client_msg_id, existing.ts, event)
    yield Write("insert_hidden", ([user_id], [conversation_id], [seq]))
    return (yield from append_own_notice(user_id, user_id, client_msg_id, event, ts))


def append_own_notice(user_id: int, sender: int, client_msg_id: str | None, event: dict[str, Any],
                      ts: int) -> Txn[MessageRecord]:
    """A notice in the user's own timeline ``u:<id>`` (created on first use), which every device of theirs syncs:
    the way to tell a user something that happened outside any conversation they can still read."""
    own = own_conversation_id(user_id)
    yield Write("create_self_conversations", ([own], [ts]))
    yield Write("insert_members", ([own], [user_id]))
    return (yield from _append_one(own, sender, client_msg_id, ts, event))


# --------------------------------------------------------------------------------------------------------- cursors


def mark_delivered(user_id: int, conversation_id: str, seq: int) -> Txn[int | None]:
    """Advance the user's delivered cursor (clamped to the conversation's last seq); the new cursor when it moved."""
    rows = yield Read("advance_delivered", (conversation_id, user_id, seq))
    return int(rows[0][0]) if rows else None


def mark_read(user_id: int, conversation_id: str, seq: int) -> Txn[ReadCursors | None]:
    """Advance the read (and delivered) cursor, clamped; both cursors when the read cursor moved. Non-members: not
    found."""
    rows = yield Read("advance_read", (conversation_id, user_id, seq))
    if rows:
        return ReadCursors(delivered=int(rows[0][1]), read=int(rows[0][0]))
    if not (yield Read("member_range", (conversation_id, user_id))):
        raise ConversationNotFound()
    return None


# --------------------------------------------------------------------------------------------------------- reads


def history(user_id: int, conversation_id: str, after: int | None, before: int | None, limit: int) -> Txn[Page]:
    rows = yield Read("member_range", (conversation_id, user_id))
    if not rows:
        raise ConversationNotFound()
    floor = max(rows[0][0], after or 0)
    if before is None and after is not None:
        rows = yield Read("messages_after", (user_id, conversation_id, floor, limit + 1))
        return Page([message_row(r) for r in rows[:limit]], len(rows) > limit)
    ceiling = before if before is not None else 2**62
    rows = yield Read("messages_before", (user_id, conversation_id, floor, ceiling, limit + 1))
    return Page([message_row(r) for r in reversed(rows[:limit])], len(rows) > limit)


def sync(user_id: int, cursors: Mapping[str, int], limit: int) -> Txn[SyncPage]:
    """Messages after max(joined_seq, cursor) in every conversation of the user, by (conversation, seq)."""
    pending = yield from sync_plan(user_id, cursors)
    return (yield from sync_after(user_id, pending, limit))


def sync_plan(user_id: int, cursors: Mapping[str, int]) -> Txn[list[tuple[str, int, int]]]:
    """The user's conversations with messages after max(joined_seq, cursor), by id: (id, that seq, last seq now).
    The last seq bounds what a streamed sync reads: the messages the user could see when it began, whatever
    happens meanwhile (a removal from a group), and what was committed since arrives as live pushes."""
    pending: list[tuple[str, int, int]] = []
    for conversation_id, joined, last_seq in (yield Read("memberships", (user_id,))):
        start = max(joined, cursors.get(conversation_id, 0))
        if last_seq > start:
            pending.append((conversation_id, start, last_seq))
    return pending


def sync_after(user_id: int, pending: Sequence[tuple[str, int, int]], limit: int) -> Txn[SyncPage]:
    """Up to ``limit`` messages of ``pending``'s conversations in its order, each after its start seq and up to its
    last seq, by seq. Seqs have no gaps below a conversation's last seq (hidden messages read as tombstones), so
    ``until - start`` says how many rows a conversation holds: each read names only as many conversations as should
    fill the page (one or two, for a long catch-up), because PostgreSQL reads up to the limit in every conversation a
    statement names before it sorts them. Another read follows if rows were missing after all.

    What is read becomes ``msg`` frames at once, with no record in between (a million of them in a long catch-up):
    one conversation's part of the page comes as one row of columns, several conversations' as rows. On
    SQLite the rows do not say whether the reader hid them: one read of the ``hidden`` table for the page's ranges
    costs less than the per-row subquery did (about 0.2 µs a row, BENCHMARKS.md); PostgreSQL keeps the subquery,
    which runs in its own process, and answers nothing to ``sync_hidden``."""
    msgs: list[Msg] = []
    flagged: list[int] | None = None  # PostgreSQL's rows end with "hidden for the reader"; SQLite's do not
    decode = _json_decode_body
    taken = 0
    while taken < len(pending) and len(msgs) <= limit:
        want = limit + 1 - len(msgs)
        batch: list[tuple[str, int, int]] = []
        room = 0
        while taken < len(pending) and room < want:
            if pending[taken][2] > pending[taken][1]:  # not one a streamed sync's previous page read to its end
                batch.append(pending[taken])
                room += pending[taken][2] - pending[taken][1]
            taken += 1
        if not batch:
            break
        if len(batch) == 1:  # the common case, as a statement whose bounds the planner can see (BENCHMARKS.md)
            # One row of columns, not a row per message (see the statement): the frames are made by ``map`` and the
            # bodies decoded in one call. The conversation id is the statement's own argument.
            conversation_id, start, until = batch[0]
            ((seqs, senders, ids, tss, bodies, flags),) = yield Read(
                "messages_after_one", (user_id, conversation_id, start, want, until))
            if not seqs:
                continue
            if seqs == sorted(seqs):  # seqs are unique: sorted means in order (see the statements), columns with them
                if flags is not None:
                    flagged = (flagged or []) + [len(msgs) + i for i, h in enumerate(flags) if h]
                msgs.extend(map(Msg, repeat(conversation_id), seqs, senders, ids, tss, _json_decode_bodies(bodies)))
                continue
            # Out of order, which neither database has been seen to do: the same part again as rows, ordered by SQL.
        rows = yield Read("messages_after_each", (user_id, [p[0] for p in batch], [p[1] for p in batch],
                                                  want, [p[2] for p in batch]))
        if rows and len(rows[0]) > 6:
            flagged = (flagged or []) + [len(msgs) + i for i, r in enumerate(rows) if r[6]]
        msgs.extend([Msg(r[0], r[1], r[2], r[3], r[4], decode(r[5])) for r in rows])
    more = len(msgs) > limit
    del msgs[limit:]
    hidden = [i for i in flagged if i < limit] if flagged is not None else []
    if msgs and flagged is None:
        marked = yield Read("sync_hidden", _page_ranges(user_id, pending[:taken], msgs[-1]))
        if marked:
            at = {(m.conversation_id, m.seq): i for i, m in enumerate(msgs)}
            hidden = [at[(r[0], r[1])] for r in marked if (r[0], r[1]) in at]
    for i in hidden:
        msgs[i].body = dict(DELETED_BODY)
    return SyncPage(msgs, more)


def _page_ranges(user_id: int, read: Sequence[tuple[str, int, int]],
                 last: Msg) -> tuple[list[int], list[str], list[int], list[int]]:
    """``sync_hidden``'s columns: the seq range of each conversation a page read, the last one cut where the page
    ends (a reader who hid many messages further on does not read them for every page)."""
    untils = [p[2] for p in read]
    if read[-1][0] == last.conversation_id:
        untils[-1] = last.seq
    return [user_id] * len(read), [p[0] for p in read], [p[1] for p in read], untils


def member_cursors(user_id: int, conversation_id: str) -> Txn[list[MemberRecord]]:
    rows = yield Read("member_cursors", (conversation_id,))
    if not any(r[0] == user_id for r in rows):
        raise ConversationNotFound()
    return [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5]) for r in rows]


def direct_refusal(sender: int, recipient: int) -> Txn[PicaError | None]:
    """The send policy's answer for a 1:1 message from ``sender`` to ``recipient`` (None: allowed), read now."""
    rows = yield Read("recipient_facts", ([recipient], [sender]))
    facts = Recipient(bool(rows[0][2]), bool(rows[0][3])) if rows else None
    return append_rules.direct_refusal(sender, recipient, facts)


def conversation_members(conversation_id: str) -> Txn[list[int]]:
    return [int(r[0]) for r in (yield Read("member_ids", (conversation_id,)))]


def list_conversations(
    user_id: int, limit: int, before_ts: int | None, before_id: str
) -> Txn[list[ConversationSummary]]:
    """Most recently active first (ties by id); the page after (before_ts, before_id). Without before_id, nothing at
    before_ts itself qualifies. One statement per page, whatever the number of conversations (see the SQL), and,
    when some of the page's newest messages cannot stand for their conversation (a recall or edit event, a recalled
    message, one deleted for the reader), one more per round of reading back for all of them at once."""
    result = []
    floors: dict[str, int] = {}
    for (conversation_id, kind, last_seq, last_ts, delivered, read, name, group_id, sender, client_msg_id, ts, body,
         hidden, peer_delivered, peer_read, peer_name, joined_seq) in (
            (yield Read("conversation_list", (user_id, before_ts, before_id, limit)))):
        peer_id = 0
        if kind == "direct":
            peer_id = direct_peer(conversation_id, user_id) or 0
            name = peer_name or ""
        last = None
        if sender is not None:
            last = message_row((conversation_id, last_seq, sender, client_msg_id, ts, body, hidden))
        if last is not None and not stands_for_conversation(last.body):
            floors[conversation_id] = joined_seq
            last = None
        result.append(ConversationSummary(conversation_id, kind, last_seq, last_ts, delivered, read, name, peer_id,
                                          peer_delivered or 0, peer_read or 0, group_id, last))
    if floors:
        found = yield from _last_standing(user_id, {c.conversation_id: (c.last_seq, floors[c.conversation_id])
                                                    for c in result if c.conversation_id in floors})
        result = [dataclasses.replace(c, last_message=found.get(c.conversation_id)) if c.conversation_id in floors
                  else c for c in result]
    return result


PREVIEW_SCAN: Final = 20
"""Messages read back per conversation and round when its newest one cannot stand for it in the list."""


def _last_standing(user_id: int, spans: dict[str, tuple[int, int]]) -> Txn[dict[str, MessageRecord]]:
    """The newest message of each conversation that may stand for it (:func:`stands_for_conversation`), read back
    from before ``spans[c][0]`` down to the reader's floor ``spans[c][1]`` (their joining: never a message from
    before it), a few at a time for all the conversations at once; none when nothing after the floor qualifies."""
    found: dict[str, MessageRecord] = {}
    while spans:
        ids = sorted(spans)
        rows = yield Read("messages_before_each", (user_id, ids, [spans[c][0] for c in ids],
                                                   [spans[c][1] for c in ids], PREVIEW_SCAN))
        seen: dict[str, list[MessageRecord]] = {c: [] for c in ids}
        for row in rows:
            seen[row[0]].append(message_row(row))
        for conversation_id in ids:
            page = seen[conversation_id]  # newest first
            standing = next((m for m in page if stands_for_conversation(m.body)), None)
            if standing is not None:
                found[conversation_id] = standing
            if standing is not None or len(page) < PREVIEW_SCAN:
                del spans[conversation_id]
            else:
                spans[conversation_id] = (page[-1].seq, spans[conversation_id][1])
    return found


# --------------------------------------------------------------------------------------------------------- SQL
# SQLite: reads over a whole batch bind their keys as one JSON array of rows and join ``json_each`` to an index, so a
# batch of any size is one statement; writes run as one ``executemany``; bodies arrive as the exact JSON bytes the
# server encoded and ``CAST(? AS TEXT)`` keeps them TEXT, as every release has stored them.
# PostgreSQL: one array per column and ``unnest``, one round trip per step however many rows. ``lock_conversations``
# takes the row locks in id order (``ORDER BY ... FOR UPDATE`` locks rows as they come out of the sort). Search values
# are ``tsvector`` literals kept in the message row, so the separate index steps are empty there.

def _hidden_for(me: str) -> str:
    """Whether reader ``me`` (a placeholder) hid message ``m``."""
    return (f"EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = {me} AND h.conversation_id = m.conversation_id"
            " AND h.seq = m.seq)")


def _visible(me: str) -> str:
    """A message's columns as reader ``me`` (a placeholder) sees them: hidden for them reads as a tombstone."""
    return f"m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body, {_hidden_for(me)}"


visible_columns: Final = _visible


_SQLITE_AFTER: Final = (f"SELECT {_visible('?1')} FROM messages m WHERE m.conversation_id = ?2 AND m.seq > ?3"
                        " ORDER BY m.seq LIMIT ?4")


# A sync's rows on SQLite, without the per-row "hidden" check: ``sync_after`` reads the page's hidden seqs at once. ?1
# (the reader) is bound but unused, so that both dialects take the same arguments. Several conversations' rows start
# with the conversation id. The body comes as bytes, which the JSON decoder reads as they are: as text, the sqlite3
# module decodes it into a str first, and a body that is not ASCII then costs the decoder a UTF-8 copy of that str
# again (5-7 % of a synced message, in-process).
_SQLITE_SYNC_ROWS: Final = ("m.seq, m.sender, m.client_msg_id, m.ts, CAST(m.body AS BLOB) FROM messages m"
                            " WHERE m.conversation_id = ?2 AND m.seq > ?3 AND m.seq <= ?5 ORDER BY m.seq LIMIT ?4")

# One conversation's part of a page as ONE row of columns: JSON arrays of the seqs, senders, client ids and times, and
# the bodies as one JSON array (they are JSON already). The sqlite3 module's work per row (a step that releases and
# takes the GIL, a tuple, an object per column: about 1 µs, most of a synced message's CPU) becomes work inside one
# step, without the GIL; the arrays are decoded by msgspec in C. An aggregate's order is not promised before SQLite
# 3.44 (ORDER BY inside group_concat), though it follows the ordered subquery it reads; ``sync_after`` checks the
# seqs and reads the rows instead if they ever come out of order.
_SQLITE_SYNC_COLUMNS: Final = (
    "SELECT json_group_array(seq), json_group_array(sender), json_group_array(client_msg_id), json_group_array(ts),"
    " CAST('[' || group_concat(body) || ']' AS BLOB) FROM (SELECT m.seq, m.sender, m.client_msg_id, m.ts, m.body"
    " FROM messages m WHERE m.conversation_id = ?2 AND m.seq > ?3 AND m.seq <= ?5 ORDER BY m.seq LIMIT ?4)"
)


def _sqlite_columns(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    """``messages_after_one`` on SQLite: (seqs, senders, client ids, times, the bodies' JSON array, None)."""
    seqs_json, senders, ids, tss, bodies = conn.execute(_SQLITE_SYNC_COLUMNS, args).fetchone()
    seqs = _json_decode_ints(seqs_json)
    if not seqs:
        return [([], [], [], [], b"[]", None)]
    return [(seqs, _json_decode_ints(senders), _json_decode_strs(ids), _json_decode_ints(tss), bodies, None)]


def _sqlite_after_each(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    """The pages of several conversations in order, up to ``limit`` rows in all: a statement per conversation."""
    user_id, conversations, starts, limit, untils = args
    rows: list[Any] = []
    for conversation_id, start, until in zip(conversations, starts, untils, strict=True):
        rows.extend(conn.execute("SELECT m.conversation_id, " + _SQLITE_SYNC_ROWS,
                                 (user_id, conversation_id, start, limit - len(rows), until)).fetchall())
        if len(rows) >= limit:
            break
    return rows


_SQLITE_BEFORE: Final = (f"SELECT {_visible('?1')} FROM messages m WHERE m.conversation_id = ?2 AND m.seq < ?3"
                         " AND m.seq > ?4 ORDER BY m.seq DESC LIMIT ?5")


def _sqlite_before_each(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    """Up to ``limit`` messages of each conversation before its seq and after its floor, newest first."""
    user_id, conversations, befores, floors, limit = args
    rows: list[Any] = []
    for conversation_id, before, floor in zip(conversations, befores, floors, strict=True):
        rows.extend(conn.execute(_SQLITE_BEFORE, (user_id, conversation_id, before, floor, limit)).fetchall())
    return rows


def _sqlite_store_messages(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    """``store_messages`` on SQLite: one executemany per table (PostgreSQL does it in one statement). The search
    documents go to the backlog, which the writer indexes in bulk (search.flush_backlog)."""
    conn.executemany(SQLITE["advance_conversations"].sql, zip(*args[0:3], strict=True))
    inserted = conn.executemany(_SQLITE_INSERT_MESSAGE, zip(*args[3:9], strict=True)).rowcount
    conn.executemany(_SQLITE_QUEUE_SEARCH,
                     [(text, c, seq) for c, seq, text in zip(args[3], args[4], args[9], strict=True) if text])
    conn.executemany(_SQLITE_INSERT_MEMBER, zip(*args[10:13], strict=True))
    conn.executemany(SQLITE["mark_sender_read"].sql, zip(*args[13:16], strict=True))
    return [(inserted,)]


_SQLITE_QUEUE_SEARCH: Final = "INSERT INTO search_backlog (text, conversation_id, seq) VALUES (?1, ?2, ?3)"

_SQLITE_INSERT_MESSAGE: Final = (
    "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body)"
    " VALUES (?1, ?2, ?3, ?4, ?5, CAST(?6 AS TEXT))"
)
_SQLITE_INSERT_MEMBER: Final = (
    "INSERT INTO members (conversation_id, user_id, read_seq, delivered_seq) VALUES (?1, ?2, ?3, ?3)"
    " ON CONFLICT DO NOTHING"
)


def _conversation_list(me: str, before_ts: str, before_id: str, limit: str) -> str:
    """One page of a user's conversation list in one statement, in either dialect (placeholders as arguments). The
    page is cut first, on the members and conversations rows alone, so that the last message, the group, the
    "hidden" check and the 1:1 peer's cursors and name are looked up for the page's rows only, not for every
    conversation of the user. The peer is the conversation's other member, or the user in their own ``d:<id>:<id>``.
    A deleted peer has no name (their row keeps a placeholder that must not be shown)."""
    return (
        "WITH page AS (SELECT c.conversation_id, c.kind, c.last_seq, c.last_ts, me.delivered_seq, me.read_seq,"
        " me.joined_seq"
        " FROM members me JOIN conversations c ON c.conversation_id = me.conversation_id"
        f" WHERE me.user_id = {me} AND c.kind <> 'self' AND ({before_ts} IS NULL OR c.last_ts < {before_ts}"
        f" OR (c.last_ts = {before_ts} AND {before_id} <> '' AND c.conversation_id > {before_id}))"
        f" ORDER BY c.last_ts DESC, c.conversation_id LIMIT {limit})"
        " SELECT p.conversation_id, p.kind, p.last_seq, p.last_ts, p.delivered_seq, p.read_seq,"
        " coalesce(g.name, ''), coalesce(g.group_id, 0), m.sender, m.client_msg_id, m.ts, m.body,"
        f" EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = {me} AND h.conversation_id = m.conversation_id"
        " AND h.seq = m.seq),"
        " peer.delivered_seq, peer.read_seq, CASE WHEN u.deleted_at > 0 THEN '' ELSE u.username END, p.joined_seq"
        " FROM page p LEFT JOIN groups g ON g.conversation_id = p.conversation_id"
        " LEFT JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq = p.last_seq"
        " LEFT JOIN members peer ON p.kind = 'direct' AND peer.conversation_id = p.conversation_id"
        f" AND (peer.user_id <> {me} OR p.conversation_id = 'd:' || {me} || ':' || {me})"
        " LEFT JOIN users u ON u.user_id = peer.user_id"
        " ORDER BY p.last_ts DESC, p.conversation_id"
    )


def _pg_lock_conversations(ids: str) -> str:
    """The conversations ``ids`` (a placeholder), locked in id order: their (conversation_id, last_seq)."""
    return (f"SELECT conversation_id, last_seq FROM conversations WHERE conversation_id = ANY({ids}::text[])"
            " ORDER BY conversation_id FOR UPDATE")


def _pg_recipient_facts(recipients: str, senders: str) -> str:
    """(recipient, sender, blocks, refuses) of each existing recipient towards its sender (placeholders)."""
    return (
        "SELECT u.user_id, k.sender,"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = k.sender) AS blocks,"
        " u.only_contacts AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id"
        " AND c.peer_id = k.sender AND c.state = 'accepted') AS refuses"
        f" FROM unnest({recipients}::bigint[], {senders}::bigint[]) AS k(recipient, sender)"
        " JOIN users u ON u.user_id = k.recipient AND u.deleted_at = 0"
    )


_SQLITE_ORIGINALS: Final = Statement(
    "SELECT m.sender, m.client_msg_id, m.conversation_id, m.seq, m.ts, m.body, m.state FROM json_each(?1) j"
    " JOIN messages m ON m.sender = j.value ->> 0 AND m.client_msg_id = j.value ->> 1",
    rows=True,
)


def _sqlite_append_facts(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    """``append_facts`` on SQLite: a statement per kind of fact (the writer holds the database lock already), each
    row in the layout of the PostgreSQL statement."""
    senders, client_ids, recipients, recipient_senders, conversations = args

    def read(statement: Statement, *columns: Sequence[Any]) -> Any:
        return conn.execute(statement.sql, bind(statement, columns))

    rows: list[Any] = [("o", c, s, None, m, seq, ts, body, state, None, None)
                       for s, m, c, seq, ts, body, state in read(_SQLITE_ORIGINALS, senders, client_ids)]
    if recipients:
        rows += [("r", None, r, s, None, None, None, None, None, blocks, refuses) for r, s, blocks, refuses in
                 read(SQLITE["recipient_facts"], recipients, recipient_senders)]
    rows += [("c", c, None, None, None, last_seq, None, None, None, None, None) for c, last_seq in
             read(SQLITE["lock_conversations"], conversations)]
    return rows


SQLITE: Final[Dialect] = {
    # The writer thread holds the database's write lock for the whole transaction: reading is locking.
    "lock_conversations": Statement(
        "SELECT c.conversation_id, c.last_seq FROM json_each(?1) j"
        " JOIN conversations c ON c.conversation_id = j.value"
    ),
    "append_facts": Statement(None, run=lambda conn, args: _sqlite_append_facts(conn, args)),
    "recipient_facts": Statement(
        "SELECT u.user_id, j.value ->> 1,"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = j.value ->> 1),"
        " u.only_contacts AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id"
        " AND c.peer_id = j.value ->> 1 AND c.state = 'accepted')"
        " FROM json_each(?1) j JOIN users u ON u.user_id = j.value ->> 0 AND u.deleted_at = 0",
        rows=True,
    ),
    "group_senders": Statement(
        "SELECT m.conversation_id, m.user_id, m.role, m.muted, g.muted_all, g.dissolved, g.members_version"
        " FROM json_each(?1) j"
        " JOIN members m ON m.conversation_id = j.value ->> 0 AND m.user_id = j.value ->> 1"
        " JOIN groups g ON g.conversation_id = m.conversation_id",
        rows=True,
    ),
    "create_direct_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?1, 'direct', 0, ?2, ?2) ON CONFLICT DO NOTHING"
    ),
    "create_self_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?1, 'self', 0, ?2, ?2) ON CONFLICT DO NOTHING"
    ),
    "advance_conversations": Statement(
        "UPDATE conversations SET last_seq = ?2, last_ts = ?3 WHERE conversation_id = ?1"
    ),
    "insert_messages": Statement(_SQLITE_INSERT_MESSAGE, pick=(0, 1, 2, 3, 4, 5)),
    "store_messages": Statement(None, run=lambda conn, args: _sqlite_store_messages(conn, args)),
    "index_search": Statement("INSERT INTO messages_fts (text, conversation_id, seq) VALUES (?1, ?2, ?3)"),
    "unindex_search": Statement("DELETE FROM messages_fts WHERE conversation_id = ?1 AND seq = ?2"),
    "unqueue_search": Statement("DELETE FROM search_backlog WHERE conversation_id = ?1 AND seq = ?2"),
    "insert_members": Statement(
        "INSERT INTO members (conversation_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
    ),
    # Sending marks the conversation read (and received) up to the sender's own message.
    "mark_sender_read": Statement(
        "UPDATE members SET read_seq = max(read_seq, ?3), delivered_seq = max(delivered_seq, ?3)"
        " WHERE conversation_id = ?1 AND user_id = ?2"
    ),
    "find_original_message": Statement(
        "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
        " WHERE sender = ?1 AND client_msg_id = ?2"
    ),
    "member_state": Statement(
        "SELECT m.joined_seq, g.dissolved FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ?1 AND m.user_id = ?2"
    ),
    "member_range": Statement(
        "SELECT m.joined_seq, c.last_seq FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ?1 AND m.user_id = ?2"
    ),
    "message_for_event": Statement(
        "SELECT sender, ts, state, body FROM messages WHERE conversation_id = ?1 AND seq = ?2"
    ),
    "change_message": Statement(
        "UPDATE messages SET state = ?3, body = CAST(?4 AS TEXT) WHERE conversation_id = ?1 AND seq = ?2",
        pick=(0, 1, 2, 3),
    ),
    "later_messages_of": Statement(
        "SELECT seq, body FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND sender = ?3"
    ),
    "replace_bodies": Statement(
        "UPDATE messages SET body = CAST(?3 AS TEXT) WHERE conversation_id = ?1 AND seq = ?2"
    ),
    "insert_hidden": Statement(
        "INSERT INTO hidden (user_id, conversation_id, seq) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
    ),
    "advance_delivered": Statement(
        "UPDATE members SET delivered_seq = min(?3, c.last_seq) FROM conversations c"
        " WHERE c.conversation_id = members.conversation_id AND members.conversation_id = ?1"
        " AND members.user_id = ?2 AND members.delivered_seq < min(?3, c.last_seq)"
        " RETURNING members.delivered_seq"
    ),
    "advance_read": Statement(
        "UPDATE members SET read_seq = min(?3, c.last_seq), delivered_seq = max(delivered_seq, min(?3, c.last_seq))"
        " FROM conversations c WHERE c.conversation_id = members.conversation_id"
        " AND members.conversation_id = ?1 AND members.user_id = ?2 AND members.read_seq < min(?3, c.last_seq)"
        " RETURNING members.read_seq, members.delivered_seq"
    ),
    "messages_after": Statement(_SQLITE_AFTER),
    "messages_before": Statement(
        f"SELECT {_visible('?1')} FROM messages m WHERE m.conversation_id = ?2 AND m.seq > ?3 AND m.seq < ?4"
        " ORDER BY m.seq DESC LIMIT ?5"
    ),
    "memberships": Statement(
        "SELECT m.conversation_id, m.joined_seq, c.last_seq FROM members m"
        " JOIN conversations c ON c.conversation_id = m.conversation_id WHERE m.user_id = ?1 ORDER BY m.conversation_id"
    ),
    "messages_after_each": Statement(None, run=_sqlite_after_each),
    "messages_after_one": Statement(None, run=_sqlite_columns),
    "sync_hidden": Statement(
        "SELECT h.conversation_id, h.seq FROM json_each(?1) j JOIN hidden h ON h.user_id = j.value ->> 0"
        " AND h.conversation_id = j.value ->> 1 AND h.seq > j.value ->> 2 AND h.seq <= j.value ->> 3",
        rows=True,
    ),
    "messages_before_each": Statement(_SQLITE_BEFORE, run=_sqlite_before_each),
    "member_cursors": Statement(
        "SELECT user_id, role, muted, joined_seq, delivered_seq, read_seq FROM members"
        " WHERE conversation_id = ?1 ORDER BY user_id"
    ),
    "member_ids": Statement("SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY user_id"),
    "conversation_list": Statement(_conversation_list("?1", "?2", "?3", "?4")),
}


POSTGRES: Final[Dialect] = {
    "lock_conversations": Statement(_pg_lock_conversations("$1")),
    # A row per fact, of three kinds, in one layout: (kind, conversation_id, user, peer, client_msg_id, seq, ts, body,
    # state, blocks, refuses). 'o', an original: its sender as user, its client id, conversation, seq, ts, body and
    # state. 'r', a recipient: the recipient as user, the sender as peer, blocks and refuses. 'c', a conversation
    # locked: its id and last seq. The locks are taken in a CTE (a locking clause cannot stand in a UNION).
    "append_facts": Statement(
        f"WITH locked AS MATERIALIZED ({_pg_lock_conversations('$5')}),"
        f" recipient AS ({_pg_recipient_facts('$3', '$4')})"
        " SELECT 'o', m.conversation_id, m.sender, NULL::bigint, m.client_msg_id, m.seq, m.ts, m.body, m.state,"
        " NULL::boolean, NULL::boolean FROM unnest($1::bigint[], $2::text[]) AS k(sender, client_msg_id)"
        " JOIN messages m ON m.sender = k.sender AND m.client_msg_id = k.client_msg_id"
        " UNION ALL SELECT 'r', NULL, r.user_id, r.sender, NULL, NULL, NULL, NULL, NULL, r.blocks, r.refuses"
        " FROM recipient r"
        " UNION ALL SELECT 'c', l.conversation_id, NULL, NULL, NULL, l.last_seq, NULL, NULL, NULL, NULL, NULL"
        " FROM locked l"
    ),
    "recipient_facts": Statement(_pg_recipient_facts("$1", "$2")),
    "group_senders": Statement(
        "SELECT m.conversation_id, m.user_id, m.role, m.muted, g.muted_all, g.dissolved, g.members_version"
        " FROM unnest($1::text[], $2::bigint[]) AS k(conversation_id, user_id)"
        " JOIN members m ON m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
        " JOIN groups g ON g.conversation_id = m.conversation_id"
    ),
    # In id order, as the locks are taken: two nodes creating the same conversations wait for each other in order.
    "create_direct_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " SELECT k.conversation_id, 'direct', 0, k.ts, k.ts FROM unnest($1::text[], $2::bigint[])"
        " AS k(conversation_id, ts) ORDER BY k.conversation_id ON CONFLICT DO NOTHING"
    ),
    "create_self_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " SELECT k.conversation_id, 'self', 0, k.ts, k.ts FROM unnest($1::text[], $2::bigint[])"
        " AS k(conversation_id, ts) ON CONFLICT DO NOTHING"
    ),
    "advance_conversations": Statement(
        "UPDATE conversations c SET last_seq = k.seq, last_ts = k.ts"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(conversation_id, seq, ts)"
        " WHERE c.conversation_id = k.conversation_id"
    ),
    # A batch's writes in one statement (one round trip while the conversations' locks are held). A client id
    # committed meanwhile by another transaction is skipped (ON CONFLICT waits for that transaction): the batch sees
    # fewer rows inserted than planned and runs again. The statements of one WITH see one snapshot: a member row
    # inserted here is invisible to the UPDATE beside it, so new members carry their read cursor in the insert.
    "store_messages": Statement(
        "WITH advanced AS (UPDATE conversations c SET last_seq = k.seq, last_ts = k.ts"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(conversation_id, seq, ts)"
        " WHERE c.conversation_id = k.conversation_id),"
        " inserted AS (INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body, search)"
        " SELECT k.c, k.s, k.u, k.m, k.t, k.b, k.f::tsvector"
        " FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bytea[], $10::text[])"
        " AS k(c, s, u, m, t, b, f) ON CONFLICT (sender, client_msg_id) DO NOTHING RETURNING 1),"
        " joined AS (INSERT INTO members (conversation_id, user_id, read_seq, delivered_seq)"
        " SELECT k.c, k.u, k.s, k.s FROM unnest($11::text[], $12::bigint[], $13::bigint[]) AS k(c, u, s)"
        " ON CONFLICT DO NOTHING),"
        " marked AS (UPDATE members m SET read_seq = greatest(m.read_seq, k.seq),"
        " delivered_seq = greatest(m.delivered_seq, k.seq)"
        " FROM unnest($14::text[], $15::bigint[], $16::bigint[]) AS k(conversation_id, user_id, seq)"
        " WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id)"
        " SELECT count(*) FROM inserted"
    ),
    "insert_messages": Statement(
        "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body, search)"
        " SELECT k.c, k.s, k.u, k.m, k.t, k.b, k.f::tsvector"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bytea[], $7::text[])"
        " AS k(c, s, u, m, t, b, f) ON CONFLICT (sender, client_msg_id) DO NOTHING"
    ),
    "index_search": Statement(None),
    "unindex_search": Statement(None),
    "unqueue_search": Statement(None),
    "insert_members": Statement(
        "INSERT INTO members (conversation_id, user_id) SELECT * FROM unnest($1::text[], $2::bigint[])"
        " ON CONFLICT DO NOTHING"
    ),
    "mark_sender_read": Statement(
        "UPDATE members m SET read_seq = greatest(m.read_seq, k.seq), delivered_seq = greatest(m.delivered_seq, k.seq)"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(conversation_id, user_id, seq)"
        " WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
    ),
    "find_original_message": Statement(
        "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
        " WHERE sender = $1 AND client_msg_id = $2"
    ),
    "member_state": Statement(
        "SELECT m.joined_seq, g.dissolved FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = $1 AND m.user_id = $2"
    ),
    "member_range": Statement(
        "SELECT m.joined_seq, c.last_seq FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = $1 AND m.user_id = $2"
    ),
    "message_for_event": Statement(
        "SELECT sender, ts, state, body FROM messages WHERE conversation_id = $1 AND seq = $2"
    ),
    "change_message": Statement(
        "UPDATE messages m SET state = k.state, body = k.body, search = k.search::tsvector"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[])"
        " AS k(conversation_id, seq, state, body, search)"
        " WHERE m.conversation_id = k.conversation_id AND m.seq = k.seq"
    ),
    "later_messages_of": Statement(
        "SELECT seq, body FROM messages WHERE conversation_id = $1 AND seq > $2 AND sender = $3"
    ),
    "replace_bodies": Statement(
        "UPDATE messages m SET body = k.body FROM unnest($1::text[], $2::bigint[], $3::bytea[])"
        " AS k(conversation_id, seq, body) WHERE m.conversation_id = k.conversation_id AND m.seq = k.seq"
    ),
    "insert_hidden": Statement(
        "INSERT INTO hidden (user_id, conversation_id, seq)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING"
    ),
    "advance_delivered": Statement(
        "UPDATE members m SET delivered_seq = least($3::bigint, c.last_seq) FROM conversations c"
        " WHERE c.conversation_id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2"
        " AND m.delivered_seq < least($3::bigint, c.last_seq) RETURNING m.delivered_seq"
    ),
    "advance_read": Statement(
        "UPDATE members m SET read_seq = least($3::bigint, c.last_seq),"
        " delivered_seq = greatest(m.delivered_seq, least($3::bigint, c.last_seq))"
        " FROM conversations c WHERE c.conversation_id = m.conversation_id"
        " AND m.conversation_id = $1 AND m.user_id = $2 AND m.read_seq < least($3::bigint, c.last_seq)"
        " RETURNING m.read_seq, m.delivered_seq"
    ),
    "messages_after": Statement(
        f"SELECT {_visible('$1')} FROM messages m WHERE m.conversation_id = $2 AND m.seq > $3 ORDER BY m.seq LIMIT $4"
    ),
    "messages_before": Statement(
        f"SELECT {_visible('$1')} FROM messages m WHERE m.conversation_id = $2 AND m.seq > $3 AND m.seq < $4"
        " ORDER BY m.seq DESC LIMIT $5"
    ),
    "memberships": Statement(
        "SELECT m.conversation_id, m.joined_seq, c.last_seq FROM members m"
        " JOIN conversations c ON c.conversation_id = m.conversation_id WHERE m.user_id = $1 ORDER BY m.conversation_id"
    ),
    # One row of columns, as on SQLite (arrays asyncpg decodes in C, the bodies as one JSON array), with the
    # "hidden for the reader" flags. No ORDER BY inside the aggregates: PostgreSQL 15 sorts each one's input again
    # (six sorts a page); they follow the ordered subquery, which ``sync_after`` checks, as on SQLite.
    "messages_after_one": Statement(
        "SELECT coalesce(array_agg(p.seq), '{}'), array_agg(p.sender), array_agg(p.client_msg_id), array_agg(p.ts),"
        " '['::bytea || string_agg(p.body, ','::bytea) || ']'::bytea, array_agg(p.hidden)"
        f" FROM (SELECT m.seq, m.sender, m.client_msg_id, m.ts, m.body, {_hidden_for('$1')} AS hidden"
        " FROM messages m WHERE m.conversation_id = $2 AND m.seq > $3 AND m.seq <= $5 ORDER BY m.seq LIMIT $4) p"
    ),
    "sync_hidden": Statement(None),  # the sync statements' rows say it (the last column)
    "messages_after_each": Statement(
        "SELECT v.* FROM unnest($2::text[], $3::bigint[], $5::bigint[]) AS p(conversation_id, start, until)"
        f" CROSS JOIN LATERAL (SELECT {_visible('$1')} FROM messages m WHERE m.conversation_id = p.conversation_id"
        " AND m.seq > p.start AND m.seq <= p.until ORDER BY m.seq LIMIT $4) v ORDER BY v.conversation_id, v.seq"
        " LIMIT $4"
    ),
    "messages_before_each": Statement(
        "SELECT v.* FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS p(conversation_id, before, floor)"
        f" CROSS JOIN LATERAL (SELECT {_visible('$1')} FROM messages m WHERE m.conversation_id = p.conversation_id"
        " AND m.seq < p.before AND m.seq > p.floor ORDER BY m.seq DESC LIMIT $5) v"
        " ORDER BY v.conversation_id, v.seq DESC"
    ),
    "member_cursors": Statement(
        "SELECT user_id, role, muted, joined_seq, delivered_seq, read_seq FROM members"
        " WHERE conversation_id = $1 ORDER BY user_id"
    ),
    "member_ids": Statement("SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY user_id"),
    "conversation_list": Statement(_conversation_list("$1", "$2::bigint", "$3", "$4")),
}

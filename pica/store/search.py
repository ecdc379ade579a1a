"""Full-text search in both dialects: what is indexed, the query, the filters, and rebuilding the index.

Tokens come from :mod:`pica.protocol.tokens` alone, at index time and at query time: a message's *document* (its
tokens, space-separated, then kind markers) is what SQLite's FTS5 table holds (its ``ascii`` tokenizer splits on
spaces only) and what PostgreSQL's ``tsvector`` holds (a literal of the same lexemes with their positions; PostgreSQL's
own parser, ``to_tsvector``, would split words by its locale and parser rules). Queries are built from the same
phrases: FTS5 quoted phrases, PostgreSQL a ``tsquery`` literal of quoted lexemes joined by ``<->``; no user text is
ever parsed as query syntax. So both stores find the same messages, and return them in the same order (newest
first); ranking by relevance happens above the store, on that list (:mod:`pica.core.chat`).

Rebuilding: the index records the tokenizer version it was built with (``search_index``, migration 0007). A store
whose index is older rebuilds it when it opens, and ``pica search reindex`` rebuilds it on demand, in batches of
messages in key order, each its own transaction, so appends go on meanwhile (they index with the current tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from pica.errors import BadRequest
from pica.protocol.tokens import KIND_MARKERS, Phrase, document, query_phrases, query_words
from pica.store.base import MessageRecord
from pica.store.messages import message_row
from pica.store.txn import Dialect, Read, Statement, Txn, Write

TOKENIZER_VERSION: Final = 1
"""Bump with any change to :mod:`pica.protocol.tokens` that changes documents: stores rebuild their index at open."""
REINDEX_BATCH: Final = 2000
"""Messages per rebuilding transaction: short enough not to hold the writer (or a row range) for long."""

_MAX_LEXEME_BYTES: Final = 2047
"""PostgreSQL refuses longer lexemes; such a token cannot be searched for anyway (a query is 200 characters)."""
_MAX_POSITION: Final = 16383
"""Highest position a tsvector stores; PostgreSQL clamps beyond it (phrases that far into a text may then miss)."""

_json_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """What narrows a search besides its words (docs/protocol.md section 15); None: any."""

    conversation_id: str | None = None
    sender: int | None = None
    since: int | None = None
    """Sent at or after this time (ms since the epoch)."""
    until: int | None = None
    """Sent before this time."""


def phrases(query: str, kind: str | None) -> list[Phrase]:
    """The phrases a search requires: its words', then the kind marker. Raises BadRequest for a query out of bounds.
    Empty when no word holds a token (nothing can match)."""
    if kind is not None and kind not in KIND_MARKERS:
        raise BadRequest(f"kind must be one of: {', '.join(KIND_MARKERS)}")
    found = query_phrases(query_words(query))
    if found and kind is not None:
        found.append(Phrase((KIND_MARKERS[kind],)))
    return found


# ------------------------------------------------------------------------------------------------ dialects' values


def fts5_query(phrases: Sequence[Phrase]) -> str | None:
    """FTS5: every phrase required, each quoted (tokens hold no quote: letters, digits and markers), the last term a
    prefix, all in the ``text`` column (``conversation_id`` is indexed too, see ``_sqlite_search``)."""
    if not phrases:
        return None
    return "text : (" + " ".join('"' + " ".join(p.terms) + '"*' for p in phrases) + ")"


def tsvector_literal(text: str) -> str | None:
    """PostgreSQL: the ``tsvector`` input for a document (``text``); None when there is nothing to index."""
    if not text:
        return None
    found = text.split(" ")
    if len(text) > _MAX_LEXEME_BYTES // 4:  # only a document this long can hold a token over the limit
        found = [token if len(token.encode()) <= _MAX_LEXEME_BYTES else "" for token in found]
    # Tokens hold letters, digits and the markers' underscore, never a quote or a backslash: nothing to escape.
    parts = [f"'{token}':{min(position, _MAX_POSITION)}" for position, token in enumerate(found, 1) if token]
    return " ".join(parts) or None


def tsquery_literal(phrases: Sequence[Phrase]) -> str | None:
    """PostgreSQL: every phrase required, its terms adjacent (``<->``), the last term a prefix (``:*``)."""
    terms = []
    for phrase in phrases:
        lexemes = [f"'{term}'" for term in phrase.terms]
        lexemes[-1] += ":*"
        terms.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
    return " & ".join(terms) or None


# ------------------------------------------------------------------------------------------------ transactions


def search(user_id: int, terms: str | None, where: SearchFilter, window: int) -> Txn[list[MessageRecord]]:
    """The ``window`` newest matches (by ts, then seq) the user may see. ``terms``: the dialect's query (None:
    nothing can match)."""
    if terms is None:
        return []
    rows = yield Read("search_messages", (user_id, terms, where.conversation_id, where.sender, where.since,
                                          where.until, window))
    return [message_row(r) for r in rows]


def index_version() -> Txn[int]:
    rows = yield Read("search_index_version")
    return int(rows[0][0]) if rows else 0


def clear_index() -> Txn[None]:
    """Forget every indexed document, and those waiting for the index (SQLite; PostgreSQL overwrites each row's
    value as it goes): the rebuild reads every message."""
    yield Write("clear_search_index", ([0],))
    yield Write("clear_search_backlog", ([0],))


def flush_backlog() -> Txn[None]:
    """The search backlog (SQLite): index the documents of the messages committed since the last flush, in one
    transaction, so that FTS5 writes one segment for all of them. A message deleted meanwhile is left out; an edit
    or a recall already took its message's row out of the backlog (messages.apply_event). Run by the writer every
    ``sqlite.search_delay_ms`` while messages come in, and before every search, so that a search finds every
    message acked before it. Nothing to do on PostgreSQL."""
    yield Write("index_search_backlog", ([0],))
    yield Write("clear_search_backlog", ([0],))


def flush_backlog_part(limit: int, merge_pages: int) -> Txn[bool]:
    """At most ``limit`` documents of the search backlog indexed in one transaction (the first in key order), then
    up to ``merge_pages`` pages of FTS5 segment merging, and whether more documents may wait. The writer's rounds
    (sqlite_writer.write_loop): a transaction holds every send waiting on the writer, so a round is kept to about a
    millisecond, merging included (FTS5's own automatic merging, in quanta of hundreds of pages, is off: migration
    0018). A search still flushes the whole backlog (:func:`flush_backlog`)."""
    yield Write("index_search_backlog_part", ([limit],))
    cleared = yield Write("clear_search_backlog_part", ([limit],))
    if merge_pages:
        yield Write("merge_search_index", ([merge_pages],))
    return bool(cleared >= limit)


def reindex_batch(after: tuple[str, int], limit: int,
                  value: Callable[[str], str | None]) -> Txn[tuple[int, tuple[str, int] | None]]:
    """Index the ``limit`` messages after key ``after`` afresh: (how many were read, the last key, or None at the
    end). ``value``: the dialect's search value of a document."""
    rows = yield Read("messages_to_index", (after[0], after[1], limit))
    if not rows:
        return 0, None
    keys = [(row[0], row[1]) for row in rows]
    values = [None if row[2] == "recalled" else value(document(_json_decode_body(row[3]))) for row in rows]
    yield Write("reindex_messages", (values, [k[0] for k in keys], [k[1] for k in keys]))
    return len(rows), keys[-1]


def mark_index(version: int) -> Txn[None]:
    yield Write("mark_search_index", ([version],))


# ------------------------------------------------------------------------------------------------ SQL
# SQLite's FTS5 rows are keyed by (conversation_id, seq), not by rowid: a rebuild running beside appends or edits can
# index a message twice, so the search reads DISTINCT rows (a duplicate is an identical row).
#
# FTS5 also indexes ``conversation_id`` (as the tokens of the id, ``d:1:2`` → ``d 1 2``), so that the match itself
# can be narrowed to the caller's conversations: otherwise a common word matches a large share of every message
# stored, each of which costs lookups before the membership join drops it (bench/search.py: about 1 s at a million
# messages). The narrowing is an accelerator only; the joins below stay the authorization. Beyond
# _SQLITE_SCOPE_MAX conversations the OR of their ids costs more than it saves, and the match is left unnarrowed.

_SQLITE_SCOPE_MAX: Final = 500

_SQLITE_SEARCH: Final = (
    "SELECT DISTINCT m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body FROM messages_fts f"
    " JOIN members mem ON mem.conversation_id = f.conversation_id AND mem.user_id = ?1"
    " JOIN messages m ON m.conversation_id = f.conversation_id AND m.seq = f.seq"
    " WHERE messages_fts MATCH ?2 AND f.seq > mem.joined_seq AND m.state <> 'recalled'"
    " AND (?3 IS NULL OR f.conversation_id = ?3) AND (?4 IS NULL OR m.sender = ?4)"
    " AND (?5 IS NULL OR m.ts >= ?5) AND (?6 IS NULL OR m.ts < ?6)"
    " AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ?1"
    " AND h.conversation_id = f.conversation_id AND h.seq = f.seq)"
    " ORDER BY m.ts DESC, m.seq DESC LIMIT ?7"
)



def _sqlite_search(conn: Any, args: tuple[Any, ...]) -> list[Any]:
    user_id, terms, conversation_id = args[0], args[1], args[2]
    if conversation_id is not None:
        scope = [conversation_id]
    else:
        scope = [row[0] for row in conn.execute(
            "SELECT conversation_id FROM members WHERE user_id = ?1 LIMIT ?2", (user_id, _SQLITE_SCOPE_MAX + 1))]
        if not scope:
            return []
    if len(scope) <= _SQLITE_SCOPE_MAX:
        # Conversation ids are made by the server and checked when a client names one: no quote in them.
        terms = f"{terms} AND conversation_id : (" + " OR ".join(f'"{c}"' for c in scope) + ")"
    return list(conn.execute(_SQLITE_SEARCH, (user_id, terms, *args[2:])).fetchall())


SQLITE: Final[Dialect] = {
    "search_messages": Statement(_SQLITE_SEARCH, run=_sqlite_search),
    "search_index_version": Statement("SELECT version FROM search_index"),
    "clear_search_index": Statement("DELETE FROM messages_fts WHERE ?1 = 0"),
    "index_search_backlog": Statement(
        "INSERT INTO messages_fts (text, conversation_id, seq) SELECT b.text, b.conversation_id, b.seq"
        " FROM search_backlog b JOIN messages m ON m.conversation_id = b.conversation_id AND m.seq = b.seq"
        " WHERE ?1 = 0"
    ),
    "clear_search_backlog": Statement("DELETE FROM search_backlog WHERE ?1 = 0"),
    # The same rows for both: the first `limit` in key order, read twice in one transaction that nothing else
    # writes meanwhile (the writer runs it).
    "index_search_backlog_part": Statement(
        "INSERT INTO messages_fts (text, conversation_id, seq) SELECT b.text, b.conversation_id, b.seq"
        " FROM (SELECT conversation_id, seq, text FROM search_backlog ORDER BY conversation_id, seq LIMIT ?1) b"
        " JOIN messages m ON m.conversation_id = b.conversation_id AND m.seq = b.seq"
    ),
    "clear_search_backlog_part": Statement(
        "DELETE FROM search_backlog WHERE (conversation_id, seq) IN"
        " (SELECT conversation_id, seq FROM search_backlog ORDER BY conversation_id, seq LIMIT ?1)"
    ),
    # Positive: merges only while a level holds 'usermerge' (4) segments or more, so it never does work for nothing.
    "merge_search_index": Statement("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?1)"),
    "messages_to_index": Statement(
        "SELECT conversation_id, seq, state, body FROM messages WHERE (conversation_id, seq) > (?1, ?2)"
        " ORDER BY conversation_id, seq LIMIT ?3"
    ),
    "reindex_messages": Statement(
        "INSERT INTO messages_fts (text, conversation_id, seq) SELECT ?1, ?2, ?3 WHERE ?1 IS NOT NULL"
    ),
    "mark_search_index": Statement("UPDATE search_index SET version = ?1"),
}

POSTGRES: Final[Dialect] = {
    "search_messages": Statement(
        "SELECT m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body FROM messages m"
        " JOIN members mem ON mem.conversation_id = m.conversation_id AND mem.user_id = $1"
        " WHERE m.search @@ $2::text::tsquery AND m.seq > mem.joined_seq AND m.state <> 'recalled'"
        " AND ($3::text IS NULL OR m.conversation_id = $3) AND ($4::bigint IS NULL OR m.sender = $4)"
        " AND ($5::bigint IS NULL OR m.ts >= $5) AND ($6::bigint IS NULL OR m.ts < $6)"
        " AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = $1"
        " AND h.conversation_id = m.conversation_id AND h.seq = m.seq)"
        " ORDER BY m.ts DESC, m.seq DESC LIMIT $7"
    ),
    "search_index_version": Statement("SELECT version FROM search_index"),
    "clear_search_index": Statement(None),
    "index_search_backlog": Statement(None),
    "clear_search_backlog": Statement(None),
    "index_search_backlog_part": Statement(None),
    "clear_search_backlog_part": Statement(None),
    "merge_search_index": Statement(None),
    # Locked, so that an edit or recall committing meanwhile waits for this batch rather than have its new value
    # overwritten by one computed from the body read before it (the batch takes no conversation lock: no deadlock).
    "messages_to_index": Statement(
        "SELECT conversation_id, seq, state, body FROM messages WHERE (conversation_id, seq) > ($1, $2)"
        " ORDER BY conversation_id, seq LIMIT $3 FOR UPDATE"
    ),
    "reindex_messages": Statement(
        "UPDATE messages m SET search = k.f::tsvector FROM unnest($1::text[], $2::text[], $3::bigint[])"
        " AS k(f, c, s) WHERE m.conversation_id = k.c AND m.seq = k.s"
    ),
    "mark_search_index": Statement("UPDATE search_index SET version = ($1::integer[])[1]"),
}

"""Search results: ranked, paged and highlighted, the same way whichever store found them.

The store returns the ``WINDOW`` newest matches (by ts, then seq; identical on SQLite and PostgreSQL). They are
ranked here, by one rule both stores therefore share: first by relevance tier, the number of query words the
message holds as whole words (``meeting`` found by ``meeting`` ranks above one found by ``meet`` as a prefix only),
then newest first. Engine scores (FTS5's bm25, PostgreSQL's ts_rank) are left out on purpose: they differ between
the engines, and in a chat the newest message is usually the one looked for. A page is a slice of that ranking at
an ``offset``; older matches beyond the window are reached with ``until`` (docs/protocol.md section 15).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pica.protocol.tokens import Phrase, highlights, query_phrases, query_words, relevance, searchable_parts
from pica.store.base import MessageRecord

WINDOW: Final = 200
"""Matches ranked per search: the most a search can page through (``offset + limit``)."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    message: MessageRecord
    text: list[tuple[int, int]]
    """Matched spans of ``body.text`` (code-point offsets, [start, end))."""
    name: list[tuple[int, int]]
    """Matched spans of the file's or image's ``name``."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    next_offset: int | None
    """The ``offset`` of the next page; None when this page is the last."""


def phrases_of(query: str) -> list[Phrase]:
    """The query's phrases (raises BadRequest for a query out of bounds, before the store is asked)."""
    return query_phrases(query_words(query))


def rank_page(found: Sequence[MessageRecord], phrases: Sequence[Phrase], offset: int, limit: int) -> SearchPage:
    """The page at ``offset`` of ``found`` (newest first) ranked by relevance tier, then recency, highlighted."""
    ranked = sorted(enumerate(found), key=lambda item: (-relevance(item[1].body, phrases), item[0]))
    page = [message for _, message in ranked[offset:offset + limit]]
    more = offset + limit < len(found)
    return SearchPage([_hit(message, phrases) for message in page], offset + limit if more else None)


def _hit(message: MessageRecord, phrases: Sequence[Phrase]) -> SearchHit:
    body = message.body
    text = body.get("text")
    parts = searchable_parts(body)
    name = parts[-1] if len(parts) > (1 if isinstance(text, str) else 0) else None
    return SearchHit(message, highlights(text, phrases) if isinstance(text, str) else [],
                     highlights(name, phrases) if name is not None else [])

"""Full-text search terms. The query rule (1-12 words, at most 200 characters) is :func:`query_words`, for both
dialects; SQLite's FTS5 query is :func:`fts5_query`. The rest is for PostgreSQL, with the semantics of
docs/protocol.md section 15 (the SQLite backend's FTS5 ``unicode61 remove_diacritics 2``): tokens are runs of
Unicode letters and digits, case-folded, diacritics removed; every query word is required and matched as whole tokens
(a word that splits into several tokens, like ``quarterly-report``, matches them as a phrase).

Tokenizing happens here rather than in PostgreSQL: ``to_tsvector`` splits words by the server's locale and parser
rules (hyphenated words, e-mail addresses, URLs), and removing diacritics would need the ``unaccent`` extension.
Instead the store writes a ``tsvector`` literal of ready-made lexemes with their positions and queries with a
``tsquery`` literal of quoted lexemes: no user text is ever parsed as query syntax.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from pica.errors import BadRequest

MAX_QUERY_CHARS: Final = 200
MAX_QUERY_WORDS: Final = 12
_MAX_LEXEME_BYTES: Final = 2047
"""PostgreSQL refuses longer lexemes; such a token cannot be searched for anyway (a query is 200 characters)."""
_MAX_POSITION: Final = 16383
"""Highest position a tsvector stores; PostgreSQL clamps beyond it (phrases that far into a text may then miss)."""

_ASCII_TOKEN: Final = re.compile(r"[a-z0-9]+")
_TOKEN: Final = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """The searchable tokens of a text, in order."""
    if text.isascii():
        return _ASCII_TOKEN.findall(text.lower())
    decomposed = unicodedata.normalize("NFD", text.lower())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _TOKEN.findall(stripped)


def _lexeme(token: str) -> str:
    # Tokens hold letters and digits only, never a quote or a backslash: nothing to escape.
    return f"'{token}'"


def tsvector_literal(text: str) -> str | None:
    """The ``tsvector`` input for a message's searchable text; None when there is nothing to index."""
    if not text:
        return None
    found = tokens(text)
    if len(text) > _MAX_LEXEME_BYTES // 4:  # only a text this long can hold a token over the limit
        found = [token if len(token.encode()) <= _MAX_LEXEME_BYTES else "" for token in found]
    if len(found) > _MAX_POSITION:
        parts = [f"'{token}':{min(position, _MAX_POSITION)}" for position, token in enumerate(found, 1) if token]
    else:
        parts = [f"'{token}':{position}" for position, token in enumerate(found, 1) if token]
    return " ".join(parts) or None


def query_words(query: str) -> list[str]:
    """The words of a search. Raises BadRequest outside 1-12 words or over 200 characters. NUL separates words like
    a space (it would end a string inside FTS5's query parser)."""
    words = query.replace("\x00", " ").split()
    if not words or len(query) > MAX_QUERY_CHARS or len(words) > MAX_QUERY_WORDS:
        raise BadRequest("a search is 1-12 words, at most 200 characters")
    return words


def fts5_query(query: str) -> str:
    """SQLite FTS5: every word required, each quoted, so that user input never reaches FTS5's query syntax."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query_words(query))


def tsquery_literal(query: str) -> str | None:
    """The ``tsquery`` for a search: every word required. None when no word holds a token (nothing can match)."""
    terms = []
    for word in query_words(query):
        found = tokens(word)
        if len(found) == 1:
            terms.append(_lexeme(found[0]))
        elif found:
            terms.append("(" + " <-> ".join(_lexeme(token) for token in found) + ")")
    return " & ".join(terms) or None

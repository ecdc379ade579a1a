"""Search tokens: the one tokenizer of the index, the query and the highlights (docs/protocol.md section 15).

Both stores index the same thing, a *document*: the tokens of a message joined by single spaces, followed by kind
markers. SQLite's FTS5 splits that string on spaces only (its ``ascii`` tokenizer), PostgreSQL receives it as a
``tsvector`` of the same lexemes: the engines never see raw text, so they cannot disagree about words.

Rules, applied character by character to keep each token's span in the original text (for highlighting):

- Han, Hiragana, Katakana and Hangul (*CJK*) are written without spaces between words, so a run of them is indexed
  as overlapping bigrams plus its last character alone: ``明天开会`` gives ``明天 天开 开会 会``. Every character of a
  run thus starts an indexed token, which is how a one-character query matches (as a prefix, below). They are
  NFKC-normalised (half-width katakana become full-width) but never decomposed: ``が`` is not ``か``.
- Other characters are NFKD-decomposed, combining marks dropped and case-folded (``Crème`` → ``creme``, ``Straße`` →
  ``strasse``, ``Ёлка`` → ``елка``); runs of letters and digits are words. Everything else separates tokens,
  including ``_``, so no text can produce a kind marker.
- A query word becomes a phrase of its tokens; its last token matches as a prefix (``meet`` finds "meeting",
  ``明`` finds "明天"), the others exactly. A CJK run at the end of a query word gives its bigrams only (the run may
  continue in the message), a single CJK character gives itself.

Bigrams rather than a dictionary segmenter (jieba, MeCab): they need no dictionary per language, find any substring
(a segmenter misses words it split differently, and names it never saw), and cost a token per character, about what
Lucene's CJK analyzer stores.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pica.errors import BadRequest

MAX_QUERY_CHARS: Final = 200
MAX_QUERY_WORDS: Final = 12

FILE_MARKER: Final = "_file"
"""In the document of a message with a file or an image (``kind=file``)."""
LINK_MARKER: Final = "_link"
"""In the document of a message whose text holds a web link (``kind=link``)."""
KIND_MARKERS: Final[Mapping[str, str]] = {"file": FILE_MARKER, "link": LINK_MARKER}

_LINK: Final = re.compile(r"(?:https?://|www\.)[^\s/$.?#]", re.IGNORECASE)
_ASCII_WORD: Final = re.compile(r"[a-z0-9]+")

# Blocks written without spaces between words: Hangul Jamo, CJK punctuation-free blocks (kana, Han extensions,
# compatibility ideographs, Hangul syllables, half-width katakana) and the supplementary ideographic planes.
_CJK_RANGES: Final = (
    (0x1100, 0x11FF), (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF),
)


def is_cjk(ch: str) -> bool:
    """A character indexed by bigrams (Han, Hiragana, Katakana, Hangul), if it is a letter."""
    code = ord(ch)
    return any(low <= code <= high for low, high in _CJK_RANGES) and unicodedata.category(ch)[0] in "LM"


@dataclass(frozen=True, slots=True)
class Token:
    term: str
    start: int
    """Offset of its first character in the text, in code points."""
    end: int
    """Offset just past its last character."""


@functools.lru_cache(maxsize=16384)
def _fold(ch: str) -> tuple[str, bool]:
    """A character as tokens see it: (folded text, whether it is CJK). Empty text: a separator."""
    if is_cjk(ch):
        return unicodedata.normalize("NFKC", ch), True
    folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)).casefold()
    return ("" if not folded or not all(c.isalnum() for c in folded) else folded), False


def _cjk_run(run: list[tuple[str, int]], *, tail: bool) -> Iterable[Token]:
    if len(run) == 1:
        yield Token(run[0][0], run[0][1], run[0][1] + 1)
        return
    for (a, start), (b, end) in itertools.pairwise(run):
        yield Token(a + b, start, end + 1)
    if tail:
        yield Token(run[-1][0], run[-1][1], run[-1][1] + 1)


def tokenize(text: str, *, query: bool = False) -> list[Token]:
    """The tokens of a text, in order, with their spans. ``query``: tokens of one query word (its last CJK run
    without the lone last character, see the module's rules)."""
    if text.isascii():  # the common case, without the per-character work (lower() keeps offsets in ASCII)
        return [Token(m[0], m.start(), m.end()) for m in _ASCII_WORD.finditer(text.lower())]
    out: list[Token] = []
    word: list[str] = []
    word_start = 0
    run: list[tuple[str, int]] = []
    for index, ch in enumerate(text):
        folded, cjk = _fold(ch)
        if cjk:
            if word:
                out.append(Token("".join(word), word_start, index))
                word = []
            run.append((folded, index))
            continue
        if run:
            out.extend(_cjk_run(run, tail=True))
            run = []
        if folded:
            if not word:
                word_start = index
            word.append(folded)
        elif word:
            out.append(Token("".join(word), word_start, index))
            word = []
    if word:
        out.append(Token("".join(word), word_start, len(text)))
    if run:
        out.extend(_cjk_run(run, tail=not query))
    return out


_CACHED_CHUNK: Final = 24
"""Whitespace-separated chunks up to this many characters have their terms cached (words recur: Zipf); longer ones
(a CJK sentence, a link) are tokenized each time, so the cache's memory stays bounded."""


def terms(text: str) -> list[str]:
    """The terms ``tokenize`` gives, without spans: what a sent message's document is made of, so the cheap path.

    Whitespace always separates tokens (no character ``str.split`` splits on folds to a letter or digit, and none is
    CJK), so a text's terms are its chunks' terms in order, and a chunk's terms can be cached."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    out: list[str] = []
    for chunk in text.split():
        out.extend(_chunk_terms(chunk) if len(chunk) <= _CACHED_CHUNK else _terms_of(chunk))
    return out


@functools.lru_cache(maxsize=32768)
def _chunk_terms(chunk: str) -> tuple[str, ...]:
    return tuple(_terms_of(chunk))


def _terms_of(text: str) -> list[str]:
    """``tokenize``'s rules on strings alone (no spans, no Token objects)."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    out: list[str] = []
    word: list[str] = []
    run: list[str] = []
    for ch in text:
        folded, cjk = _fold(ch)
        if cjk:
            if word:
                out.append("".join(word))
                word = []
            run.append(folded)
            continue
        if run:
            _bigrams(run, out)
            run = []
        if folded:
            word.append(folded)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    if run:
        _bigrams(run, out)
    return out


def _bigrams(run: list[str], out: list[str]) -> None:
    """A CJK run's terms, as ``_cjk_run`` with its tail."""
    if len(run) > 1:
        out.extend(a + b for a, b in itertools.pairwise(run))
    out.append(run[-1])


# ------------------------------------------------------------------------------------------------ documents


def searchable_parts(body: Mapping[str, Any]) -> list[str]:
    """The texts search indexes in a message body: its text (or caption), then a file's or image's name. Nothing
    for notices, recall and edit events, or recalled messages (they have no top-level ``text`` nor file)."""
    parts = [body["text"]] if isinstance(body.get("text"), str) else []
    for kind in ("file", "image"):
        ref = body.get(kind)
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            parts.append(ref["name"])
    return parts


def document(body: Mapping[str, Any]) -> str:
    """What both stores index for a message body: its tokens, space-separated, then its kind markers; empty when
    there is nothing to search. The terms of :func:`searchable_parts`, written out here because every send runs
    it on the event loop: no generator, and the link pattern only when the text could hold one."""
    for key in _NOT_INDEXED:
        if key in body:
            return ""
    text = body.get("text")
    found = terms(text) if isinstance(text, str) else []
    has_file = False
    for kind in ("file", "image"):
        ref = body.get(kind)
        if isinstance(ref, dict):
            has_file = True
            name = ref.get("name")
            if isinstance(name, str):
                found.extend(terms(name))
    if not found:
        return ""
    if has_file:
        found.append(FILE_MARKER)
    if isinstance(text, str) and _may_link(text) and _LINK.search(text):
        found.append(LINK_MARKER)
    return " ".join(found)


_NOT_INDEXED: Final = ("system", "recall", "edit", "preview")
"""Bodies with one of these keys (notices, events) have no document."""


def _may_link(text: str) -> bool:
    """A cheap test that ``_LINK`` cannot match when it is false: every match holds ``://`` or ``www.``."""
    return "://" in text or "www." in text.lower()


# ------------------------------------------------------------------------------------------------ queries


def query_words(query: str) -> list[str]:
    """The words of a search. Raises BadRequest outside 1-12 words or over 200 characters. NUL separates words like
    a space (PostgreSQL text cannot hold it)."""
    words = query.replace("\x00", " ").split()
    if not words or len(query) > MAX_QUERY_CHARS or len(words) > MAX_QUERY_WORDS:
        raise BadRequest("a search is 1-12 words, at most 200 characters")
    return words


@dataclass(frozen=True, slots=True)
class Phrase:
    """One query word: its terms in order, all adjacent; the last one matches as a prefix."""

    terms: tuple[str, ...]


def query_phrases(words: Sequence[str]) -> list[Phrase]:
    """The phrases of a search's words; words without any token are dropped (they cannot match anything)."""
    phrases = []
    for word in words:
        found = tuple(token.term for token in tokenize(word, query=True))
        if found:
            phrases.append(Phrase(found))
    return phrases


def _matched(term: str, phrases: Sequence[Phrase]) -> bool:
    """Whether a document term is one of the query's terms, or starts with the last term of a phrase."""
    return any(term == wanted or (position == len(phrase.terms) - 1 and term.startswith(wanted))
               for phrase in phrases for position, wanted in enumerate(phrase.terms))


def highlights(text: str, phrases: Sequence[Phrase]) -> list[tuple[int, int]]:
    """The spans of ``text`` a search matched (code-point offsets, start inclusive, end exclusive), merged where
    they touch or overlap, in order. A term counts wherever it occurs, not only inside a whole phrase: the spans
    show why a message was found, they do not re-run the query."""
    spans: list[tuple[int, int]] = []
    for token in tokenize(text):
        if _matched(token.term, phrases):
            if spans and token.start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], token.end))
            else:
                spans.append((token.start, token.end))
    return spans


def relevance(body: Mapping[str, Any], phrases: Sequence[Phrase]) -> int:
    """How many of the query's words a message holds as whole words (every term equal, not a mere prefix): the
    relevance tier that ranks results before recency."""
    present = {term for part in searchable_parts(body) for term in terms(part)}
    return sum(1 for phrase in phrases if all(term in present for term in phrase.terms))

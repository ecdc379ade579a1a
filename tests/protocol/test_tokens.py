"""The search tokenizer (pica/protocol/tokens.py): tokens, documents, query phrases, highlights, relevance."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pica.errors import BadRequest
from pica.protocol.tokens import (
    Phrase,
    Token,
    document,
    highlights,
    is_cjk,
    query_phrases,
    query_words,
    relevance,
    searchable_parts,
    terms,
    tokenize,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, World!", ["hello", "world"]),
    ("我们明天开会", ["我们", "们明", "明天", "天开", "开会", "会"]),
    ("用Python写", ["用", "python", "写"]),
    ("明日の会議", ["明日", "日の", "の会", "会議", "議"]),
    ("회의를 합시다", ["회의", "의를", "를", "합시", "시다", "다"]),
    ("ｶﾀｶﾅ", ["カタ", "タカ", "カナ", "ナ"]),  # half-width katakana read as full-width
    ("がぎ", ["がぎ", "ぎ"]),  # voiced kana keep their mark
    ("Größe STRASSE Straße", ["grosse", "strasse", "strasse"]),
    ("Crème brûlée déjà", ["creme", "brulee", "deja"]),
    ("Ёлка ЙОД", ["елка", "иод"]),
    ("snake_case x²", ["snake", "case", "x2"]),
    ("", []), ("!!! ---", []),
])
def test_terms(text: str, expected: list[str]) -> None:
    assert terms(text) == expected


def test_tokens_carry_their_span_in_the_original_text() -> None:
    text = "Ça va? 开会"
    assert tokenize(text) == [Token("ca", 0, 2), Token("va", 3, 5), Token("开会", 7, 9), Token("会", 8, 9)]
    assert [text[t.start:t.end] for t in tokenize(text)] == ["Ça", "va", "开会", "会"]


def test_a_query_word_is_a_phrase_whose_cjk_tail_keeps_only_bigrams() -> None:
    assert query_phrases(["明天开会", "明", "quarterly-report", "!!!"]) == [
        Phrase(("明天", "天开", "开会")), Phrase(("明",)), Phrase(("quarterly", "report"))]
    assert query_phrases(["系统abc"]) == [Phrase(("系统", "统", "abc"))]  # as the document has them, adjacent


def test_query_words_bounds() -> None:
    assert query_words(" a\x00b  c ") == ["a", "b", "c"]
    for bad in ("", "  ", "\x00", " ".join(["w"] * 13), "x" * 201):
        with pytest.raises(BadRequest):
            query_words(bad)


def test_documents_hold_tokens_then_kind_markers_never_forgeable() -> None:
    assert document({"text": "see https://x.org"}) == "see https x org _link"
    assert document({"file": {"name": "a.pdf"}}) == "a pdf _file"
    assert document({"text": "_file _link __"}) == "file link"
    assert document({"text": "hi", "system": {"event": "x"}}) == ""
    assert document({"edit": {"seq": 1, "text": "x"}}) == document({"recall": {"seq": 1}}) == ""
    assert document({"custom": {"text": "x"}}) == document({"text": "!!!"}) == ""


_LINKY = st.sampled_from(["http://", "HTTPS://", "www.", "WwW.", "://", "www", " ", "a", "x.org", "漢字", "é"])
_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "text": st.one_of(st.text(max_size=40), st.lists(_LINKY, max_size=6).map("".join), st.integers()),
        "file": st.one_of(st.fixed_dictionaries({}, optional={"name": st.text(max_size=12)}), st.just("id")),
        "image": st.fixed_dictionaries({"name": st.one_of(st.text(max_size=12), st.none())}),
        "system": st.just({"event": "x"}),
        "preview": st.just({"seq": 1}),
    },
)


@given(_BODIES)
@example({"text": "WwW.x"})
@example({"text": "HTTPS://x ok", "image": {"name": None}})
def test_a_document_is_its_searchable_parts_terms_then_markers(body: dict[str, object]) -> None:
    """``document`` is written out for speed; this is its definition."""
    if any(key in body for key in ("system", "recall", "edit", "preview")):
        assert document(body) == ""
        return
    found = [term for part in searchable_parts(body) for term in terms(part)]
    if found and any(isinstance(body.get(kind), dict) for kind in ("file", "image")):
        found.append("_file")
    text = body.get("text")
    if found and isinstance(text, str) and re.search(r"(?:https?://|www\.)[^\s/$.?#]", text, re.IGNORECASE):
        found.append("_link")
    assert document(body) == " ".join(found)


def test_highlights_merge_overlapping_bigrams_and_count_prefixes() -> None:
    text = "我们明天开会讨论千万级系统"
    assert highlights(text, query_phrases(["明天开会"])) == [(2, 6)]
    assert highlights(text, query_phrases(["统"])) == [(12, 13)]
    assert highlights("Meeting at the MEETUP", query_phrases(["meet"])) == [(0, 7), (15, 21)]
    assert highlights("nothing here", query_phrases(["zebra"])) == []


def test_relevance_counts_words_held_whole() -> None:
    phrases = query_phrases(["meet", "notes"])
    assert relevance({"text": "meet the notes"}, phrases) == 2
    assert relevance({"text": "meeting notes"}, phrases) == 1
    assert relevance({"text": "meeting notebook"}, phrases) == 0


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.sampled_from("ぁあかがアカガー한국어회의")


def _simulated_match(doc: list[str], phrase: Phrase) -> bool:
    """What both engines do with a phrase: its terms at adjacent positions, the last one as a prefix."""
    n = len(phrase.terms)
    for i in range(len(doc) - n + 1):
        window = doc[i:i + n]
        if window[:-1] == list(phrase.terms[:-1]) and window[-1].startswith(phrase.terms[-1]):
            return True
    return False


@given(st.text())
def test_the_tokenizer_never_crashes_and_spans_are_in_bounds(text: str) -> None:
    for token in tokenize(text):
        assert token.term and " " not in token.term and "_" not in token.term
        assert 0 <= token.start < token.end <= len(text)
    for token in tokenize(text, query=True):
        assert token.term
    assert "'" not in document({"text": text}) and '"' not in document({"text": text})


MIXED = st.one_of(st.text(), st.text(st.sampled_from("aé Z1ß²_,\u3000\u2028\x1c明天开会がｶ회의 \t\n½ǅ"), max_size=40))


@given(st.lists(MIXED, max_size=5).map(" ".join))
def test_the_indexing_path_gives_the_tokenizers_terms(text: str) -> None:
    # terms() is a faster path (strings only, chunks cached) to what the highlights see: they must agree
    assert terms(text) == [token.term for token in tokenize(text)]
    assert terms(text) == terms(text)  # a second time, from the chunk cache


@given(st.lists(st.one_of(st.text(CJK, min_size=1, max_size=12), st.text(max_size=6)), min_size=1, max_size=6),
       st.data())
def test_any_substring_of_two_or_more_cjk_characters_is_found(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    runs = [(i, j) for i in range(len(text)) for j in range(i + 2, len(text) + 1)
            if all(is_cjk(c) for c in text[i:j])]
    if not runs:
        return
    start, end = data.draw(st.sampled_from(runs))
    doc = document({"text": text}).split(" ")
    (phrase,) = query_phrases([text[start:end]])
    assert _simulated_match(doc, phrase)

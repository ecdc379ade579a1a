"""Message bodies, their search text, and client message ids (pica.core.validation), as unit tests."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pica.config import LimitsConfig
from pica.core.validation import check_client_msg_id, validate_body
from pica.errors import BadRequest
from pica.protocol.tokens import document

LIMITS = LimitsConfig()
FILE = {"id": "f1", "name": "q3 report.pdf", "mime": "application/pdf", "size": 1024}
IMAGE = {"id": "i1", "name": "cat.png", "mime": "image/png", "size": 2048}


def rejected(body: object, limits: LimitsConfig = LIMITS) -> str:
    with pytest.raises(BadRequest) as failed:
        validate_body(body, limits)
    return failed.value.message


VALID = [
    pytest.param({"text": "hello"}, id="text"),
    pytest.param({"text": "hi @bob @carol", "mentions": [2, 3]}, id="text-mentions"),
    pytest.param({"file": FILE}, id="file"),
    pytest.param({"file": FILE, "text": "the report"}, id="file-caption"),
    pytest.param({"image": {**IMAGE, "width": 640, "height": 480}}, id="image"),
    pytest.param({"image": IMAGE, "text": "my cat"}, id="image-caption"),
    pytest.param({"custom": {"poll": ["a", "b"]}, "type": "poll"}, id="custom-type"),
    pytest.param({"custom": None}, id="custom-null"),
    pytest.param({"text": "reply", "reply_to": 7, "meta": {"k": [1, 2.5, True, None]}}, id="metadata"),
    pytest.param({"voice": {"id": "v1", "duration_ms": 4200, "waveform": [0, 128, 255]}}, id="voice"),
]


@pytest.mark.parametrize("body", VALID)
def test_valid_bodies_are_kept_as_they_are(body: dict[str, Any]) -> None:
    checked, encoded = validate_body(body, LIMITS)
    assert checked == body
    assert msgspec.json.decode(encoded) == body


INVALID = [
    pytest.param("just text", "must be an object", id="not-an-object"),
    pytest.param({}, "needs 'text'", id="empty"),
    pytest.param({"type": "poll"}, "needs 'text'", id="type-only"),
    pytest.param({"text": "", "mentions": []}, "non-empty", id="empty-text"),
    pytest.param({"text": "   "}, "non-empty", id="blank-text"),
    pytest.param({"text": 5}, "non-empty string", id="text-not-string"),
    pytest.param({"text": "hi", "mentions": "bob"}, "mentions", id="mentions-not-list"),
    pytest.param({"text": "hi", "mentions": [0]}, "mentions", id="mention-zero"),
    pytest.param({"text": "hi", "mentions": [True]}, "mentions", id="mention-bool"),
    pytest.param({"text": "hi", "mentions": ["2"]}, "mentions", id="mention-string"),
    pytest.param({"text": "hi", "mentions": list(range(1, 102))}, "mentions", id="too-many-mentions"),
    pytest.param({"file": "f1"}, "body.file must be an object", id="file-not-object"),
    pytest.param({"custom": 1, "type": 2}, "body.type", id="type-not-string"),
    pytest.param({"file": FILE, "image": IMAGE}, "exactly one", id="file-and-image"),
    pytest.param({"file": FILE, "custom": {}}, "exactly one", id="file-and-custom"),
    pytest.param({"text": "hi", "custom": {}}, "exactly one", id="text-and-custom"),
    pytest.param({"text": "hi", "raw": b"\x00"}, "JSON cannot carry", id="bytes"),
    pytest.param({"text": "hi", "n": float("nan")}, "finite", id="nan"),
    pytest.param({"text": "hi", "n": 2**53}, "2**53", id="big-int"),
    pytest.param({"text": "hi", 1: "x"}, "keys must be strings", id="non-string-key"),
]


@pytest.mark.parametrize(("body", "reason"), INVALID)
def test_invalid_bodies_are_rejected(body: object, reason: str) -> None:
    assert reason in rejected(body)


@pytest.mark.parametrize("kind", ["file", "image", "voice"])
@pytest.mark.parametrize("file_id", [None, 1, "", "x" * 65, True])
def test_a_file_reference_needs_the_id_of_an_upload(kind: str, file_id: object) -> None:
    ref: dict[str, Any] = {"duration_ms": 1000} if kind == "voice" else {}
    if file_id is not None:
        ref["id"] = file_id
    assert f"body.{kind}.id must be the id of an uploaded file" in rejected({kind: ref})


@pytest.mark.parametrize(("voice", "reason"), [
    ({"id": "v1"}, "duration_ms"), ({"id": "v1", "duration_ms": 0}, "duration_ms"),
    ({"id": "v1", "duration_ms": True}, "duration_ms"), ({"id": "v1", "duration_ms": 3_600_001}, "duration_ms"),
    ({"id": "v1", "duration_ms": 10, "waveform": [256]}, "waveform"),
    ({"id": "v1", "duration_ms": 10, "waveform": [1] * 101}, "waveform"),
    ({"id": "v1", "duration_ms": 10, "waveform": "loud"}, "waveform"),
])
def test_a_voice_note_carries_its_duration_and_waveform(voice: dict[str, Any], reason: str) -> None:
    assert f"body.voice.{reason}" in rejected({"voice": voice})


def test_a_voice_note_has_no_caption() -> None:
    assert "exactly one" in rejected({"voice": {"id": "v1", "duration_ms": 10}, "text": "listen"})


@pytest.mark.parametrize("key", ["system", "recall", "edit", "deleted", "recalled", "edited"])
def test_keys_the_server_sets_are_rejected(key: str) -> None:
    assert f"body.{key} is set by the server only" in rejected({"text": "hi", key: True})
    assert "set by the server" in rejected({key: {"seq": 1}})


def test_text_and_body_size_limits() -> None:
    limits = LimitsConfig(max_text_chars=10, max_body_bytes=64, max_body_depth=3)
    validate_body({"text": "x" * 10}, limits)
    assert "longer than 10" in rejected({"text": "x" * 11}, limits)
    assert "limit of 64" in rejected({"custom": "y" * 64}, limits)
    validate_body({"custom": {"a": [1]}}, limits)
    assert "nested too deeply" in rejected({"custom": {"a": [[1]]}}, limits)
    assert "longer than" in rejected({"text": "x" * (LIMITS.max_text_chars + 1)})


@pytest.mark.parametrize(("body", "words"), [
    ({"text": "hello world"}, "hello world"),
    ({"file": FILE}, "q3 report pdf _file"),
    ({"file": FILE, "text": "the report"}, "the report q3 report pdf _file"),
    ({"image": IMAGE, "text": "my cat https://cats.example"}, "my cat https cats example cat png _file _link"),
    ({"custom": {"text": "not indexed"}, "type": "note"}, ""),
])
def test_the_search_document_is_the_text_and_file_names(body: dict[str, Any], words: str) -> None:
    assert document(body) == words


@pytest.mark.parametrize("client_msg_id", ["a", "x" * 64, "msg~1", "5f0c-uuid"])
def test_client_msg_ids_accepted(client_msg_id: str) -> None:
    assert check_client_msg_id(client_msg_id) == client_msg_id


@pytest.mark.parametrize(("client_msg_id", "reason"), [
    ("~n:d:1:2:3", "must not start with '~'"),
    ("~", "must not start with '~'"),
    ("", "1-64 characters"),
    ("x" * 65, "1-64 characters"),
    (17, "1-64 characters"),
    (None, "1-64 characters"),
])
def test_client_msg_ids_rejected(client_msg_id: object, reason: str) -> None:
    with pytest.raises(BadRequest) as failed:
        check_client_msg_id(client_msg_id)
    assert reason in failed.value.message

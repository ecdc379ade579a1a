"""The frame codec: every frame survives a round trip in both encodings, and no input makes the decoder raise
anything but the two documented errors.

Strategies are derived from the Struct definitions themselves (``msgspec.inspect``), so a field added to
frames.py is covered here without touching this file, and every generated value respects its ``Meta`` constraints.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pica.errors import InvalidFrame, UnknownFrame
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_client_frame, decode_server_frame, encode

CLIENT_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(f.ClientFrame)
SERVER_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(f.ServerFrame)
ENCODINGS = [Encoding.JSON, Encoding.MSGPACK]
INT64 = (-(2**63), 2**63 - 1)

Decoder = Callable[[bytes | str, Encoding], Any]
DECODERS: list[tuple[Decoder, tuple[type[msgspec.Struct], ...]]] = [
    (decode_client_frame, CLIENT_TYPES),
    (decode_server_frame, SERVER_TYPES),
]
DECODER_IDS = ["client", "server"]

# ---------------------------------------------------------------------------------------------- valid frames

# What a message body may hold: JSON values that both encodings carry unchanged (finite floats, 64-bit ints).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(*INT64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _int(t: mi.IntType) -> st.SearchStrategy[int]:
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else INT64[0])
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else INT64[1])
    return st.integers(low, high)


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    return st.text(min_size=t.min_length or 0, max_size=t.max_length if t.max_length is not None else 40)


def strategy_for(t: mi.Type) -> st.SearchStrategy[Any]:
    """Valid values of a msgspec type, as the Struct's annotations and Meta constraints describe them."""
    if isinstance(t, mi.IntType):
        return _int(t)
    if isinstance(t, mi.StrType):
        return _str(t)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.AnyType):
        return json_values
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy_for(member) for member in t.types))
    if isinstance(t, mi.ListType):
        return st.lists(strategy_for(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=4)
    if isinstance(t, mi.StructType):
        fields = {field.name: strategy_for(field.type) for field in t.fields}
        return st.builds(t.cls, **fields)
    raise NotImplementedError(f"no strategy for {t!r}")  # a new field type in frames.py: teach this function


def frames_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    return strategy_for(mi.type_info(cls))


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize("cls", CLIENT_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_client_frames_round_trip(cls: type[msgspec.Struct], encoding: Encoding, data: st.DataObject) -> None:
    frame = data.draw(frames_of(cls))
    assert decode_client_frame(encode(frame, encoding), encoding) == frame


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize("cls", SERVER_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_server_frames_round_trip(cls: type[msgspec.Struct], encoding: Encoding, data: st.DataObject) -> None:
    frame = data.draw(frames_of(cls))
    assert decode_server_frame(encode(frame, encoding), encoding) == frame


def test_json_frames_decode_from_text_too() -> None:
    """A WebSocket text frame reaches the decoder as ``str``, not bytes."""
    frame = f.Send(to=7, client_msg_id="m-1", body={"text": "héllo ✓"}, id=3)
    assert decode_client_frame(encode(frame, Encoding.JSON).decode(), Encoding.JSON) == frame


def test_absent_optional_fields_are_omitted_on_the_wire() -> None:
    assert msgspec.json.decode(encode(f.Ping(), Encoding.JSON)) == {"t": "ping"}
    assert msgspec.msgpack.decode(encode(f.Error(code="x", message="y"), Encoding.MSGPACK)) == {
        "t": "error",
        "code": "x",
        "message": "y",
    }


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = b'{"t":"ping","id":4,"added_in_v1_1":{"x":[1,2]}}'
    assert decode_client_frame(raw, Encoding.JSON) == f.Ping(id=4)


# ---------------------------------------------------------------------------------------------- hostile input


def assert_frame_or_documented_error(
    decode: Decoder, types: tuple[type[Any], ...], data: bytes | str, encoding: Encoding
) -> None:
    try:
        frame = decode(data, encoding)
    except (InvalidFrame, UnknownFrame):
        return
    assert isinstance(frame, types), f"decoded to {type(frame).__name__}, not a frame of the union"


# Values msgpack can carry, including those a frame must reject: bytes, ext, NaN, non-str keys, huge ints.
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=12)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5) | st.binary(max_size=4), inner, max_size=4)
    ),
    max_leaves=15,
)

FIELD_NAMES = sorted({field.name for cls in (*CLIENT_TYPES, *SERVER_TYPES) for field in msgspec.structs.fields(cls)})
frame_types = st.sampled_from(sorted(f.CLIENT_FRAME_TYPES | f.SERVER_FRAME_TYPES)) | st.text(max_size=10)

# Frame-shaped maps: a known (or random) "t", then known field names with values of any type, so that decoding
# gets past the tag and fails (or not) on the fields.
frame_like_maps: st.SearchStrategy[dict[Any, Any]] = st.builds(
    lambda t, fields: {"t": t, **fields},
    frame_types | msgpack_values,
    st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), msgpack_values, max_size=6),
)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize(("decode", "types"), DECODERS, ids=DECODER_IDS)
@given(data=st.binary(max_size=200))
def test_any_bytes_decode_to_a_frame_or_a_documented_error(
    decode: Decoder, types: tuple[type[Any], ...], encoding: Encoding, data: bytes
) -> None:
    assert_frame_or_documented_error(decode, types, data, encoding)


# st.text() never yields lone surrogates, whatever its alphabet; a list of characters joined does.
any_str = st.lists(st.characters() | st.characters(categories=["Cs"]), max_size=200).map("".join)


@pytest.mark.parametrize(("decode", "types"), DECODERS, ids=DECODER_IDS)
@given(text=any_str)
def test_any_text_decodes_to_a_frame_or_a_documented_error(
    decode: Decoder, types: tuple[type[Any], ...], text: str
) -> None:
    """Any str, lone surrogates included (text that no UTF-8 decoder would produce, but the contract is 'any')."""
    assert_frame_or_documented_error(decode, types, text, Encoding.JSON)


@pytest.mark.parametrize(("decode", "types"), DECODERS, ids=DECODER_IDS)
@given(value=msgpack_values | frame_like_maps)
def test_any_msgpack_value_decodes_to_a_frame_or_a_documented_error(
    decode: Decoder, types: tuple[type[Any], ...], value: Any
) -> None:
    assert_frame_or_documented_error(decode, types, msgspec.msgpack.encode(value), Encoding.MSGPACK)


@pytest.mark.parametrize(("decode", "types"), DECODERS, ids=DECODER_IDS)
@given(
    value=st.builds(
        lambda t, fields: {"t": t, **fields},
        frame_types | json_values,
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values, max_size=6),
    )
)
def test_any_json_frame_like_map_decodes_to_a_frame_or_a_documented_error(
    decode: Decoder, types: tuple[type[Any], ...], value: dict[str, Any]
) -> None:
    assert_frame_or_documented_error(decode, types, msgspec.json.encode(value), Encoding.JSON)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@given(t=st.text(min_size=1, max_size=40).filter(lambda t: t not in f.CLIENT_FRAME_TYPES))
def test_an_unknown_type_is_reported_as_unknown_frame(encoding: Encoding, t: str) -> None:
    data = msgspec.json.encode({"t": t}) if encoding is Encoding.JSON else msgspec.msgpack.encode({"t": t})
    with pytest.raises(UnknownFrame):
        decode_client_frame(data, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
def test_a_server_frame_sent_by_a_client_is_unknown(encoding: Encoding) -> None:
    data = encode(
        f.Ready(v=1, user_id=1, device="d", session="s", heartbeat=1.0, idle_timeout=3.0, max_frame=9, time=0), encoding
    )
    with pytest.raises(UnknownFrame):
        decode_client_frame(data, encoding)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"t":"send","to":0,"client_msg_id":"a","body":{}}', "user ids start at 1"),
        (b'{"t":"send","to":1,"client_msg_id":"","body":{}}', "empty client_msg_id"),
        (b'{"t":"send","to":1,"client_msg_id":"' + b"x" * 65 + b'","body":{}}', "client_msg_id over 64"),
        (b'{"t":"send","to":1,"client_msg_id":"a","body":[]}', "body must be an object"),
        (b'{"t":"sync","limit":0}', "limit starts at 1"),
        (b'{"t":"recv","conversation_id":"c","seq":-1}', "negative seq"),
        (b'{"t":"auth"}', "token missing"),
        (b'{"no_type":1}', "no tag"),
        (b'{"t":7}', "tag not a string"),
        (b"[1,2,3]", "not a map"),
        (b'{"t":"ping"', "truncated"),
    ],
)
def test_constraint_violations_are_invalid_frames(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidFrame):
        decode_client_frame(raw, Encoding.JSON)


# ---------------------------------------------------------------------------------------------- deep nesting

DEPTH = 100_000

# A valid frame of each side whose body ends in an empty list, to be nested DEPTH deep in place.
SHALLOW = {
    "client": {"t": "send", "to": 1, "client_msg_id": "a", "body": {"x": []}},
    "server": {
        "t": "msg",
        "conversation_id": "c",
        "seq": 1,
        "sender": 1,
        "client_msg_id": "a",
        "ts": 0,
        "body": {"x": []},
    },
}
DECODER_OF = dict(zip(DECODER_IDS, [decode for decode, _ in DECODERS], strict=True))


def deep_json(side: str) -> list[bytes]:
    frame = msgspec.json.encode(SHALLOW[side])
    assert frame.endswith(b"[]}}")
    return [
        b"[" * DEPTH + b"]" * DEPTH,
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        frame[:-4] + b"[" * DEPTH + b"]" * DEPTH + b"}}",  # deep inside the body of a valid frame
        frame[:-4] + b"[" * DEPTH,  # and never closed
    ]


def deep_msgpack(side: str) -> list[bytes]:
    frame = msgspec.msgpack.encode(SHALLOW[side])
    assert frame.endswith(b"\x90")  # the empty list
    return [
        b"\x91" * DEPTH + b"\x90",  # [[[...[]...]]]
        b"\x81\xa1a" * DEPTH + b"\xc0",  # {"a": {"a": ... nil}}
        frame[:-1] + b"\x91" * DEPTH + b"\x90",  # deep inside the body of a valid frame
        frame[:-1] + b"\x91" * DEPTH,  # and never closed
    ]


@pytest.mark.parametrize("side", DECODER_IDS)
def test_deep_json_nesting_is_an_invalid_frame(side: str) -> None:
    decode = DECODER_OF[side]
    for data in deep_json(side):
        with pytest.raises(InvalidFrame):
            decode(data, Encoding.JSON)
        with pytest.raises(InvalidFrame):
            decode(data.decode(), Encoding.JSON)


@pytest.mark.parametrize("side", DECODER_IDS)
def test_deep_msgpack_nesting_is_an_invalid_frame(side: str) -> None:
    decode = DECODER_OF[side]
    for data in deep_msgpack(side):
        with pytest.raises(InvalidFrame):
            decode(data, Encoding.MSGPACK)


@pytest.mark.parametrize("side", DECODER_IDS)
def test_the_shallow_frames_nested_above_are_valid(side: str) -> None:
    """So the deep cases fail on depth alone."""
    decode = DECODER_OF[side]
    assert isinstance(decode(msgspec.json.encode(SHALLOW[side]), Encoding.JSON), msgspec.Struct)
    assert isinstance(decode(msgspec.msgpack.encode(SHALLOW[side]), Encoding.MSGPACK), msgspec.Struct)

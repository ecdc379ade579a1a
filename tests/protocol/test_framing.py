"""TCP length-prefix framing: whatever way the stream is cut, the same payloads come out; a bad header fails at
once, before any payload byte, and for good."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.errors import FrameTooLarge, InvalidFrame
from pica.protocol.framing import HEADER, HEADER_SIZE, FrameReader, frame_bytes

LIMIT = 1024

payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=12)


def feed_in_pieces(reader: FrameReader, stream: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        out.extend(reader.feed(stream[start:end]))
    return out


@given(frames=payloads, data=st.data())
def test_payloads_survive_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame_bytes(p) for p in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    reader = FrameReader(LIMIT)
    assert feed_in_pieces(reader, stream, cuts) == frames
    assert reader.buffered == 0


@given(frames=payloads)
def test_byte_at_a_time_is_the_same_as_all_at_once(frames: list[bytes]) -> None:
    stream = b"".join(frame_bytes(p) for p in frames)
    assert feed_in_pieces(FrameReader(LIMIT), stream, list(range(len(stream)))) == frames
    assert FrameReader(LIMIT).feed(stream) == frames


@given(frames=payloads, partial=st.binary(min_size=1, max_size=LIMIT))
def test_an_incomplete_tail_is_kept_for_the_next_feed(frames: list[bytes], partial: bytes) -> None:
    reader = FrameReader(LIMIT)
    tail = frame_bytes(partial)[:-1]
    assert reader.feed(b"".join(frame_bytes(p) for p in frames) + tail) == frames
    assert reader.buffered == len(tail)
    assert reader.feed(partial[-1:]) == [partial]


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    payload = b"x" * LIMIT
    assert FrameReader(LIMIT).feed(frame_bytes(payload)) == [payload]


@pytest.mark.parametrize("declared", [LIMIT + 1, 10 * 1024 * 1024, 2**32 - 1])
def test_oversized_length_fails_on_the_header_alone(declared: int) -> None:
    reader = FrameReader(LIMIT)
    header = HEADER.pack(declared)
    assert reader.feed(header[:3]) == []  # three bytes say nothing yet
    with pytest.raises(FrameTooLarge):
        reader.feed(header[3:])  # the fourth does: no payload byte was ever fed
    assert reader.buffered == 0  # and nothing was kept for it


def test_oversized_length_after_good_frames_fails_too() -> None:
    reader = FrameReader(LIMIT)
    with pytest.raises(FrameTooLarge):
        reader.feed(frame_bytes(b"fine") + HEADER.pack(LIMIT + 1))


def test_zero_length_is_an_invalid_frame() -> None:
    reader = FrameReader(LIMIT)
    assert reader.feed(frame_bytes(b"ok")) == [b"ok"]
    with pytest.raises(InvalidFrame):
        reader.feed(HEADER.pack(0))


@pytest.mark.parametrize(
    ("bad_header", "error"),
    [(HEADER.pack(0), InvalidFrame), (HEADER.pack(LIMIT + 1), FrameTooLarge)],
    ids=["empty", "oversized"],
)
def test_after_an_error_the_reader_stays_broken(bad_header: bytes, error: type[Exception]) -> None:
    reader = FrameReader(LIMIT)
    with pytest.raises(error):
        reader.feed(bad_header)
    for later in (frame_bytes(b"a perfectly good frame"), b""):
        with pytest.raises(InvalidFrame, match="already failed"):
            reader.feed(later)
    assert reader.buffered == 0


def test_header_size_is_four_bytes_big_endian() -> None:
    assert HEADER_SIZE == 4
    assert frame_bytes(b"abc") == b"\x00\x00\x00\x03abc"

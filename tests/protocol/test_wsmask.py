"""The masking check walks frame headers in any chunking: masked streams pass, the first unmasked frame is found
where its header starts."""

from __future__ import annotations

import struct

from pica.protocol.wsmask import MaskCheck, fail_frame


def frame(payload: bytes, *, masked: bool = True, opcode: int = 0x1) -> bytes:
    length = len(payload)
    bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((0x80 | opcode, bit | length))
    elif length < 65_536:
        header = bytes((0x80 | opcode, bit | 126)) + struct.pack("!H", length)
    else:
        header = bytes((0x80 | opcode, bit | 127)) + struct.pack("!Q", length)
    return header + (b"\x01\x02\x03\x04" + payload if masked else payload)  # the payload's value is irrelevant


def feed_in_chunks(stream: bytes, size: int) -> int | None:
    """Offset in the whole stream of the first unmasked frame, or None."""
    check = MaskCheck()
    for start in range(0, len(stream), size):
        bad = check.feed(stream[start:start + size])
        if bad is not None:
            return start + bad
    return None


def test_masked_frames_of_every_length_form_pass_in_any_chunking() -> None:
    stream = frame(b"x" * 5) + frame(b"y" * 300) + frame(b"z" * 70_000) + frame(b"", opcode=0x9) + frame(b"w")
    for size in (1, 2, 3, 7, 13, 64, 1000, len(stream)):
        assert feed_in_chunks(stream, size) is None


def test_the_first_unmasked_frame_is_found_at_its_header() -> None:
    good = frame(b"x" * 5) + frame(b"y" * 300)
    stream = good + frame(b"ping", masked=False, opcode=0x9) + frame(b"later")
    assert feed_in_chunks(stream, len(stream)) == len(good)
    for size in (1, 2, 5, 11):
        found = feed_in_chunks(stream, size)
        # When the header's first byte ended the previous chunk (already passed on), the answer is the next chunk's
        # start: nothing of the bad frame past the byte that cannot tell is passed on.
        assert found in (len(good), len(good) + 1)
    check = MaskCheck()
    check.feed(stream)
    assert check.feed(frame(b"masked again")) == 0  # failed for good


def test_the_close_frame_says_1002() -> None:
    close = fail_frame()
    assert close[0] == 0x88 and struct.unpack("!H", close[2:4]) == (1002,) and close[4:] == b"unmasked frame"

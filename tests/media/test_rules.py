"""The pure parts of files: byte ranges, names, metadata stripping."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pica.media.images import NotAnImage, strip_metadata
from pica.media.ranges import Unsatisfiable, byte_range
from pica.media.service import clean_name


@given(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 12_000)), st.integers(1, 10_000))
def test_a_satisfiable_range_lies_inside_the_file(start: int, last: int | None, size: int) -> None:
    header = f"bytes={start}-{'' if last is None else last}"
    try:
        span = byte_range(header, size)
    except Unsatisfiable:
        assert start >= size
        return
    if span is not None:
        assert 0 <= span[0] < span[1] <= size and span[0] == start


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-0", (0, 1)), ("bytes=-1", (99, 100)), ("bytes=-500", (0, 100)),
    ("bytes=0-1,5-6", None), ("items=0-5", None), ("bytes=x-y", None), ("bytes=5-2", None), ("bytes=-", None),
])
def test_ranges_honoured_or_ignored(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 100)


@pytest.mark.parametrize(("given_name", "shown"), [
    ("report.pdf", "report.pdf"), ("../../etc/passwd", "passwd"), ("C:\\Users\\a\\cat.png", "cat.png"),
    ("a\x00b\nc.txt", "abc.txt"), ("", "file"), (None, "file"), ("x" * 300, "x" * 255), ("  ", "file"),
])
def test_names(given_name: str | None, shown: str) -> None:
    assert clean_name(given_name) == shown


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_text_and_exif_chunks_are_dropped_and_the_pixels_kept() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(out, "PNG")
    plain = out.getvalue()
    ihdr_end = 8 + 25
    tagged = (plain[:ihdr_end] + png_chunk(b"tEXt", b"GPS\x0048.85,2.35") + png_chunk(b"eXIf", b"MM\x00*")
              + plain[ihdr_end:])
    stripped = io.BytesIO()
    strip_metadata("image/png", io.BytesIO(tagged), stripped)
    assert stripped.getvalue() == plain
    assert Image.open(io.BytesIO(stripped.getvalue())).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00", b"\xff\xd8\x00\x00", b"GIF89a"])
def test_a_broken_jpeg_is_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        strip_metadata("image/jpeg", io.BytesIO(data), io.BytesIO())

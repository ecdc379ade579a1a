"""Images: metadata stripped from the stored bytes, dimensions, thumbnails and a placeholder (Pillow, blurhash).

**Metadata.** A phone's photo carries its location in EXIF. Before an uploaded JPEG or PNG is hashed and stored, its
metadata segments are dropped without re-encoding the pixels: JPEG's APP1 (EXIF, XMP) and APP3-APP13, APP15 and
comments, PNG's ``eXIf``, ``tEXt``, ``zTXt``, ``iTXt`` and ``tIME`` chunks. A JPEG's orientation, which the pixels
need to be shown the right way up, is kept as a minimal EXIF segment holding that one tag. Colour profiles (APP2,
``iCCP``) stay. Other formats are stored as they came.

**Decompression bombs.** Dimensions are read from the header alone; an image over ``media.max_image_pixels`` is
stored but never decoded (no thumbnails, no placeholder), and Pillow's own bomb check is set to the same bound.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import blurhash
from PIL import Image, ImageOps

STRIPPED: Final = frozenset({"image/jpeg", "image/png"})
DECODED: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_JPEG_DROPPED: Final = frozenset({0xE1, *range(0xE3, 0xEE), 0xEF, 0xFE})
_PNG_DROPPED: Final = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_ORIENTATION: Final = 0x0112


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class NotAnImage(ValueError):
    """The bytes are not the image their type says (truncated, corrupt)."""


def strip_metadata(content_type: str, source: BinaryIO, target: Sink) -> None:
    """Copy ``source`` to ``target`` without the metadata segments of the module's rules."""
    if content_type == "image/jpeg":
        _strip_jpeg(source, target)
    elif content_type == "image/png":
        _strip_png(source, target)
    else:
        raise ValueError(content_type)


def _copy(source: BinaryIO, target: Sink, size: int | None = None) -> None:
    while size is None or size > 0:
        chunk = source.read(1 << 20 if size is None else min(1 << 20, size))
        if not chunk:
            if size is not None:
                raise NotAnImage("truncated image")
            return
        target.write(chunk)
        if size is not None:
            size -= len(chunk)


def _strip_jpeg(source: BinaryIO, target: Sink) -> None:
    if source.read(2) != b"\xff\xd8":
        raise NotAnImage("not a JPEG")
    target.write(b"\xff\xd8")
    orientation = 1
    while True:
        marker = source.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise NotAnImage("bad JPEG segment")
        kind = marker[1]
        if kind == 0xDA or kind == 0xD9:  # start of scan (entropy-coded data to the end), or the end
            if orientation != 1:
                exif = Image.Exif()
                exif[_ORIENTATION] = orientation
                data = exif.tobytes()
                target.write(b"\xff\xe1" + struct.pack(">H", len(data) + 2) + data)
            target.write(marker)
            _copy(source, target)
            return
        length_bytes = source.read(2)
        if len(length_bytes) < 2:
            raise NotAnImage("truncated JPEG")
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            raise NotAnImage("bad JPEG segment length")
        payload = source.read(length - 2)
        if len(payload) < length - 2:
            raise NotAnImage("truncated JPEG")
        if kind in _JPEG_DROPPED:
            if kind == 0xE1 and payload.startswith(b"Exif\x00\x00"):
                orientation = _orientation_of(payload) or orientation
            continue
        target.write(marker + length_bytes + payload)


def _orientation_of(app1: bytes) -> int | None:
    exif = Image.Exif()
    try:
        exif.load(app1)
    except Exception:  # a malformed EXIF block: it is dropped anyway
        return None
    value = exif.get(_ORIENTATION)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _strip_png(source: BinaryIO, target: Sink) -> None:
    if source.read(8) != _PNG_SIGNATURE:
        raise NotAnImage("not a PNG")
    target.write(_PNG_SIGNATURE)
    while True:
        header = source.read(8)
        if not header:
            return
        if len(header) < 8:
            raise NotAnImage("truncated PNG")
        length, kind = struct.unpack(">I4s", header)
        if kind in _PNG_DROPPED:
            source.seek(length + 4, io.SEEK_CUR)  # the data and its CRC
            continue
        target.write(header)
        _copy(source, target, length + 4)
        if kind == b"IEND":
            return


def dimensions(path: Path) -> tuple[int, int] | None:
    """Width and height from the header (nothing decoded), or None when Pillow cannot read it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None
    return width, height


def _upright(path: Path, box: int, max_pixels: int) -> Image.Image:
    """The image decoded (at a reduced scale for JPEG when ``box`` allows), turned upright, as RGB or RGBA."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(path) as opened:
        opened.draft("RGB", (box, box))  # JPEG: decode at a reduced scale, far cheaper
        image = ImageOps.exif_transpose(opened)
        image.load()
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def thumbnails(path: Path, sizes: Sequence[int], max_pixels: int) -> dict[int, bytes]:
    """Thumbnails whose longest side is each of ``sizes`` (never enlarged), as JPEG (WebP when transparent). The
    caller has checked the dimensions against ``max_pixels``."""
    image = _upright(path, max(sizes), max_pixels)
    made: dict[int, bytes] = {}
    for size in sorted(sizes):
        copy = image.copy()
        copy.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if image.mode == "RGBA":
            copy.save(out, "WEBP", quality=80)
        else:
            copy.save(out, "JPEG", quality=80, optimize=True)
        made[size] = out.getvalue()
    return made


def placeholder(path: Path, max_pixels: int) -> str | None:
    """A blurhash of the image: a few dozen characters a client paints while the thumbnail loads. None when its
    pixels do not decode (a header that promises an image the rest of the file does not hold)."""
    try:
        small = _upright(path, 64, max_pixels).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    small.thumbnail((32, 32))
    raw = small.tobytes()  # RGB, row by row
    pixels = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    rows = [pixels[y * small.width:(y + 1) * small.width] for y in range(small.height)]
    return str(blurhash.encode(rows, components_x=4, components_y=3))

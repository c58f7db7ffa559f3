"""An image file's kind and size from its header, in pure Python (no decoding, no PIL).

Counting an epoch with buckets needs every image's size, and `validate` stays fast: the size is read
from the first bytes the way sd-scripts' `imagesize` reads it (by content, not by extension; the
stored size, before any EXIF rotation, which sd-scripts does not apply either). PNG, JPEG, GIF, BMP,
WebP and TIFF are read; a file of another kind that PIL opens gets size None here.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

#: First bytes of the formats an image file may hold (PIL reads by content, not by extension).
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
#: How far into a JPEG the size is looked for (its SOF marker follows the EXIF and colour tables).
_JPEG_LIMIT = 16 * 1024 * 1024


class ImageHead(NamedTuple):
    """What a file's first bytes say: why it is no image (None when it may be one) and its size."""

    unreadable: str | None
    size: tuple[int, int] | None = None


def read_head(path: str, want_size: bool = True) -> ImageHead:
    """The kind check (an empty file, no image signature) and, when asked, the (width, height)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not head:
                return ImageHead("an empty file (0 bytes)")
            if not (head.startswith(SIGNATURES) or is_webp(head)):
                return ImageHead(f"not an image (it starts with {head[:8]!r})")
            return ImageHead(None, image_size(f, head) if want_size else None)
    except OSError as exc:
        return ImageHead(f"cannot be opened ({exc.strerror or exc})")


def is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def image_size(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """(width, height) of an open image whose first 32 bytes are `head`; None when the header is cut
    short or of a kind not read here."""
    try:
        if head.startswith(b"\x89PNG") and head[12:16] == b"IHDR":
            return _positive(struct.unpack(">II", head[16:24]))
        if head.startswith((b"GIF87a", b"GIF89a")):
            return _positive(struct.unpack("<HH", head[6:10]))
        if head.startswith(b"BM"):
            return _bmp_size(f)
        if is_webp(head):
            return _webp_size(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(f)
        if head.startswith((b"II*\x00", b"MM\x00*")):
            return _tiff_size(f, "<" if head[:2] == b"II" else ">")
    except (struct.error, OSError, ValueError):
        return None
    return None


def _positive(size: tuple[int, int]) -> tuple[int, int] | None:
    return (int(size[0]), int(size[1])) if size[0] > 0 and size[1] > 0 else None


def _bmp_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(14)
    header = f.read(12)
    (length,) = struct.unpack("<I", header[:4])
    if length == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return _positive(struct.unpack("<HH", header[4:8]))
    width, height = struct.unpack("<ii", header[4:12])
    return _positive((width, abs(height)))  # a negative height: rows stored top-down


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return _positive((width & 0x3FFF, height & 0x3FFF))
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """The size in the first start-of-frame marker (SOF0-SOF15 but DHT, JPG and DAC)."""
    f.seek(2)
    while f.tell() < _JPEG_LIMIT:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker or marker in (b"\xd8", b"\x01") or b"\xd0" <= marker <= b"\xd7":
            continue  # markers without a length
        if marker == b"\xd9":
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if b"\xc0" <= marker <= b"\xcf" and marker not in (b"\xc4", b"\xc8", b"\xcc"):
            height, width = struct.unpack(">xHH", f.read(5))
            return _positive((width, height))
        f.seek(length - 2, 1)
    return None


def _tiff_size(f: BinaryIO, order: str) -> tuple[int, int] | None:
    f.seek(4)
    (offset,) = struct.unpack(order + "I", f.read(4))
    f.seek(offset)
    (count,) = struct.unpack(order + "H", f.read(2))
    found: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        tag, kind, _n = struct.unpack(order + "HHI", f.read(8))
        value = f.read(4)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    if 256 in found and 257 in found:
        return _positive((found[256], found[257]))
    return None

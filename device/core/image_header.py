"""Read an image's format and size from its first bytes, without decoding a single pixel.

A 875 KB PNG can declare 30000x30000 pixels: decoding it takes gigabytes before anything can
refuse it. Every format the device decodes states its size in a small header, so the size is
read here first and a decoder only ever sees an image already known to fit. Pure Python, no
OpenCV and no PIL (neither is needed on a device to answer "how big is it?").

Each reader gets the whole buffer (or its head) and returns an :class:`ImageHeader`, or raises
:class:`HeaderError` with the reason in a few words when the bytes are not a well-formed header.
:func:`read_header` returns None for a format it does not know, so the caller decides what an
unknown format means.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class HeaderError(ValueError):
    """The bytes start like a known format but do not hold a usable header (the reason, short)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a header says: the format's short name and the size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise HeaderError(f"truncated {what} header")


def _png(data: bytes) -> ImageHeader:
    # signature (8), then the first chunk must be IHDR: length (4) type (4) width (4) height (4)
    _need(data, 24, "PNG")
    if data[12:16] != b"IHDR":
        raise HeaderError("PNG without IHDR chunk first")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("PNG", width, height)


# Start-of-frame markers that carry the frame size (C4 DHT, C8 JPG and CC DAC do not).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field: TEM, RST0-7, SOI, EOI.
_JPEG_BARE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Yield (marker, start of its payload, payload length) for each marker segment after SOI.

    Entropy-coded data after each SOS is skipped (stuffed ``FF 00`` and restart markers are part
    of it), so a progressive JPEG's later tables and scans are found as well. Ends after EOI, or
    raises :class:`HeaderError` when the data ends first.
    """
    pos, end = 2, len(data)
    while True:
        if pos >= end:
            raise HeaderError("truncated JPEG")
        if data[pos] != 0xFF:
            raise HeaderError("JPEG marker expected")
        while pos < end and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= end:
            raise HeaderError("truncated JPEG")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_BARE:
            yield marker, pos, 0
            if marker == 0xD9:
                return
            continue
        if pos + 2 > end:
            raise HeaderError("truncated JPEG")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise HeaderError("JPEG segment of impossible length")
        yield marker, pos + 2, length - 2
        pos += length
        if marker == 0xDA:  # start of scan: skip entropy-coded data up to the next real marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= end:
                    raise HeaderError("truncated JPEG")
                follower = data[pos + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                    pos += 2
                    continue
                if follower == 0xFF:  # fill byte: the marker follows
                    pos += 1
                    continue
                break


def _jpeg(data: bytes) -> ImageHeader:
    for marker, start, length in _jpeg_segments(data):
        if marker in _JPEG_SOF:
            if length < 5 or start + 5 > len(data):
                raise HeaderError("truncated JPEG frame header")
            height, width = struct.unpack(">HH", data[start + 1 : start + 5])
            return ImageHeader("JPEG", width, height)
        if marker in (0xDA, 0xD9):
            break
    raise HeaderError("JPEG without a frame header")


def jpeg_is_complete(data: bytes) -> bool:
    """True when the JPEG's segments and scans run to an end-of-image marker.

    Bytes after that marker (metadata some cameras and editors append) do not make it truncated,
    and an ``FF D9`` inside a metadata segment (an EXIF thumbnail's) does not make a cut file whole.
    """
    try:
        return any(marker == 0xD9 for marker, _, _ in _jpeg_segments(data))
    except HeaderError:
        return False


def png_problem(data: bytes) -> str | None:
    """Why a PNG cannot be decoded whole (truncated, or a critical chunk failing its CRC), or None.

    libpng finds both too, but only after printing its own ``libpng error:`` line on stderr, which
    would break the one-line error; zlib's CRC runs over the file at C speed. Bytes after IEND do
    not matter, and an ancillary chunk with a bad CRC is left for libpng to skip as it always has.
    """
    pos, end = 8, len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > end:
            break
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if kind[:1].isupper() and zlib.crc32(data[pos + 4 : pos + 8 + length]) != crc:
            return f"corrupt PNG ({ascii(kind)[2:-1]} chunk fails its CRC check)"
        if kind == b"IEND":
            return None
        pos += 12 + length
    return "truncated PNG (no IEND chunk)"


def _bmp(data: bytes) -> ImageHeader:
    _need(data, 26, "BMP")
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    elif dib_size >= 40:
        width, height = struct.unpack("<ii", data[18:26])
    else:
        raise HeaderError("BMP with an unknown info header")
    return ImageHeader("BMP", abs(width), abs(height))  # a negative height means top-down rows


def _webp(data: bytes) -> ImageHeader:
    _need(data, 30, "WebP")
    kind, payload = data[12:16], 20
    if kind == b"VP8 ":  # lossy: frame tag (3), start code 9d 01 2a, 14-bit sizes
        if data[payload + 3 : payload + 6] != b"\x9d\x01\x2a":
            raise HeaderError("WebP VP8 frame without start code")
        width, height = struct.unpack("<HH", data[payload + 6 : payload + 10])
        return ImageHeader("WebP", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L":  # lossless: signature 2f, then 14 bits width-1 and 14 bits height-1
        if data[payload] != 0x2F:
            raise HeaderError("WebP VP8L without signature")
        (bits,) = struct.unpack("<I", data[payload + 1 : payload + 5])
        return ImageHeader("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":  # extended: flags (4), then 24-bit canvas width-1 and height-1
        width = int.from_bytes(data[payload + 4 : payload + 7], "little") + 1
        height = int.from_bytes(data[payload + 7 : payload + 10], "little") + 1
        return ImageHeader("WebP", width, height)
    raise HeaderError("WebP with an unknown first chunk")


def _gif(data: bytes) -> ImageHeader:
    """Logical screen size; the first block after the (optional) global colour table must be valid,
    so six letters of text after ``GIF89a`` are not taken for a size."""
    _need(data, 14, "GIF")
    width, height, flags = struct.unpack("<HHB", data[6:11])
    table = 3 << ((flags & 7) + 1) if flags & 0x80 else 0
    _need(data, 14 + table, "GIF")
    if data[13 + table] not in (0x21, 0x2C, 0x3B):  # extension, image descriptor, trailer
        raise HeaderError("GIF without a valid first block")
    return ImageHeader("GIF", width, height)


def _tiff(data: bytes) -> ImageHeader:
    """The first image file directory's ImageWidth (256) and ImageLength (257); BigTIFF too."""
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    big = version == 43
    _need(data, 16 if big else 8, "TIFF")
    offset = struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    count_fmt, entry_size, head = ("Q", 20, 8) if big else ("H", 12, 2)
    _need(data, offset + head, "TIFF")
    (count,) = struct.unpack(order + count_fmt, data[offset : offset + head])
    sizes: dict[int, int] = {}
    value_fmt = {3: "H", 4: "I", 16: "Q"}
    for n in range(min(count, 4096)):
        at = offset + head + n * entry_size
        _need(data, at + entry_size, "TIFF")
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in (256, 257) and kind in value_fmt:
            value_at = at + (12 if big else 8)
            (sizes[tag],) = struct.unpack(
                order + value_fmt[kind], data[value_at : value_at + struct.calcsize(value_fmt[kind])]
            )
    if 256 not in sizes or 257 not in sizes:
        raise HeaderError("TIFF without image width and length")
    return ImageHeader("TIFF", sizes[256], sizes[257])


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n?)*([^\s#]+)")


def _pnm(data: bytes) -> ImageHeader:
    """Netpbm P1-P6 and PFM (``PF``/``Pf``): magic, then width and height as ASCII tokens; PAM (P7) by keys."""
    head = data[:4096]
    if head[:2] == b"P7":
        width = re.search(rb"\nWIDTH\s+(\d+)", head)
        height = re.search(rb"\nHEIGHT\s+(\d+)", head)
        if not (width and height):
            raise HeaderError("PAM without WIDTH and HEIGHT")
        return ImageHeader("PAM", int(width.group(1)), int(height.group(1)))
    tokens: list[int] = []
    pos = 2
    while len(tokens) < 2:
        match = _PNM_TOKEN.match(head, pos)
        if match is None or not match.group(1).isdigit():
            raise HeaderError("Netpbm header without width and height")
        tokens.append(int(match.group(1)))
        pos = match.end()
    return ImageHeader("PNM", tokens[0], tokens[1])


def _sun_raster(data: bytes) -> ImageHeader:
    _need(data, 12, "Sun raster")
    width, height = struct.unpack(">II", data[4:12])
    return ImageHeader("Sun raster", width, height)


_HDR_SIZE = re.compile(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)")


def _radiance(data: bytes) -> ImageHeader:
    """Radiance HDR: text lines, a blank line, then e.g. ``-Y 480 +X 640`` (rows first as a rule)."""
    match = _HDR_SIZE.search(data[:8192])
    if match is None or match.group(2) == match.group(5):
        raise HeaderError("Radiance HDR without a size line")
    first, second = int(match.group(3)), int(match.group(6))
    width, height = (second, first) if match.group(2) == b"Y" else (first, second)
    return ImageHeader("Radiance HDR", width, height)


_READERS: tuple[tuple[Callable[[bytes], bool], Callable[[bytes], ImageHeader]], ...] = (
    (lambda d: d[:8] == b"\x89PNG\r\n\x1a\n", _png),
    (lambda d: d[:3] == b"\xff\xd8\xff", _jpeg),
    (lambda d: d[:2] == b"BM", _bmp),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda d: d[:4] == b"\x59\xa6\x6a\x95", _sun_raster),
    (lambda d: d[:10] == b"#?RADIANCE" or d[:6] == b"#?RGBE", _radiance),
    (lambda d: len(d) > 2 and d[0:1] == b"P" and d[1:2] in b"1234567Ff" and d[2:3].isspace(), _pnm),
)


def read_header(data: bytes) -> ImageHeader | None:
    """The format and size the bytes declare; None when no reader here knows the format.

    Raises :class:`HeaderError` when the format is known but the header is malformed or cut.
    """
    for matches, reader in _READERS:
        if matches(data):
            try:
                return reader(data)
            except struct.error:
                raise HeaderError("truncated header") from None
    return None

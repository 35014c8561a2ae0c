"""An image's size from its header, checked before a pixel is decoded.

A 3 KB JPEG whose header says 20000x20000 makes OpenCV allocate 1.2 GB and return grey (libjpeg only
warns when the data run out). Two checks, both from the header alone:

- the pixel count against a limit (`--max-pixels`): decoding needs 3 bytes a pixel, so the limit bounds
  each decoding process's memory;
- for a Huffman-coded JPEG (every JPEG a camera or libjpeg writes), the bytes of image data against
  the least that many pixels need: each 8x8 block of the first component costs at least one bit (a
  Huffman code is never shorter), so fewer bytes than blocks/8 cannot hold the picture: the header is
  damaged and the image would decode to grey.

JPEG headers are read here (the markers up to the first scan); other formats' by Pillow, which reads
only the header until asked for pixels. A format Pillow does not know is left to OpenCV, whose own
pixel limit (CV_IO_MAX_IMAGE_PIXELS) the decoding processes set to the same number.
"""
from __future__ import annotations

import os
import struct

DEFAULT_MAX_PIXELS = 100_000_000   # 300 MB a decode; ILSVRC2012's and SUN-397's largest images are far below
_SOF_HUFFMAN = {0xC0, 0xC1, 0xC2, 0xC3}                 # baseline, extended, progressive, lossless
_SOF_OTHER = {0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}   # hierarchical, arithmetic
_STANDALONE = {0x01, *range(0xD0, 0xD8)}                # TEM, RSTn: no length field


def jpeg_header(path: str) -> tuple[int, int, int, int] | None:
    """(width, height, SOF marker, offset of the first scan's data) of a JPEG file, or None when it is
    not a JPEG or its markers cannot be followed (OpenCV then decides)."""
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return None
        sof: tuple[int, int, int] | None = None
        while True:
            head = f.read(2)
            if len(head) < 2 or head[0] != 0xFF:
                return None
            marker = head[1]
            if marker == 0xFF:          # fill byte before a marker
                f.seek(-1, os.SEEK_CUR)
                continue
            if marker in _STANDALONE:
                continue
            raw = f.read(2)
            if len(raw) < 2:
                return None
            length = struct.unpack(">H", raw)[0]
            if length < 2:
                return None
            if marker in _SOF_HUFFMAN | _SOF_OTHER:
                body = f.read(5)
                if len(body) < 5:
                    return None
                height, width = struct.unpack(">HH", body[1:5])
                sof = (width, height, marker)
                f.seek(length - 2 - 5, os.SEEK_CUR)
            elif marker == 0xDA:        # start of scan: the image data follow its header
                if sof is None:
                    return None
                f.seek(length - 2, os.SEEK_CUR)
                return (*sof, f.tell())
            elif marker == 0xD9:        # end of image before any scan
                return None
            else:
                f.seek(length - 2, os.SEEK_CUR)


def _other_size(path: str) -> tuple[int, int] | None:
    from PIL import Image  # noqa: PLC0415 (only the decoding processes need it)

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None   # our limit, not Pillow's warning/error, decides
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 (a header Pillow cannot read: OpenCV decides)
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def header_problem(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the image at `path` must not be decoded, from its header alone; None when it may be."""
    jpeg = jpeg_header(path)
    if jpeg is not None:
        width, height, sof, data_at = jpeg
        size = (width, height)
        blocks = -(-width // 8) * -(-height // 8)
        data = os.path.getsize(path) - data_at
        if sof in _SOF_HUFFMAN and height and data * 8 < blocks:
            return (f"its header says {width}x{height} pixels, but it holds {data:,} bytes of image data, "
                    f"fewer than any JPEG of that size needs ({-(-blocks // 8):,}): the header is damaged "
                    "and the image would decode to grey")
    else:
        size = _other_size(path)
    if size is None:
        return None
    width, height = size
    if width * height > max_pixels:
        return (f"its header says {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
                "(--max-pixels): a decompression bomb or a damaged header (raise --max-pixels if the image is real)")
    return None

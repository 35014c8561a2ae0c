"""Image lists and the one image -> Datum conversion, pixel for pixel as Caffe's convert_imageset.

convert_imageset decodes with OpenCV (`cv::imread`, colour: BGR, grayscale replicated, CMYK converted,
format sniffed from the bytes so a PNG named .JPEG works) and warps with `cv::resize` at INTER_LINEAR.
`CVMatToDatum` stores the pixels channel-major and sets `encoded = false` explicitly, so the serialized
Datum carries that field; we do the same, which makes our Datums byte-identical to convert_imageset's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import TransferError
from .imagesize import DEFAULT_MAX_PIXELS, header_problem

# A JPEG ends with the EOI marker; a file cut short does not. libjpeg only warns on truncation and
# returns the missing rows grey, so a truncated file must be caught here, not by cv2's result.
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_TAIL = 1024  # some encoders pad after EOI; look at the last KiB


@dataclass(frozen=True, slots=True)  # slots: a whole ILSVRC list is 1.28 million of these
class Entry:
    """One line of a Caffe list file: `relative/path label`."""

    line: int   # 1-based line number in the list file
    path: str
    label: int


class ImageError(Exception):
    """An image that cannot be used; the message is the reason (missing, not an image, truncated)."""


def read_list(list_path: str | os.PathLike, num_classes: int | None = None) -> list[Entry]:
    """Parse a Caffe list (`path label`, split at the last space like convert_imageset).

    Checked where it enters, each fault named with file:line: UTF-8 text without a byte-order mark,
    no blank lines (a final newline is fine; CRLF ends are tolerated as convert_imageset does), a
    label that is a whole number in 0..num_classes-1 (0.. when the class count is not given)."""
    p = Path(list_path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TransferError(f"cannot read list {p}: {exc.strerror}") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raise TransferError(f"{p}:1: starts with a UTF-8 byte-order mark, which would become part of the "
                            "first path; save the list without it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TransferError(f"{p}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}); is it a list?") from None
    entries = []
    for n, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            if n == text.count("\n") + 1 and not raw_line:
                continue  # after the final newline
            raise TransferError(f"{p}:{n}: blank line (a list holds one 'relative/path label' a line)")
        path, sep, label = line.rpartition(" ")
        if not sep or not path.strip() or not (label.isascii() and label.isdigit()):
            raise TransferError(f"{p}:{n}: expected 'relative/path label' (label a whole number >= 0), "
                                f"got {line!r}")
        if num_classes is not None and int(label) >= num_classes:
            raise TransferError(f"{p}:{n}: label {label} is outside 0..{num_classes - 1} "
                                f"({num_classes} classes)")
        entries.append(Entry(n, path, int(label)))
    if not entries:
        raise TransferError(f"list {p} holds no images")
    return entries


def _looks_truncated(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
        if head != _JPEG_SOI:
            return False  # other formats: OpenCV's decoders fail loudly on truncation (PNG's CRC etc.)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _TAIL))
        return _JPEG_EOI not in f.read()


def _pillow_confirms_truncated(path: str) -> str | None:
    """Decode fully with Pillow (which raises on a truncated stream); the reason, or None if it decodes."""
    from PIL import Image, ImageFile  # noqa: PLC0415 (rare path)

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 (any decoder failure is the reason we report)
        return f"corrupt JPEG ({exc})"
    return None


def load_warped(path: str, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image at `path` as convert_imageset sees it: HxWx3 uint8 BGR, warped to (width, height).
    Its header is checked first (transfer/data/imagesize.py): an image over `max_pixels`, or one whose
    header promises more than its data hold, is an ImageError before anything is decoded."""
    import cv2  # noqa: PLC0415 (keeps `transfer --help` fast)

    if not os.path.isfile(path):
        raise ImageError("file not found")
    problem = header_problem(path, max_pixels)
    if problem:
        raise ImageError(problem)
    # The released databases came from OpenCV 2.4, which never applied a JPEG's EXIF orientation;
    # OpenCV >= 3.1 does unless told not to.
    img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError("not a decodable image")
    if _looks_truncated(path):
        reason = _pillow_confirms_truncated(path)
        if reason:
            raise ImageError(reason)
    if img.shape[0] != height or img.shape[1] != width:
        img = cv2.resize(img, (width, height))  # INTER_LINEAR, as cv::resize's default
    return img


def datum_bytes(pb2, img: np.ndarray, label: int) -> bytes:
    """Serialized Datum of an HxWxC uint8 image, channel-major, as Caffe's CVMatToDatum."""
    h, w, c = img.shape
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    d = pb2.Datum(channels=c, height=h, width=w, data=chw.tobytes(), label=label, encoded=False)
    return d.SerializeToString()


def datum_array(pb2, value: bytes) -> tuple[np.ndarray, int]:
    """(CxHxW uint8 array, label) of a serialized raw Datum."""
    try:
        d = pb2.Datum.FromString(value)
    except Exception:  # noqa: BLE001 (protobuf's DecodeError: damaged bytes)
        raise TransferError("not a Datum (its bytes are damaged)") from None
    if d.encoded:
        raise TransferError("encoded Datums are not supported (this project stores raw pixels)")
    return np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width), d.label

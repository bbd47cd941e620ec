"""Checking that an image file decodes completely: truncated, zero-filled and corrupt files are errors.

libjpeg, and so cv2.imread, decodes a JPEG whose end is missing without an error, filling the missing
part grey; `jpeg_complete` catches that from the bytes alone, `verify_image` also decodes the file.
Kept apart from `structvid.io.images` so that data readers (`structvid.data.penn_action`, `data check`)
do not import torch.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from structvid.errors import UserError

__all__ = ["jpeg_complete", "verify_image"]

_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RST0-7)


def jpeg_complete(data: bytes) -> bool:
    """False when `data` is a JPEG whose scan data is not followed by an end-of-image marker (FFD9): a
    truncated or zero-filled file, which libjpeg (and so OpenCV) decodes without an error, filling the rest
    grey. True for complete JPEGs (trailing bytes after the marker are allowed) and for other formats.

    The header segments are skipped by their lengths, so an EXIF thumbnail's own markers do not count;
    inside scan data 0xFF is always byte-stuffed, so FFD9 can only be the real marker.
    """
    if not data.startswith(b"\xff\xd8"):
        return True
    i = 2
    while True:
        i = data.find(b"\xff", i)  # libjpeg likewise skips stray bytes between segments
        if i < 0 or i + 1 >= len(data):
            return False  # ends inside the header
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xDA:  # start of scan: the compressed data follows
            return data.find(b"\xff\xd9", i + 2) >= 0
        elif marker == 0xD9:
            return False  # end of image before any scan
        elif marker in _JPEG_STANDALONE:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")


def verify_image(path: str | Path) -> tuple[int, int]:
    """Decode the image file `path` completely and return its (width, height) as displayed (EXIF rotation
    applied, like cv2.imread); a missing, truncated (`jpeg_complete`) or undecodable file raises UserError.

    JPEGs are decoded at 1/8 scale: every block's compressed data is still read, at about 1.2 ms for a
    480x360 frame on one core.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("image file not found", path) from None
    except OSError as e:
        raise UserError(f"cannot read image file ({e.strerror or e})", path) from None
    if not data:
        raise UserError("image file is empty", path)
    if not jpeg_complete(data):
        raise UserError("JPEG is truncated or corrupt (no end-of-image marker after its image data)", path)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if im.format == "JPEG":
                im.draft(None, (max(1, width // 8), max(1, height // 8)))
            im.load()  # ImageFile.LOAD_TRUNCATED_IMAGES is False: missing data raises here
            rotated = im.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientations that swap the axes
    except UnidentifiedImageError:
        raise UserError("is not a readable image (unknown format or corrupt)", path) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot decode image ({e})", path) from None
    return (height, width) if rotated else (width, height)

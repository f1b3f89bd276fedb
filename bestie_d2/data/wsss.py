"""The one reader of WSSS semantic maps, used by training (the mapper), the tools and the data check.

A WSSS map is a PNG at the image's size holding label values: 0 = background, ``c + 1`` = class
``c`` (``c = 0..C-1``), 255 = ignore. :func:`read_wsss_map` checks, naming the file in every error:

* the file exists and is an image (``MissingDataError`` / ``WSSSMapError``);
* its mode: palette ("P", the indices are the values) or grey ("L", 16/32-bit grey "I*"). An RGB(A)
  image drawn in the VOC palette is mapped back through the palette, with a log line; a colour
  outside the palette, or any other mode, is a ``WSSSMapError``;
* its size equals the image's (``ImageSizeMismatchError``), when the image size is given;
* every value is in ``{0..C, 255}`` (``ClassIdError``), with the likely cause.
"""
import logging
import os
from typing import Optional, Sequence, Tuple

import numpy as np
from ..utils.label_png import decode_label_png
from .errors import ClassIdError, ImageSizeMismatchError, MissingDataError, WSSSMapError

__all__ = ["read_wsss_map", "read_wsss_map_with_mode", "check_wsss_values", "label_histogram", "WSSS_IGNORE"]

logger = logging.getLogger(__name__)

WSSS_IGNORE = 255
_rgb_logged = False


def _decode(path: str) -> Tuple[np.ndarray, str]:
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise WSSSMapError("expected a WSSS map PNG, found a folder", path=path)
        raise MissingDataError(
            "WSSS map does not exist (make it with cam_to_semantic, or point BESTIE.DATA.WSSS_DIR at "
            "your WSSS method's maps)", path=path,
        )
    return decode_label_png(
        path, error=WSSSMapError, what="WSSS map", bilevel=False,
        mode_hint=": save WSSS maps as palette (P) or grey (L) PNGs holding the label values "
                  "(0 bg, c+1 class c, 255 ignore)",
    )


def label_histogram(sem: np.ndarray) -> np.ndarray:
    """Pixel count of each value 0..255 of a uint8 map, ``(256,)`` int64 (OpenCV: ~2x bincount)."""
    sem = np.ascontiguousarray(sem, dtype=np.uint8)
    if sem.size == 0:
        return np.zeros(256, dtype=np.int64)
    if sem.size >= 1 << 24:  # float32 counts are exact below 2**24
        return np.bincount(sem.reshape(-1), minlength=256).astype(np.int64)
    import cv2

    return cv2.calcHist([sem.reshape(sem.shape[0], -1)], [0], None, [256], [0, 256]).reshape(-1).astype(np.int64)


def check_wsss_values(sem: np.ndarray, num_classes: int, path: Optional[str] = None) -> np.ndarray:
    """Raise ``ClassIdError`` (naming ``path``) unless every value of ``sem`` is in ``{0..C, 255}``;
    returns ``sem`` as uint8."""
    C = int(num_classes)
    sem = np.asarray(sem)
    if sem.dtype != np.uint8:
        lo, hi = (int(sem.min()), int(sem.max())) if sem.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ClassIdError(
                f"WSSS map values {lo}..{hi} do not fit the label range (0 bg, 1..{C} = class + 1, "
                f"{WSSS_IGNORE} ignore)", path=path,
            )
        sem = sem.astype(np.uint8)
    if sem.size == 0:
        return sem
    hi = int(sem.max())
    if hi <= C or (hi == WSSS_IGNORE and not ((sem > C) & (sem != WSSS_IGNORE)).any()):
        return sem  # fast path: all values allowed
    counts = label_histogram(sem)
    bad = np.flatnonzero(counts[C + 1:WSSS_IGNORE]) + C + 1
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        n = int(counts[bad].sum())
        if bad.size == 1 and bad[0] == C + 1:
            hint = "class c written as c+2 (1-based class ids plus the background shift?)"
        elif bad.size > C or bad.max() >= 128:
            hint = "a colour or scaled-grey visualisation instead of label values?"
        else:
            hint = (f"a map made for a data set with more classes than C={C} (e.g. COCO's 80), or a "
                    "wrong BESTIE.NUM_CLASSES?")
        raise ClassIdError(
            f"WSSS map has values out of range: {shown} ({n} pixels); allowed are 0 (background), "
            f"1..{C} (class c written as c+1, C={C}) and {WSSS_IGNORE} (ignore). Likely cause: {hint}",
            path=path,
        )
    return sem


def read_wsss_map_with_mode(
    path, num_classes: int, image_size: Optional[Sequence[int]] = None, *, image_path: Optional[str] = None
) -> Tuple[np.ndarray, str]:
    """:func:`read_wsss_map` without the RGB log line, returning ``(map, PIL mode)`` so that callers
    checking many maps can count the RGB ones."""
    path = os.fspath(path)
    if num_classes is None or int(num_classes) <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    sem, mode = _decode(path)
    if image_size is not None:
        H, W = int(image_size[0]), int(image_size[1])
        h, w = sem.shape
        if (h, w) != (H, W):
            img = f" {image_path}" if image_path else ""
            raise ImageSizeMismatchError(
                f"WSSS map is {w}x{h} (WxH: W={w}, H={h}) but the image{img} is {W}x{H} "
                f"(W={W}, H={H}); WSSS maps must have the original image size",
                path=path,
            )
    return check_wsss_values(sem, num_classes, path), mode


def read_wsss_map(
    path, num_classes: int, image_size: Optional[Sequence[int]] = None, *, image_path: Optional[str] = None
) -> np.ndarray:
    """Read and check a WSSS map (module doc); returns the ``(H, W)`` uint8 label map.

    Args:
        path: the PNG.
        num_classes: C; values must be in ``{0..C, 255}``.
        image_size: ``(H, W)`` of the image, checked when given.
        image_path: the image, named in a size-mismatch error.

    Raises:
        MissingDataError (also ``FileNotFoundError``), WSSSMapError (unreadable, unsupported mode,
        non-palette colour), ImageSizeMismatchError, ClassIdError — each naming the file.
    """
    global _rgb_logged
    sem, mode = read_wsss_map_with_mode(path, num_classes, image_size, image_path=image_path)
    if mode in ("RGB", "RGBA"):
        msg = (f"WSSS map {os.fspath(path)} is an {mode} image: its colours were mapped back to label "
               "values through the VOC palette (save palette or grey PNGs to avoid this)")
        if not _rgb_logged:
            logger.warning(msg + "; further RGB maps are logged at DEBUG level")
            _rgb_logged = True
        else:
            logger.debug(msg)
    return sem

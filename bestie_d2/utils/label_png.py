"""Label-map PNGs: the PASCAL VOC palette and the one decoder of label values.

Label maps (VOC ``SegmentationClass`` / ``SegmentationObject``, WSSS maps) hold one label value per
pixel: palette ("P") images store the values as palette indices, grey images as grey levels; an
RGB image drawn in the VOC palette is mapped back through the palette. Errors are raised as the
caller's error type (``error=``, e.g. ``AnnotationError`` or ``WSSSMapError``), naming the file.
"""
import os
from typing import Tuple

import numpy as np
from PIL import Image

__all__ = ["VOC_PALETTE", "GREY_INT_MODES", "voc_colormap", "rgb_to_voc_labels", "decode_label_png"]

#: PIL modes of 16/32-bit grey PNGs (read as int32 label values).
GREY_INT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette: ``(n, 3)`` uint8, index 0 black, 255 = (224, 224, 192)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


#: The VOC palette, ``(256, 3)`` uint8 RGB (read-only).
VOC_PALETTE = voc_colormap(256)
VOC_PALETTE.setflags(write=False)
_PALETTE_LOOKUP = {
    (int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in reversed(list(enumerate(VOC_PALETTE)))
}


def rgb_to_voc_labels(rgb: np.ndarray, path=None, *, error) -> np.ndarray:
    """Map an ``(H, W, 3)`` image drawn in the VOC palette back to its ``(H, W)`` uint8 label
    values; a colour outside the palette raises ``error`` (a ``BestieDataError`` type) naming the
    colour (and ``path``)."""
    rgb = np.asarray(rgb).astype(np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inv = np.unique(packed, return_inverse=True)
    idx = []
    for col in colours.tolist():
        if col not in _PALETTE_LOOKUP:
            raise error(
                f"colour RGB{(col >> 16, (col >> 8) & 255, col & 255)} is not a VOC palette colour "
                "(save label maps as palette or grey PNGs holding the label values)",
                path=None if path is None else os.fspath(path),
            )
        idx.append(_PALETTE_LOOKUP[col])
    return np.asarray(idx, dtype=np.uint8)[inv.reshape(packed.shape)]


def decode_label_png(path: str, *, error, what: str = "label map", bilevel: bool = True,
                     mode_hint: str = "") -> Tuple[np.ndarray, str]:
    """Decode an existing label-map PNG into its label values; returns ``(labels, PIL mode)``.

    Palette ("P"), grey ("L") and, with ``bilevel``, 1-bit ("1") images give their stored values
    (uint8); 16/32-bit grey ("I*") images give int32; an RGB(A) image drawn in the VOC palette is
    mapped back through the palette (:func:`rgb_to_voc_labels`). Any other mode, an unreadable
    file, a colour outside the palette or a multi-channel result raises ``error`` naming ``path``
    (a ``BestieDataError`` type; ``mode_hint`` is appended to the unsupported-mode message). The one PNG decoder of label maps:
    :func:`~bestie_d2.data.datasets.label_maps.read_label_map` and
    :func:`~bestie_d2.data.wsss.read_wsss_map` use it.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L") or (bilevel and mode == "1"):
                arr = np.array(im, dtype=np.uint8)
            elif mode in GREY_INT_MODES:
                arr = np.array(im).astype(np.int32)
            elif mode in ("RGB", "RGBA"):
                arr = np.array(im.convert("RGB"))
            else:
                raise error(f"unsupported image mode {mode!r}{mode_hint}", path=path)
    except error:
        raise
    except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
        raise error(f"cannot read {what} ({type(e).__name__}: {e})", path=path) from None
    if mode in ("RGB", "RGBA"):
        arr = rgb_to_voc_labels(arr, path, error=error)
    if arr.ndim != 2:  # e.g. a multi-frame oddity
        raise error(f"expected a single-channel {what}, got shape {arr.shape} (mode {mode})", path=path)
    return arr, mode

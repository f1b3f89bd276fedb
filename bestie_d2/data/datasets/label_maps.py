"""Read / write single-channel label maps (VOC ``SegmentationClass``/``SegmentationObject``, WSSS maps).

VOC label PNGs are *palette* images: the pixel values are the palette indices. OpenCV's
``imread`` expands palettes to colours, so label maps must be read with PIL (as here).
"""
import os

import numpy as np
from PIL import Image

from ..errors import AnnotationError, MissingDataError

__all__ = ["voc_colormap", "read_label_map", "write_label_map", "rgb_to_voc_labels"]


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


_PALETTE = voc_colormap(256)
_PALETTE_LOOKUP = {
    (int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in reversed(list(enumerate(_PALETTE)))
}


def rgb_to_voc_labels(rgb: np.ndarray, path=None, error=AnnotationError) -> np.ndarray:
    """Map an ``(H, W, 3)`` image drawn in the VOC palette back to its ``(H, W)`` uint8 label
    values; a colour outside the palette raises ``error`` naming the colour (and ``path``)."""
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


def read_label_map(path) -> np.ndarray:
    """Read a label map PNG as a 2-D integer array of label values.

    Palette ("P") and grey ("L") images give their stored values (uint8); 16/32-bit grey images
    give int32. An RGB(A) image is mapped back through the VOC palette (a colour not in the
    palette is an error). Raises ``MissingDataError`` / ``AnnotationError`` naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingDataError("label map does not exist", path=path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.array(im, dtype=np.uint8)
            elif mode in ("I", "I;16", "I;16B", "I;16L"):
                arr = np.array(im).astype(np.int32)
            elif mode == "1":
                arr = np.array(im, dtype=np.uint8)
            elif mode in ("RGB", "RGBA"):
                rgb = np.array(im.convert("RGB"), dtype=np.int64)
                arr = None
            else:
                raise AnnotationError(f"unsupported label-map image mode {mode!r}", path=path)
    except AnnotationError:
        raise
    except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
        raise AnnotationError(f"cannot read label map ({type(e).__name__}: {e})", path=path) from None
    if arr is None:
        arr = rgb_to_voc_labels(rgb, path)
    if arr.ndim != 2:
        raise AnnotationError(f"expected a single-channel label map, got shape {arr.shape}", path=path)
    return arr


def write_label_map(path, labels: np.ndarray, palette: bool = True) -> None:
    """Write a 2-D uint8 label map as a PNG (VOC palette when ``palette``, else grey)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label map values must be in 0..255")
    im = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        im.putpalette(_PALETTE.reshape(-1).tolist())
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))) or ".", exist_ok=True)
    im.save(os.fspath(path), format="PNG")

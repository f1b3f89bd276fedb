"""Read / write single-channel label maps (VOC ``SegmentationClass``/``SegmentationObject``, WSSS maps).

VOC label PNGs are *palette* images: the pixel values are the palette indices. OpenCV's
``imread`` expands palettes to colours, so label maps must be read with PIL
(:func:`~bestie_d2.utils.label_png.decode_label_png`, the one decoder).
"""
import io
import os

import numpy as np
from PIL import Image

from ...utils.io import atomic_write
from ...utils.label_png import VOC_PALETTE, decode_label_png
from ..errors import AnnotationError, MissingDataError

__all__ = ["read_label_map", "write_label_map"]


def read_label_map(path) -> np.ndarray:
    """Read a label map PNG as a 2-D integer array of label values (:func:`decode_label_png`:
    uint8 for palette / grey / 1-bit images, int32 for 16/32-bit grey, RGB(A) mapped back through
    the VOC palette). Raises ``MissingDataError`` / ``AnnotationError`` naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingDataError("label map does not exist", path=path)
    return decode_label_png(path, error=AnnotationError)[0]


def write_label_map(path, labels: np.ndarray, palette: bool = True) -> None:
    """Write a 2-D uint8 label map as a PNG (VOC palette when ``palette``, else grey), atomically;
    creates the folder."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label map values must be in 0..255")
    im = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        im.putpalette(VOC_PALETTE.reshape(-1).tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())

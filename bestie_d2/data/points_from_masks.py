"""Point labels from instance masks: one ``(x, y)`` pixel per instance (issue 14, item 4).

Rules (``rule=``), all of which return a pixel **of the mask** (never an ignored pixel):

``centroid`` (default)
    The mean ``(x, y)`` of the mask's pixels, snapped to the nearest mask pixel (Euclidean
    distance between pixel indices). For a convex shape this is the pixel holding the centroid;
    for a ring, a C shape or an object wrapped around a neighbour, whose centroid lies outside
    the mask, it is the mask pixel closest to the centroid.
``box-center``
    The center of the mask's tight box ``((x_min + x_max) / 2, (y_min + y_max) / 2)`` in pixel
    indices, snapped to the nearest mask pixel the same way.
``random``
    A uniformly drawn mask pixel, from the ``numpy.random.Generator`` passed as ``rng``
    (:func:`image_rng` gives one per image from a seed and the image's name, so a file does not
    depend on which other images are processed or in which order).
``interior``
    The mask pixel farthest from the mask's boundary (the image border counts as boundary),
    ``cv2.distanceTransform`` (L2, 5x5 mask); the rule of the toy data set's GT
    ``Center_points``.

Ties (two pixels equally close to the target, or equally far from the boundary) go to the first
pixel in raster order (row-major). ``ignore`` pixels (e.g. value 255 of a VOC label map) are
removed from the mask before the rule runs; a mask with no pixel left gives no point.

Everything is vectorised over the mask's pixels (``np.nonzero`` on the mask's bounding box, one
distance computation); there is no per-pixel Python loop.
"""
import zlib
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["POINT_RULES", "DEFAULT_RULE", "check_rule", "image_rng", "choose_point", "points_from_masks"]

POINT_RULES: Tuple[str, ...] = ("centroid", "box-center", "random", "interior")
DEFAULT_RULE = "centroid"


def check_rule(rule: str) -> str:
    if rule not in POINT_RULES:
        raise ValueError(f"unknown point rule {rule!r}; choose one of {', '.join(POINT_RULES)}")
    return rule


def image_rng(seed: int, key) -> np.random.Generator:
    """The generator of the ``random`` rule for one image: seeded by ``(seed, crc32(str(key)))``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(key).encode("utf-8"))])


def _bbox(mask: np.ndarray):
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def choose_point(mask, rule: str = DEFAULT_RULE, *, ignore=None, rng: Optional[np.random.Generator] = None
                 ) -> Optional[Tuple[int, int]]:
    """One pixel ``(x, y)`` (column, row) of ``mask`` chosen by ``rule``; None for an empty mask.

    Args:
        mask: ``(H, W)`` bool (or 0/1) array.
        rule: one of :data:`POINT_RULES` (see the module docstring).
        ignore: optional ``(H, W)`` bool array of pixels that may never be chosen.
        rng: the generator of the ``random`` rule (required for it).
    """
    check_rule(rule)
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if ignore is not None:
        ign = np.asarray(ignore, dtype=bool)
        if ign.shape != m.shape:
            raise ValueError(f"ignore map shape {ign.shape} differs from the mask shape {m.shape}")
        m = m & ~ign
    box = _bbox(m)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    crop = m[y0:y1, x0:x1]
    if rule == "interior":
        # Zero padding = the boundary outside the box (and the image border), as the toy generator.
        dist = cv2.distanceTransform(np.pad(crop.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = divmod(int(np.argmax(dist)), crop.shape[1])
        return x0 + x, y0 + y
    ys, xs = np.nonzero(crop)  # raster order
    if rule == "random":
        if rng is None:
            raise ValueError("the 'random' rule needs a numpy Generator (rng=..., e.g. image_rng(seed, name))")
        i = int(rng.integers(ys.size))
        return x0 + int(xs[i]), y0 + int(ys[i])
    if rule == "centroid":
        tx, ty = xs.mean(), ys.mean()
    else:  # box-center (the crop is the tight box)
        tx, ty = (crop.shape[1] - 1) / 2.0, (crop.shape[0] - 1) / 2.0
    d2 = (xs - tx) ** 2 + (ys - ty) ** 2
    i = int(np.argmin(d2))
    return x0 + int(xs[i]), y0 + int(ys[i])


def points_from_masks(masks: Sequence[np.ndarray], classes: Sequence[int], rule: str = DEFAULT_RULE, *,
                      ignore=None, rng: Optional[np.random.Generator] = None, conf: float = 1.0
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """One point per mask, as rows of a points file.

    Args:
        masks: ``(N, H, W)`` bool array or a sequence of ``(H, W)`` masks.
        classes: ``(N,)`` class indices ``0..C-1``.
        rule, ignore, rng: as :func:`choose_point` (one ``rng`` for the image: the masks draw from
            it in order).
        conf: the confidence written for every point (1.0 = a label, as GT ``Center_points``).

    Returns:
        ``points`` ``(K, 4)`` float32 ``[x, y, c, conf]`` (in mask order, empty masks left out) and
        ``kept`` ``(N,)`` bool (False for a mask that had no pixel outside ``ignore``).
    """
    check_rule(rule)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(masks) != classes.size:
        raise ValueError(f"{len(masks)} masks but {classes.size} classes")
    rows, kept = [], np.zeros(classes.size, dtype=bool)
    for i, (m, c) in enumerate(zip(masks, classes)):
        p = choose_point(m, rule, ignore=ignore, rng=rng)
        if p is None:
            continue
        kept[i] = True
        rows.append((p[0], p[1], int(c), float(conf)))
    pts = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
    return pts, kept

"""Pseudo-label generation: instance labels from a WSSS map and instance cues ("semantic knowledge
transfer", paper §3.2).

Implements docs/method.md §2 at crop resolution. For every class ``c`` present in the image label, the
WSSS foreground ``sem == c + 1`` is split into 8-connected components. A component becomes a pseudo
instance only if its area is at least ``min_area`` and it contains **exactly one** cue of class
``c``; cues of other classes are ignored. Every pixel ``p`` of an accepted component gets
``weight = 1`` and ``offset = centroid - p`` (channel 0 = dy, channel 1 = dx), where the centroid is
the component's float centroid truncated to int.

Center targets:

* ``supervision == "image"``: one Gaussian at each accepted component's centroid, in channel ``c``;
* ``supervision == "point"``: one Gaussian at every cue of every labelled class, whatever its
  component (the offsets still point to the centroid, as in the authors' code, docs/method.md §11.7).

Gaussians are pasted with ``bestie_d2.modeling.gaussian.paste_gaussians_numpy``, the numpy sibling
of self-refinement's ``paste_gaussians_`` (same kernel, tested to agree exactly): ``(6σ+3)²`` patches with peak 1 centred at index ``3σ+1``, pasted
with the centre on the integer point, clipped at the borders and max-merged; points outside the
map are skipped. Everything else (background, rejected and small components) stays at
``weight = 0`` with zero center/offset targets.
"""
import cv2
import numpy as np

from ..modeling.gaussian import paste_gaussians_numpy

__all__ = ["make_pseudo_targets", "SUPERVISION_TYPES"]

SUPERVISION_TYPES = ("image", "point")


def _paste(center, channel, points_yx, sigma):
    """Max-merge Gaussians at integer ``(y, x)`` points into ``center[channel]`` (numpy, in place)."""
    paste_gaussians_numpy(center[channel], points_yx, sigma)


def make_pseudo_targets(
    sem_seg,
    points,
    image_label,
    *,
    num_classes,
    supervision,
    sigma=6,
    min_area=50,
):
    """Pseudo center / offset / weight targets of one (augmented) training sample.

    Args:
        sem_seg: ``(H, W)`` integer WSSS map (0 bg, ``c+1`` class c, 255 ignore).
        points: ``(K, 3)`` integer cues ``[y, x, c]`` in ``sem_seg`` pixels, already
            confidence-filtered. Points outside the map or with a class outside ``0..C-1`` are
            ignored.
        image_label: ``(C,)`` bool/float multi-hot image label; only its classes are used.
        num_classes: C.
        supervision: ``"image"`` (Gaussians at accepted centroids) or ``"point"`` (Gaussians at
            the points).
        sigma: Gaussian sigma (pixels).
        min_area: components with fewer pixels are never pseudo instances.

    Returns:
        dict with ``center`` ``(C, H, W)`` float32, ``offset`` ``(2, H, W)`` float32
        (dy, dx; ``centroid - p``), ``weight`` ``(H, W)`` float32 in {0, 1}.
    """
    if supervision not in SUPERVISION_TYPES:
        raise ValueError(f"supervision must be one of {SUPERVISION_TYPES}, got {supervision!r}")
    sem = np.asarray(sem_seg)
    if sem.ndim != 2:
        raise ValueError(f"sem_seg must be (H, W), got shape {sem.shape}")
    H, W = sem.shape
    C = int(num_classes)
    label = np.asarray(image_label).reshape(-1)
    if label.shape[0] != C:
        raise ValueError(f"image_label has {label.shape[0]} entries, expected num_classes={C}")

    center = np.zeros((C, H, W), dtype=np.float32)
    offset = np.zeros((2, H, W), dtype=np.float32)
    weight = np.zeros((H, W), dtype=np.float32)

    pts = np.asarray(points).reshape(-1, 3).astype(np.int64)
    keep = (
        (pts[:, 0] >= 0) & (pts[:, 0] < H) & (pts[:, 1] >= 0) & (pts[:, 1] < W)
        & (pts[:, 2] >= 0) & (pts[:, 2] < C)
    )
    pts = pts[keep]
    gt_classes = np.flatnonzero(label > 0)

    if supervision == "point":
        for c in gt_classes:
            pc = pts[pts[:, 2] == c]
            if len(pc):
                _paste(center, c, pc[:, :2], sigma)

    for c in gt_classes:
        mask = sem == c + 1
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        # connected components inside the class's bounding box only (same result, less work)
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sub = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
        n, labels, stats, cents = cv2.connectedComponentsWithStats(sub, connectivity=8)
        pc = pts[pts[:, 2] == c]
        pc = pc[(pc[:, 0] >= y0) & (pc[:, 0] < y1) & (pc[:, 1] >= x0) & (pc[:, 1] < x1)]
        # number of cues of class c inside each component (label 0 = outside the class mask)
        counts = np.bincount(labels[pc[:, 0] - y0, pc[:, 1] - x0], minlength=n)
        accept = (stats[:, cv2.CC_STAT_AREA] >= min_area) & (counts == 1)
        accept[0] = False
        if not accept.any():
            continue
        # int-truncated float centroids (non-negative, so truncation == floor), full-map coords;
        # label 0 (outside the mask) is skipped: it has no pixel, and a NaN centroid, when the
        # mask fills its bounding box
        cx = np.zeros(n, dtype=np.int64)
        cy = np.zeros(n, dtype=np.int64)
        cx[1:] = cents[1:, 0].astype(np.int64) + x0
        cy[1:] = cents[1:, 1].astype(np.int64) + y0
        ys, xs = np.nonzero(accept[labels])
        lab = labels[ys, xs]
        ys += y0
        xs += x0
        weight[ys, xs] = 1.0
        offset[0, ys, xs] = cy[lab] - ys
        offset[1, ys, xs] = cx[lab] - xs
        if supervision == "image":
            k = np.flatnonzero(accept)
            _paste(center, c, np.stack([cy[k], cx[k]], axis=1), sigma)

    return {"center": center, "offset": offset, "weight": weight}

"""The component table of a batch of class maps (docs/method.md §5-§6): ``ComponentBatch``, its
column names, the NMS crop batches (``pack_buckets``) and the grouping's size bounds (``SlotBounds``).

Every labelling backend (``labelling``) builds one ``ComponentBatch``; the later stages (``peaks``,
``centers``, ``grouping``) only read it.
"""
import numpy as np

from .ops import take

__all__ = [
    "COL_IMG", "COL_CLS", "COL_AREA", "COL_Y0", "COL_X0", "COL_H", "COL_W", "COL_CY", "COL_CX", "NUM_COLS",
    "ComponentBatch", "SlotBounds", "pack_buckets", "heat_index",
]

# columns of ComponentBatch.table (row 0 = "no component"): image, class (0..C-1), area (px),
# bounding box top / left / height / width (px), int-truncated centroid y / x (px)
COL_IMG, COL_CLS, COL_AREA, COL_Y0, COL_X0, COL_H, COL_W, COL_CY, COL_CX = range(9)
NUM_COLS = 9


class ComponentBatch:
    """The 8-connected components (>= ``min_area`` px) of every class of a batch of class maps.

    Built by ``labelling.label_class_maps`` (OpenCV on the host, torch or Triton on the device);
    every backend gives the same tensors, bit for bit. Components are numbered ``1..M`` by image,
    class, then OpenCV's order inside the class's bounding box.

    Attributes (device): ``lab`` ``(B, H, W)`` long global component id (0 = none); ``pix`` ``(P,)``
    long flat indices ``b*H*W + y*W + x`` of every component pixel (raster order); ``comp_p`` the
    component of each; ``table`` ``(M+1, 9)`` long rows ``[img, cls, area, y0, x0, h, w, cy, cx]``
    (columns ``COL_*``), ``col`` its transpose (one contiguous row per column); ``cand`` ``(Q, 3)``
    long clustering candidates ``[comp, y, x]`` sorted by component, then the raster index of their
    region's first pixel. ``slot_bounds``: None, or the grouping's sizes read with the labelling
    (``SlotBounds``), so that grouping needs no host read of its own. Host: ``M`` (components),
    ``B``, ``H``, ``W``, ``backend`` (the labelling backend that built it).

    Crop NMS (OpenCV and torch backends): ``bucket_ids`` component ids grouped into crop batches,
    ``buckets`` (host list of (start, stop, Hmax, Wmax)). Triton backend: ``class_maps`` ``(B, H, W)``
    int32 and ``peak_candidates`` ``(K,)`` long flat pixels (the 3x3 NMS candidates for the
    heatmap / threshold / window that ``slot_bounds`` was made for), used by ``peaks``.
    """

    def __init__(self, lab, pix, table, bucket_ids, cand, buckets, slot_bounds=None, *, backend="opencv",
                 class_maps=None, peak_candidates=None):
        self.B, self.H, self.W = lab.shape
        self.M = table.shape[0] - 1
        self.lab, self.pix, self.table, self.bucket_ids, self.cand = lab, pix, table, bucket_ids, cand
        self.buckets = buckets
        self.slot_bounds = slot_bounds
        self.backend = backend
        self.class_maps = class_maps
        self.peak_candidates = peak_candidates
        self.col = table.t().contiguous()  # (9, M+1): one contiguous row per column
        self.comp_p = take(lab, pix)
        self.device = lab.device


def pack_buckets(hh, ww, max_crop_elems=1 << 21):
    """NMS crop batches of components with box heights / widths ``hh``, ``ww`` (host int64, ids
    ``1..M``): sorted by box area (stable), greedily packed while the padded batch stays within 2x
    of the real crop area (and ``max_crop_elems``). Returns ``(order, buckets)``: the component ids
    in that order (numpy) and ``(start, stop, Hmax, Wmax)`` per batch."""
    buckets = []
    order = np.zeros(0, dtype=np.int64)
    if len(hh):
        order = np.argsort(-(hh * ww), kind="stable") + 1
        start, hm, wm, real = 0, 0, 0, 0
        for i, cid in enumerate(order):
            h, w = int(hh[cid - 1]), int(ww[cid - 1])
            nh, nw = max(hm, h), max(wm, w)
            n = i - start + 1
            if i > start and (n * nh * nw > 2 * (real + h * w) or n * nh * nw > max_crop_elems):
                buckets.append((start, i, hm, wm))
                start, nh, nw, real = i, h, w, 0
            hm, wm, real = nh, nw, real + h * w
        buckets.append((start, len(order), hm, wm))
    return order, buckets


def heat_index(cb, comp, flat, C):
    """Flat index into the ``(B, C, H, W)`` heatmap of pixel ``flat`` (``b*H*W + y*W + x``) in the
    class channel of component ``comp`` (same shapes, long)."""
    HW = cb.H * cb.W
    img = take(cb.col[COL_IMG], comp)
    return (img * (C - 1) + take(cb.col[COL_CLS], comp)) * HW + flat


class SlotBounds:
    """Upper bounds of the grouping's sizes, read from the device together with the labelling.

    ``K`` >= the NMS peaks of all components, ``kmax`` >= the centers (peaks + clustering
    candidates) of one component, ``T`` = ``n_slots.sum()`` with ``n_slots`` ``(M+1,)`` long device
    slots per component (>= max(its centers, 1); row 0: 0). Valid for the heatmap ``center``
    (checked by identity), ``threshold`` and ``nms_kernel`` they were made for. Padding entries
    are invalid centers and empty slots, so results do not depend on the bounds.
    """

    def __init__(self, K, kmax, T, n_slots, center, threshold, nms_kernel):
        self.K, self.kmax, self.T, self.n_slots = int(K), int(kmax), int(T), n_slots
        self._key = (center.data_ptr(), tuple(center.shape), float(threshold), int(nms_kernel))

    def fits(self, center, threshold, nms_kernel):
        return self._key == (center.data_ptr(), tuple(center.shape), float(threshold), int(nms_kernel))

"""Labelling a batch of class maps into the component engine's ``ComponentBatch`` (docs/method.md
§5-§6): the 8-connected components of every class (>= ``min_area`` px), their table (image, class,
area, box, int centroid) and, for center clustering, the candidates (area-checked 4-connected
regions of ``|offset| < offset_threshold`` inside each component).

Three backends give the same tensors, bit for bit (``tests/test_component_labelling.py``):

* ``"opencv"`` (this module): one device -> host transfer of the class maps (and the magnitude
  mask), ``connected_components.label_components`` on each class's bounding box, the table from
  OpenCV's stats, one packed host -> device transfer. The CPU default (OpenCV is 15-130x faster
  there than the torch labelling).
* ``"triton"`` (``labelling_triton``): union-find labelling kernels and contention-free per-run
  statistics on the device, one host synchronisation. The default for CUDA tensors.
* ``"torch"`` (``labelling_torch``): iterative hooking / pointer jumping in plain torch ops, one
  host synchronisation; the fallback where Triton is absent.

Component ids follow OpenCV's order: by image, class, then the raster order of the 2x2 block (from
the class's bounding-box origin) of each component's first pixels, which is how OpenCV's
block-based 8-connected labelling numbers them. ``backend="auto"`` picks per device
(``backends.pick_backend``); the config key ``MODEL.BESTIE.COMPONENTS_BACKEND`` sets it for
refinement and decoding.
"""
import cv2
import numpy as np
import torch

from .backends import pick_backend
from .clustering import clustering_candidates
from .connected_components import label_components
from .labelling_torch import label_class_maps_torch
from .labelling_triton import label_class_maps_triton
from .ops import to_host
from .table import (
    COL_AREA, COL_CLS, COL_CX, COL_CY, COL_H, COL_IMG, COL_W, COL_X0, COL_Y0, NUM_COLS, ComponentBatch, pack_buckets,
)

__all__ = ["label_class_maps"]


def label_class_maps(class_maps, min_area, mag_mask=None, cluster=None, backend="auto", max_crop_elems=1 << 21,
                     peaks_for=None):
    """The ``ComponentBatch`` of a batch of class maps.

    Args:
        class_maps: ``(B, H, W)`` uint8 tensor, 0 = none, ``c + 1`` = class ``c``.
        min_area: smaller components are dropped (px).
        mag_mask: ``(B, H, W)`` bool tensor ``|offset| < cluster.offset_threshold``, with ``cluster``
            (``ClusterParams``) for the clustering candidates; None for none.
        backend: "auto" | "opencv" | "torch" | "triton" (module docstring).
        max_crop_elems: the largest padded NMS crop batch (elements; OpenCV and torch backends).
        peaks_for: optional ``(center, threshold, nms_kernel)`` of the grouping that follows
            (``center`` ``(B, C, H, W)`` float, the very tensor it will get): the device backends
            then also read the grouping's size bounds (``table.SlotBounds``) in their one host
            sync, so the grouping needs none.
    """
    which = pick_backend(class_maps.device, backend)
    if which == "triton":
        return label_class_maps_triton(class_maps, min_area, mag_mask, cluster, peaks_for=peaks_for)
    if which == "torch":
        return label_class_maps_torch(class_maps, min_area, mag_mask, cluster, max_crop_elems, peaks_for=peaks_for)
    return _label_opencv(class_maps, min_area, mag_mask, cluster, max_crop_elems)


def _label_opencv(class_maps, min_area, mag_mask, cluster, max_crop_elems):
    device = class_maps.device
    crop_candidates = None
    if cluster is not None:
        host = to_host(torch.stack([class_maps, mag_mask.to(torch.uint8)]))  # the one D2H transfer
        cm_all, crop_candidates = host[0], clustering_candidates(host[1], cluster)
    else:
        cm_all = to_host(class_maps)
    cm_all = np.ascontiguousarray(cm_all)
    B, H, W = cm_all.shape
    lab = np.zeros((B, H, W), dtype=np.int32)
    rows = [np.zeros((1, NUM_COLS), dtype=np.int64)]
    cands = []
    next_id = 1
    for b in range(B):
        cm = cm_all[b]
        counts = np.bincount(cm.reshape(-1), minlength=1)
        for v in np.flatnonzero(counts):
            if v == 0 or counts[v] < min_area:
                continue
            mk = cm == v
            ys = np.flatnonzero(mk.any(1))
            xs = np.flatnonzero(mk.any(0))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            # labelling the class's bounding box only: same components, less work
            n, cl, stats, cents = label_components(np.ascontiguousarray(mk[y0:y1, x0:x1]).view(np.uint8), 8)
            keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
            keep = keep[keep > 0]
            if keep.size == 0:
                continue
            lut = np.zeros(n, dtype=np.int32)
            lut[keep] = np.arange(next_id, next_id + keep.size, dtype=np.int32)
            next_id += keep.size
            sub = lut[cl]
            lab[b, y0:y1, x0:x1] += sub
            rows.append(_table_rows(b, int(v) - 1, keep, stats, cents, y0, x0))
            if crop_candidates is not None:
                cc, cy, cx, key = crop_candidates(b, y0, x0, sub, W)
                if cc.size:
                    cands.append(np.stack([cc, cy, cx, key], 1))
    table = np.concatenate(rows, 0)
    M = table.shape[0] - 1
    pix = np.flatnonzero(lab.reshape(-1))
    order, buckets = pack_buckets(table[1:, COL_H], table[1:, COL_W], max_crop_elems)
    cand = np.zeros((0, 3), dtype=np.int64)
    if cands:  # sorted by component, then by their key
        c4 = np.concatenate(cands, 0)
        cand = c4[np.lexsort((c4[:, 3], c4[:, 0])), :3]
    # one packed host -> device transfer
    parts = [lab.reshape(-1), pix, table.reshape(-1), order, cand.reshape(-1)]
    packet = torch.from_numpy(np.concatenate([p.astype(np.int64, copy=False) for p in parts])).to(device)
    segs = torch.split(packet, [p.size for p in parts])
    return ComponentBatch(segs[0].view(B, H, W), segs[1], segs[2].view(M + 1, NUM_COLS), segs[3],
                          segs[4].view(-1, 3), buckets)


def _table_rows(b, cls, keep, stats, cents, y0, x0):
    """Component table rows (``COL_*``) of the kept labels of one class crop at ``(y0, x0)``."""
    r = np.zeros((keep.size, NUM_COLS), dtype=np.int64)
    r[:, COL_IMG] = b
    r[:, COL_CLS] = cls
    r[:, COL_AREA] = stats[keep, cv2.CC_STAT_AREA]
    r[:, COL_Y0] = stats[keep, cv2.CC_STAT_TOP] + y0
    r[:, COL_X0] = stats[keep, cv2.CC_STAT_LEFT] + x0
    r[:, COL_H] = stats[keep, cv2.CC_STAT_HEIGHT]
    r[:, COL_W] = stats[keep, cv2.CC_STAT_WIDTH]
    # int-truncated float centroid (non-negative: truncation == floor), shifted to the image
    r[:, COL_CY] = cents[keep, 1].astype(np.int64) + y0
    r[:, COL_CX] = cents[keep, 0].astype(np.int64) + x0
    return r

"""Center clustering from the offset map (supplement §1; docs/method.md §5.1, §6): parameters and
the candidate regions.

Near an instance center the predicted offsets are short. The candidate centers are the centroids of
the 4-connected regions where ``|offset| < offset_threshold`` (2.5 px) inside one semantic
component; a candidate is trusted only if its region's area is strictly between
``area - area_eps`` and ``area + area_eps`` (21 ± 3 at 2.5 px: a perfect radial field gives exactly
21 pixels with ``dy² + dx² < 6.25``) and the (component-restricted) center heatmap there is above
``min_heatmap``. The candidates are merged into the heatmap peaks (``centers``): all of them when
the component has no peak, otherwise only those farther than ``merge_distance`` from every peak;
the added ones are "marked" (heatmap 1.0 there). Candidate order inside a component: by the raster
position of the first pixel of each magnitude region.

The host functions here (``region_candidates``, ``clustering_candidates``) find the regions of the
OpenCV labelling; the torch and Triton labellings find the same regions on the device.
"""
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .connected_components import label_components

__all__ = [
    "ClusterParams",
    "offset_magnitude_mask",
    "far_from_all",
    "regions_4conn",
    "region_candidates",
    "clustering_candidates",
]


@dataclass
class ClusterParams:
    """Center-clustering parameters (``MODEL.BESTIE.CLUSTER``)."""

    offset_threshold: float = 2.5  # |offset| below this (input pixels)
    area: int = 21  # expected region area (px)
    area_eps: int = 3  # keep regions with area - eps < a < area + eps (strict)
    min_heatmap: float = 0.05  # keep a candidate only if the restricted heatmap there is above this
    merge_distance: float = 100.0  # add a candidate only if farther than this from every peak (px)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.BESTIE.CLUSTER
        return cls(
            offset_threshold=float(c.OFFSET_THRESHOLD),
            area=int(c.AREA),
            area_eps=int(c.AREA_EPS),
            min_heatmap=float(c.MIN_HEATMAP),
            merge_distance=float(c.MERGE_DISTANCE),
        )

    def area_ok(self, areas):
        """Strict area check ``area - eps < a < area + eps`` (numpy or torch)."""
        return (areas > self.area - self.area_eps) & (areas < self.area + self.area_eps)


def offset_magnitude_mask(offset, threshold):
    """``sqrt(dy² + dx²) < threshold`` (px) for ``offset`` ``(..., 2, H, W)`` -> ``(..., H, W)`` bool."""
    dy = offset.select(-3, 0)
    dx = offset.select(-3, 1)
    return torch.sqrt(dy * dy + dx * dx) < threshold


def far_from_all(d2, merge_distance):
    """``sqrt(d2) > merge_distance`` for integer squared distances ``d2`` (px²), exact as ``d2 > md²``."""
    md = float(merge_distance)
    if md < 0:
        return torch.ones_like(d2, dtype=torch.bool)
    return d2.double() > md * md


def regions_4conn(mask_u8):
    """4-connected regions of a ``(h, w)`` uint8 mask: ``(n, labels, areas, cy, cx, first)``.

    ``areas`` (px), int-truncated centroid ``cy``/``cx`` and the flat index ``first`` of the first
    (raster) pixel are indexed by region label ``1..n-1`` (entry 0 = background, unused).
    """
    n, labels, stats, cents = label_components(mask_u8, 4)
    areas = stats[:, cv2.CC_STAT_AREA]
    # int-truncated centroid (non-negative, so truncation == floor); cv2 divides exact integer sums.
    # Entry 0 (background) is left at 0: when the mask covers the whole map the background has no
    # pixel and cv2 gives it a NaN centroid, whose cast to int is undefined (RuntimeWarning).
    cy = np.zeros(n, dtype=np.int64)
    cx = np.zeros(n, dtype=np.int64)
    cy[1:] = cents[1:, 1].astype(np.int64)
    cx[1:] = cents[1:, 0].astype(np.int64)
    first = np.full(n, -1, dtype=np.int64)
    if n > 1:
        flat = labels.reshape(-1)
        nz = np.flatnonzero(flat)
        lab, idx = np.unique(flat[nz], return_index=True)
        first[lab] = nz[idx]
    return n, labels, areas, cy, cx, first


def region_candidates(mag_mask, comp_labels, params, y0=0, x0=0, width=None):
    """Area-checked clustering candidates of every component in a (cropped) label map (CPU).

    Args:
        mag_mask: ``(h, w)`` bool numpy, ``|offset| < offset_threshold``.
        comp_labels: ``(h, w)`` int numpy component ids (0 = none). Its components must be of one
            class (never 8-adjacent), so a 4-connected magnitude region lies in one component.
        params: ``ClusterParams``.
        y0, x0, width: position of the crop in the full image and the image width (px; for the
            returned full-image coordinates and ordering keys).

    Returns:
        ``(comp, y, x, key)`` int64 numpy: component, int-truncated centroid, and the full-image
        raster index of the region's first pixel (the canonical candidate order). The heatmap check
        is left to the caller, on the device.
    """
    width = comp_labels.shape[1] if width is None else width
    m = (mag_mask.astype(bool) & (comp_labels > 0)).astype(np.uint8)
    e = np.zeros(0, dtype=np.int64)
    if not m.any():
        return e, e, e, e
    n, _, areas, cy, cx, first = regions_4conn(m)
    keep = np.flatnonzero(params.area_ok(areas))
    keep = keep[keep > 0]
    if keep.size == 0:
        return e, e, e, e
    comp = comp_labels.reshape(-1)[first[keep]].astype(np.int64)
    w = comp_labels.shape[1]
    key = (first[keep] // w + y0) * width + first[keep] % w + x0
    # centroids are exact integer sums / area (+ crop origin): truncation is unaffected
    return comp, cy[keep] + y0, cx[keep] + x0, key


def clustering_candidates(mag_mask, params):
    """The ``crop_candidates`` callable of ``ComponentBatch`` for center clustering.

    ``mag_mask``: ``(B, H, W)`` uint8/bool numpy, ``|offset| < params.offset_threshold``.
    """

    def candidates(b, y0, x0, sub_labels, width):
        h, w = sub_labels.shape
        return region_candidates(mag_mask[b, y0:y0 + h, x0:x0 + w], sub_labels, params, y0, x0, width)

    return candidates

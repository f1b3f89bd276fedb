"""Center clustering from the offset map (supplement §1; docs/method.md §5.1, §6).

Near an instance center the predicted offsets are short. The candidate centers are the centroids of
the 4-connected regions where ``|offset| < offset_threshold`` (2.5 px) inside a region (one
semantic component); a candidate is trusted only if its region's area is strictly between
``area - area_eps`` and ``area + area_eps`` (21 ± 3 at 2.5 px: a perfect radial field gives exactly
21 pixels with ``dy² + dx² < 6.25``) and the (restricted) center heatmap there is above
``min_heatmap``. ``merge_centers`` adds the candidates to the heatmap peaks: all of them when there
is no peak, otherwise only those farther than ``merge_distance`` from every peak; the added ones are
"marked" (heatmap set to 1.0 there).

Two implementations share the definitions:

* ``cluster_centers`` / ``merge_centers``: one region at a time (public API, reference decoding);
* ``region_candidates``: every component of a (cropped) label map at once (CPU, numpy + cv2),
  used per image and class by the fast decoder and the refinement. Candidate order inside a region is canonical in
  both: by the raster position of the first pixel of each magnitude region.
"""
from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "ClusterParams",
    "offset_magnitude_mask",
    "cluster_centers",
    "merge_centers",
    "far_from_all",
    "region_candidates",
]


@dataclass
class ClusterParams:
    """Center-clustering parameters (``MODEL.BESTIE.CLUSTER``)."""

    offset_threshold: float = 2.5  # |offset| below this (input pixels)
    area: int = 21  # expected region area
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
    """``sqrt(dy² + dx²) < threshold`` for ``offset`` of shape ``(..., 2, H, W)`` -> ``(..., H, W)`` bool."""
    dy = offset.select(-3, 0)
    dx = offset.select(-3, 1)
    return torch.sqrt(dy * dy + dx * dx) < threshold


def far_from_all(d2, merge_distance):
    """``sqrt(d2) > merge_distance`` for integer squared distances (exact, as ``d2 > md²``)."""
    md = float(merge_distance)
    if md < 0:
        return torch.ones_like(d2, dtype=torch.bool)
    return d2.double() > md * md


def _regions_4conn(mask_u8):
    """4-connected regions of a uint8 mask: (labels, areas, centroid y/x int, first raster pixel).

    Arrays are indexed by region label 1..n-1 (entry 0 = background, unused).
    """
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask_u8, connectivity=4, ltype=cv2.CV_32S)
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


def cluster_centers(offset, region, heatmap, params):
    """Candidate centers of one region from the offset map.

    Args:
        offset: ``(2, H, W)`` float (dy, dx).
        region: ``(H, W)`` bool, the component the candidates must come from.
        heatmap: ``(H, W)`` the center heatmap *restricted to the region* (0 outside); a candidate is
            kept only where ``heatmap > params.min_heatmap``.
        params: ``ClusterParams``.

    Returns:
        ``(K, 2)`` long ``(y, x)`` on ``offset``'s device, ordered by the raster position of the
        first pixel of each magnitude region.
    """
    with torch.no_grad():
        mask = offset_magnitude_mask(offset.detach(), params.offset_threshold) & region.to(offset.device).bool()
        m = mask.to(torch.uint8).cpu().numpy()
        n, _, areas, cy, cx, first = _regions_4conn(m)
        keep = np.flatnonzero(params.area_ok(areas))
        keep = keep[keep > 0]
        keep = keep[np.argsort(first[keep], kind="stable")]
        pts = torch.from_numpy(np.stack([cy[keep], cx[keep]], axis=1).reshape(-1, 2)).to(offset.device)
        if pts.shape[0] == 0:
            return pts
        hv = heatmap.detach()[pts[:, 0], pts[:, 1]]
        return pts[hv > params.min_heatmap]


def merge_centers(peaks, candidates, heatmap, params):
    """Merge clustering candidates into the heatmap peaks (docs/method.md §5.1 merge rule).

    If there is no peak every candidate is added; otherwise a candidate is added only if its L2
    distance to every peak is ``> params.merge_distance``. The heatmap is set to 1.0 at every added
    candidate (in place: pass the restricted per-component copy). Returns ``(centers (K, 2) long,
    heatmap)`` with the peaks first, then the added candidates in their order.
    """
    peaks = peaks.reshape(-1, 2).long()
    candidates = candidates.reshape(-1, 2).long().to(peaks.device)
    if candidates.shape[0] == 0:
        return peaks, heatmap
    if peaks.shape[0] == 0:
        add = candidates
    else:
        d2 = ((candidates[:, None, :] - peaks[None, :, :]) ** 2).sum(-1)  # (Q, P), exact integers
        add = candidates[far_from_all(d2, params.merge_distance).all(1)]
    if add.shape[0]:
        heatmap[add[:, 0], add[:, 1]] = 1.0
    return torch.cat([peaks, add], 0), heatmap


def region_candidates(mag_mask, comp_labels, params, y0=0, x0=0, width=None):
    """Area-checked clustering candidates of every component in a (cropped) label map (CPU).

    Args:
        mag_mask: ``(h, w)`` bool numpy, ``|offset| < offset_threshold``.
        comp_labels: ``(h, w)`` int numpy component ids (0 = none). Its components must be of one
            class (never 8-adjacent), so a 4-connected magnitude region lies in one component.
        params: ``ClusterParams``.
        y0, x0, width: position of the crop in the full image and the image width (for the
            returned full-image coordinates and ordering keys).

    Returns:
        ``(comp, y, x, key)`` int64 numpy: component, int-truncated centroid, and the full-image
        raster index of the region's first pixel (the canonical candidate order). The heatmap check
        (``> min_heatmap`` where the candidate lies in its component, else ``0 > min_heatmap``) is
        left to the caller, on the device.
    """
    width = comp_labels.shape[1] if width is None else width
    m = (mag_mask.astype(bool) & (comp_labels > 0)).astype(np.uint8)
    e = np.zeros(0, dtype=np.int64)
    if not m.any():
        return e, e, e, e
    n, _, areas, cy, cx, first = _regions_4conn(m)
    keep = np.flatnonzero(params.area_ok(areas))
    keep = keep[keep > 0]
    if keep.size == 0:
        return e, e, e, e
    comp = comp_labels.reshape(-1)[first[keep]].astype(np.int64)
    w = comp_labels.shape[1]
    key = (first[keep] // w + y0) * width + first[keep] % w + x0
    # centroids are exact integer sums / area (+ crop origin): truncation is unaffected
    return comp, cy[keep] + y0, cx[keep] + x0, key

"""The centers of every component (docs/method.md §5.1, §6): NMS peaks plus, with center
clustering, the merged clustering candidates, in the order the grouping breaks ties by.

``find_centers`` returns the candidate list ``(comp, y, x, key, valid)`` of all components, the
pixel heatmap with the added candidates marked 1.0, and the slot layout (from the labelling's
``SlotBounds`` when they fit, else from one host read).
"""
from typing import NamedTuple

import torch

from .clustering import far_from_all
from .kernels import AVAILABLE
from .ops import take, to_host
from .peaks import component_peaks, sorted_peaks
from .table import COL_CLS, COL_IMG, heat_index

if AVAILABLE:
    from .kernels.center_merge import merge_candidates

__all__ = ["Centers", "find_centers"]


class Centers(NamedTuple):
    """Center candidates of every component of a ``ComponentBatch`` (device tensors, unsorted).

    ``comp``, ``y``, ``x``: ``(K,)`` long component and position (px); ``key``: ``(K,)`` long order
    inside a component (peaks in raster order, then the added clustering candidates in candidate
    order); ``valid``: ``(K,)`` bool, the candidates that are centers; ``heat``: ``(P,)`` heatmap
    of each ``cb.pix`` in its class channel, 1.0 where a clustering candidate was added;
    ``n_slots``: ``(M+1,)`` long instance slots per component; ``kmax`` (host) >= the most centers
    of one component; ``T`` (host) = ``n_slots.sum()``.
    """

    comp: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    key: torch.Tensor
    valid: torch.Tensor
    heat: torch.Tensor
    n_slots: torch.Tensor
    kmax: int
    T: int


def _merge_candidates(cb, heat, pk_comp, pk_y, pk_x, pk_valid, hv, params, C):
    """Heatmap-checked candidates of ``cb.cand`` merged into the peaks (module docstring).

    Returns ``(add (Q,) bool, marked hv (P,))``: the candidates added as centers, and the pixel
    heatmap with 1.0 at the added candidates (only observable inside their own component).
    """
    dev = cb.device
    HW, W = cb.H * cb.W, cb.W
    cc, cy, cx = cb.cand[:, 0], cb.cand[:, 1], cb.cand[:, 2]
    cflat = take(cb.col[COL_IMG], cc) * HW + cy * W + cx
    in_comp = take(cb.lab.reshape(-1), cflat) == cc
    ch = take(heat, heat_index(cb, cc, cflat, C))
    ok = torch.where(in_comp, ch, torch.zeros_like(ch)) > params.min_heatmap
    n_pk = torch.zeros(cb.M + 1, dtype=torch.long, device=dev).index_add_(0, pk_comp, pk_valid.long())
    same = cc[:, None] == pk_comp[None, :]  # (Q, K); padding peaks have comp 0, candidates >= 1
    d2 = (cy[:, None] - pk_y[None, :]) ** 2 + (cx[:, None] - pk_x[None, :]) ** 2
    far = (far_from_all(d2, params.merge_distance) | ~same).all(1)
    add = ok & ((n_pk[cc] == 0) | far)
    flag = torch.zeros(cb.B * HW, dtype=torch.uint8, device=dev)
    flag.scatter_reduce_(0, cflat, (add & in_comp).to(torch.uint8), reduce="amax")
    hv = torch.where(take(flag, cb.pix) > 0, torch.ones_like(hv), hv)
    return add, hv


def _slot_layout(cb, peak_flat, cluster):
    """The grouping's one host sync: ``(K, kmax, T, n_slots)``: the peak count, an upper bound of
    the centers of one component (its peaks plus its clustering candidates) and the slots,
    ``n_slots`` ``(M+1,)`` = max(peaks + candidates, 1) per component (row 0: 0)."""
    dev = cb.device
    is_pk = peak_flat >= 0
    pk_comp = take(cb.lab.reshape(-1), peak_flat.clamp(min=0))
    n_ub = torch.zeros(cb.M + 1, dtype=torch.long, device=dev).index_add_(0, pk_comp, is_pk.long())
    if cluster is not None and cb.cand.shape[0] > 0:
        n_ub.index_add_(0, cb.cand[:, 0], torch.ones_like(cb.cand[:, 0]))
    n_slots = torch.cat([n_ub[:1] * 0, n_ub[1:].clamp(min=1)])
    K, kmax, T = (int(v) for v in to_host(torch.stack([is_pk.sum(), n_ub[1:].max(), n_slots.sum()])))  # host sync
    return K, kmax, T, n_slots


def find_centers(cb, center, *, threshold, nms_kernel, cluster=None):
    """NMS peaks (``peaks.component_peaks``) plus, with ``cluster``, the merged clustering
    candidates of every component of ``cb`` (``M >= 1``).

    Args:
        cb: ``ComponentBatch`` (its ``cand`` are used when ``cluster`` is set).
        center: ``(B, C, H, W)`` float center heatmaps (a component uses its class channel).
        threshold, nms_kernel: center NMS parameters.
        cluster: ``ClusterParams`` or None.

    Returns:
        ``Centers``. One host sync (``_slot_layout``), none when ``cb.slot_bounds`` fits ``center``,
        ``threshold`` and ``nms_kernel`` (read with the labelling's counts); same results either way.
    """
    C = center.shape[1]
    HW, W = cb.H * cb.W, cb.W
    heat = center.reshape(-1)
    hv = take(heat, heat_index(cb, cb.comp_p, cb.pix, C))  # (P,) heatmap of each pixel's own class

    peak_flat = component_peaks(cb, center, threshold, nms_kernel)
    sb = cb.slot_bounds
    if sb is not None and sb.fits(center, threshold, nms_kernel):
        K, kmax, T, n_slots = sb.K, sb.kmax, sb.T, sb.n_slots
    else:
        K, kmax, T, n_slots = _slot_layout(cb, peak_flat, cluster)
    pk_comp, pk_flat, valid = sorted_peaks(cb, peak_flat, K)
    pk_y = (pk_flat % HW) // W
    pk_x = pk_flat % W
    comp_all, y_all, x_all = pk_comp, pk_y, pk_x
    key = pk_comp * (2 * HW) + (pk_flat % HW)  # peaks first within a component, raster order
    if cluster is not None and cb.cand.shape[0] > 0:
        if cb.backend == "triton":
            n_pk = torch.zeros(cb.M + 1, dtype=torch.long, device=cb.device).index_add_(0, pk_comp, valid.long())
            add, hv = merge_candidates(cb.cand, pk_y, pk_x, torch.cumsum(n_pk, 0) - n_pk, n_pk, cb.col[COL_IMG],
                                       cb.col[COL_CLS], cb.lab, center, cb.pix, hv, float(cluster.min_heatmap),
                                       float(cluster.merge_distance))
        else:
            add, hv = _merge_candidates(cb, heat, pk_comp, pk_y, pk_x, valid, hv, cluster, C)
        cc, cy, cx = cb.cand[:, 0], cb.cand[:, 1], cb.cand[:, 2]
        q = torch.arange(cc.shape[0], device=cb.device)
        comp_all = torch.cat([pk_comp, cc])
        y_all = torch.cat([pk_y, cy])
        x_all = torch.cat([pk_x, cx])
        key = torch.cat([key, cc * (2 * HW) + HW + q])
        valid = torch.cat([valid, add])
    return Centers(comp_all, y_all, x_all, key, valid, hv, n_slots, kmax, T)

"""The torch backend of ``labelling.label_class_maps``: plain torch ops on any device, the
fallback where Triton is absent (``backends.pick_backend``).

``connected_components.value_region_roots`` labels the class maps (pixels connect to neighbours of
the same class; regions of the same component), every table column is a scatter reduction over
the pixels (``amin`` / ``amax`` boxes, ``index_add`` areas and coordinate sums, int centroid =
sum // area, which is OpenCV's truncated float centroid) and the ids follow OpenCV's order. One
host synchronisation: the component / pixel / candidate counts and the box sizes the NMS crop
batches need (``table.pack_buckets``), and, with ``peaks_for``, upper bounds of the grouping's
sizes (``table.SlotBounds``), read in one transfer.
"""
import numpy as np
import torch

from .connected_components import value_region_roots
from .ops import BIG, to_host
from .peaks import peak_count_bound
from .table import COL_H, COL_W, NUM_COLS, ComponentBatch, SlotBounds, pack_buckets

__all__ = ["label_class_maps_torch"]


def _region_sums(root, values_list, N):
    """Per-region sums of each ``(N,)`` long tensor over the pixels with ``root >= 0``, indexed by
    root (``(N+1,)``; entry ``N`` collects the background)."""
    idx = torch.where(root >= 0, root, torch.full_like(root, N))
    return idx, [torch.zeros(N + 1, dtype=torch.long, device=root.device).index_add_(0, idx, v) for v in values_list]


def _region_reduce(idx, v, N, how):
    """``amin`` / ``amax`` of ``v`` per root index ``idx`` (``(N+1,)``, unset = +-BIG)."""
    fill = BIG if how == "amin" else -BIG
    return torch.full((N + 1,), fill, dtype=torch.long, device=v.device).scatter_reduce_(0, idx, v, reduce=how)


def _component_table(cm, min_area, rounds):
    """Components of the class maps ``cm`` ``(B, H, W)`` long: ``(lab, table_cap, M)`` with ``lab``
    the ``(B*H*W,)`` component id of every pixel (0 = none, ids in OpenCV's order), ``table_cap``
    ``(cap+1, 9)`` whose first ``M+1`` rows are the table, ``M`` a device scalar, and the device
    bool ``converged`` of the labelling (``rounds`` rounds, no host sync)."""
    dev = cm.device
    B, H, W = cm.shape
    HW, N = H * W, cm.numel()
    root, converged = value_region_roots(cm, 8, first_check=rounds, sync=False)
    root, cls = root.reshape(-1), cm.reshape(-1)
    flat = torch.arange(N, device=dev)
    b, y, x = flat // HW, (flat % HW) // W, flat % W
    ones = torch.ones_like(flat)
    idx, (area, sy, sx) = _region_sums(root, [ones, y, x], N)
    # OpenCV labels each class on its bounding box: the block grid starts at the class's origin
    ck = b * 256 + cls
    y0c = torch.full((B * 256,), BIG, dtype=torch.long, device=dev).scatter_reduce_(0, ck, y, reduce="amin")
    x0c = torch.full((B * 256,), BIG, dtype=torch.long, device=dev).scatter_reduce_(0, ck, x, reduce="amin")
    block = ((y - y0c[ck]) // 2) * W + (x - x0c[ck]) // 2
    bkey = _region_reduce(idx, block, N, "amin")[:N]
    y0, x0 = _region_reduce(idx, y, N, "amin")[:N], _region_reduce(idx, x, N, "amin")[:N]
    y1, x1 = _region_reduce(idx, y, N, "amax")[:N], _region_reduce(idx, x, N, "amax")[:N]
    area, sy, sx = area[:N], sy[:N], sx[:N]
    keep = (root == flat) & (area >= min_area)
    key = torch.where(keep, (b * 256 + cls) * HW + bkey, torch.full_like(bkey, BIG))
    order = torch.argsort(key)
    M = keep.sum()
    rank = torch.empty_like(order).scatter_(0, order, flat)
    comp_id = torch.cat([torch.where(keep, rank + 1, torch.zeros_like(rank)), rank.new_zeros(1)])
    lab = comp_id.index_select(0, idx)
    cap = min(N, N // max(int(min_area), 1))
    o = order[:cap]
    a = area.index_select(0, o).clamp(min=1)
    cols = [o // HW, cls.index_select(0, o) - 1, area.index_select(0, o), y0.index_select(0, o),
            x0.index_select(0, o), (y1 - y0 + 1).index_select(0, o), (x1 - x0 + 1).index_select(0, o),
            sy.index_select(0, o) // a, sx.index_select(0, o) // a]
    table = torch.cat([torch.zeros(1, NUM_COLS, dtype=torch.long, device=dev), torch.stack(cols, 1)])
    return lab, table, M, converged


def _candidates_torch(lab, mag_mask, cluster, B, H, W, rounds):
    """Clustering candidates: ``(cand_sorted (N, 3), Q, converged)`` (first ``Q`` rows valid;
    device scalars)."""
    N, HW = lab.numel(), H * W
    V = torch.where(mag_mask.reshape(-1) & (lab > 0), lab, torch.zeros_like(lab))
    root, converged = value_region_roots(V.view(B, H, W), 4, first_check=rounds, sync=False)
    root = root.reshape(-1)
    flat = torch.arange(N, device=lab.device)
    _, (area, sy, sx) = _region_sums(root, [torch.ones_like(flat), (flat % HW) // W, flat % W], N)
    area, sy, sx = area[:N], sy[:N], sx[:N]
    ok = (root == flat) & cluster.area_ok(area)
    key = torch.where(ok, V * HW + flat % HW, torch.full_like(flat, BIG))  # by component, then first pixel
    order = torch.argsort(key)
    a = area.index_select(0, order).clamp(min=1)
    cand = torch.stack([V.index_select(0, order), sy.index_select(0, order) // a, sx.index_select(0, order) // a], 1)
    return cand, ok.sum(), converged


def _slot_bound_counts(cm, lab, M, cand, Q, peaks_for, n_rows):
    """Device ``(K, kmax, T)`` bounds and ``n_slots`` (rows ``0..cap``) of ``SlotBounds``: peaks
    bounded per component by ``components.peak_count_bound``, plus its clustering candidates."""
    center, threshold, nms_kernel = peaks_for
    B, H, W = cm.shape
    heat_p = center.gather(1, (cm - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    n_ub = peak_count_bound(lab.view(B, H, W), heat_p, threshold, nms_kernel, n_rows)
    K = n_ub.sum()
    if cand is not None and cand.shape[0] > 0:
        ok = torch.arange(cand.shape[0], device=cm.device) < Q
        n_ub = n_ub.index_add(0, torch.where(ok, cand[:, 0], torch.zeros_like(cand[:, 0])), ok.long())
    rows = torch.arange(n_rows, device=cm.device)
    real = (rows >= 1) & (rows <= M)
    n_slots = torch.where(real, n_ub.clamp(min=1), torch.zeros_like(n_ub))
    kmax = torch.where(real, n_ub, torch.zeros_like(n_ub)).max()
    return torch.stack([K, kmax, n_slots.sum()]), n_slots


def label_class_maps_torch(class_maps, min_area, mag_mask, cluster, max_crop_elems, rounds=8, peaks_for=None):
    """``labelling.label_class_maps`` with the torch backend; one host sync, plus one per rerun when ``rounds`` labelling rounds did
    not reach a fixed point (then again with twice the rounds; connected_components' docstring
    gives the measured rounds: 4-8 on noise, mazes, full images and the benchmark inputs, more on
    1-px spirals, which take a second pass)."""
    B, H, W = class_maps.shape
    while True:
        lab, table, M, conv = _component_table(class_maps.long(), min_area, rounds)
        cand, Q = None, M.new_zeros(())
        if cluster is not None:
            cand, Q, conv4 = _candidates_torch(lab, mag_mask, cluster, B, H, W, rounds)
            conv = conv & conv4
        P = (lab > 0).sum()
        cap = table.shape[0] - 1
        bounds = M.new_zeros(3)
        if peaks_for is not None:
            bounds, n_slots = _slot_bound_counts(class_maps.long(), lab, M, cand, Q, peaks_for, cap + 1)
        # the one host synchronisation: convergence, counts, the grouping's bounds and the box
        # sizes (for the NMS crop batches)
        host = to_host(torch.cat([torch.stack([conv.long(), M, P, Q]), bounds, table[1:, COL_H], table[1:, COL_W]]))
        if host[0]:
            break
        rounds *= 2  # not converged (long thin paths, e.g. spirals): again with twice the rounds
    M, P, Q = (int(v) for v in host[1:4])
    slot_bounds = None
    if peaks_for is not None:
        K, kmax, T = (int(v) for v in host[4:7])
        slot_bounds = SlotBounds(K, kmax, T, n_slots[:M + 1], *peaks_for)
    host = np.concatenate([host[1:4], host[7:]])
    hh, ww = host[3:3 + M], host[3 + cap:3 + cap + M]
    _, buckets = pack_buckets(hh, ww, max_crop_elems)
    table = table[:M + 1]
    area_box = table[1:, COL_H] * table[1:, COL_W]
    bucket_ids = torch.argsort(-area_box, stable=True) + 1  # == pack_buckets' host order
    pix = torch.nonzero_static(lab > 0, size=P).reshape(-1)
    cand = table.new_zeros((0, 3)) if cand is None else cand[:Q]
    return ComponentBatch(lab.view(B, H, W), pix, table, bucket_ids, cand, buckets, slot_bounds, backend="torch")

"""The Triton backend of ``labelling.label_class_maps``: the default for CUDA tensors.

Before the one host read (all on the device, ``kernels``):

1. ``label_regions(class maps, 8)``: union-find labelling, per-root statistics (area, coordinate
   sums, extent) and each class's bounding-box origin;
2. ``finalize_components``: kept components (area >= ``min_area``), their count ``M`` and pixels
   ``P``, the per-pixel id ``root + 1`` of kept pixels (and its clustering value map);
3. with ``peaks_for``: ``peak_candidates`` (the 3x3 NMS candidates, counted: ``K``);
4. with clustering: ``label_regions(value map, 4)`` and ``finalize_regions`` (candidate regions,
   ``Q``); ``slot_totals`` (the grouping's slots ``T`` and ``kmax``).

The one host read takes ``[M, P, K, Q, T, kmax]``. After it, a few ``M``- / ``Q``- / ``K``-sized
torch ops give the table in OpenCV's component order (image, class, then the 2x2 block, counted
from the class's bounding-box origin, of the component's first pixels: the block row of its top
row, and the smallest column over its top row and, when the block holds it, the row below), the
dense component ids, the pixel list, the clustering candidates and the NMS candidate list.
"""
import torch

from .kernels import AVAILABLE
from .ops import to_host
from .table import NUM_COLS, ComponentBatch, SlotBounds

if AVAILABLE:
    from .kernels.component_pass import finalize_components, finalize_regions, peak_candidates, slot_totals
    from .kernels.component_table import component_ids, component_rows, region_rows
    from .kernels.union_find import NSTAT, ST_SPARE, label_regions

__all__ = ["label_class_maps_triton"]


def _device_pass(cm, min_area, mag_mask, cluster, peaks_for):
    """Steps 1-4 of the module docstring: device tensors and the counts to read."""
    dev = cm.device
    root, stats, origin = label_regions(cm, 8, True)
    use_cluster = cluster is not None
    mag = mag_mask.contiguous() if use_cluster else cm.new_empty(0)
    kept_root, ids, vclu, counts = finalize_components(root, stats, mag, int(min_area), use_cluster)
    extra = {"pcand": None, "ccand": None, "stats2": None}
    zeros = torch.zeros(4, dtype=torch.int64, device=dev)
    k, q, tot = zeros[:1], zeros[1:2], zeros[2:]
    if peaks_for is not None:
        center, threshold, nms_kernel = peaks_for
        extra["pcand"], k = peak_candidates(ids, cm, center, float(threshold), int(nms_kernel), stats, NSTAT, ST_SPARE)
    if use_cluster:
        root2, stats2, _ = label_regions(vclu, 4, False)
        lo, hi = int(cluster.area) - int(cluster.area_eps), int(cluster.area) + int(cluster.area_eps)
        extra["ccand"], q = finalize_regions(vclu, root2, stats2, stats, lo, hi)
        extra["stats2"] = stats2
    if peaks_for is not None:
        tot = slot_totals(kept_root, stats)
    return root, stats, origin, kept_root, ids, extra, torch.cat([counts, k, q, tot])


def label_class_maps_triton(class_maps, min_area, mag_mask, cluster, peaks_for=None):
    """``labelling.label_class_maps`` with the Triton backend (module docstring); one host sync."""
    B, H, W = class_maps.shape
    N = class_maps.numel()
    cm = class_maps.to(torch.int32).contiguous()
    if peaks_for is not None:
        center = peaks_for[0]
        if center.dtype != torch.float32 or not center.is_contiguous():
            raise ValueError("peaks_for's center must be a contiguous float32 tensor")
    root, stats, origin, kept_root, ids, extra, counts = _device_pass(cm, min_area, mag_mask, cluster, peaks_for)
    M, P, K, Q, T, kmax = (int(v) for v in to_host(counts))  # the one host synchronisation

    roots = torch.nonzero_static(kept_root, size=M).view(M)  # raster order of the first pixels
    rows, key = component_rows(roots, cm, stats, origin)
    order = torch.argsort(key)
    roots = roots.index_select(0, order)
    table = torch.cat([rows.new_zeros((1, NUM_COLS)), rows.index_select(0, order)])
    lab = component_ids(ids, roots)
    pix = torch.nonzero_static(ids.view(N), size=P).view(P)
    cand = table.new_zeros((0, 3))
    if extra["ccand"] is not None:
        region_roots = torch.nonzero_static(extra["ccand"], size=Q).view(Q)
        crow, ckey = region_rows(region_roots, extra["stats2"], lab)
        cand = crow.index_select(0, torch.argsort(ckey))
    slot_bounds, pc = None, None
    if peaks_for is not None:
        n_ub = stats.select(1, ST_SPARE).index_select(0, roots)
        n_slots = torch.cat([n_ub.new_zeros(1), n_ub.clamp(min=1)])
        slot_bounds = SlotBounds(K, kmax, T, n_slots, *peaks_for)
        pc = torch.nonzero_static(extra["pcand"], size=K).view(K)
    return ComponentBatch(lab.view(B, H, W), pix, table, None, cand, None, slot_bounds, backend="triton",
                          class_maps=cm, peak_candidates=pc)

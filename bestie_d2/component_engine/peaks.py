"""Center NMS restricted to each component (docs/method.md §5.1, §6).

``component_peaks``: the peaks of every component at once. CPU / torch path: components are
cropped to their bounding boxes, crops of similar size padded into batches (``table.pack_buckets``)
and pooled with the separable log-step sliding max (``ops.sliding_max_pool``); Triton path: each
candidate (a 3x3 local maximum of its component, ``ComponentBatch.peak_candidates``) is tested
against its k x k window in one kernel. ``peak_count_bound`` bounds the peaks per component before
the labelling's one host read; ``sorted_peaks`` lists the peaks by component.
"""
import torch

from .kernels import AVAILABLE
from .ops import BIG, check_nms_kernel, sliding_max_pool, take, to_host
from .table import COL_CLS, COL_H, COL_IMG, COL_W, COL_X0, COL_Y0

if AVAILABLE:
    from .kernels.component_pass import peak_candidates
    from .kernels.peak_window import window_peaks

__all__ = ["peak_count_bound", "component_peaks", "sorted_peaks"]


def peak_count_bound(lab, heat_p, threshold, nms_kernel, n_rows):
    """Upper bound of every component's NMS peaks (``component_peaks``), without a host sync.

    Args:
        lab: ``(B, H, W)`` long component ids (0 = none, ids < ``n_rows``).
        heat_p: ``(B, H, W)`` heatmap of each pixel's class channel.
        threshold, nms_kernel: the NMS parameters.

    Returns:
        ``(n_rows,)`` long: per component, its pixels above ``threshold`` (and > 0) that are >= every
        8-neighbour of the same component above ``threshold`` (with ``nms_kernel`` >= 3; every such
        pixel for 1). A peak is the maximum of its component over its k x k window, so it is one.
    """
    k = check_nms_kernel(nms_kernel)
    B, H, W = lab.shape
    v = torch.where((lab > 0) & (heat_p > threshold), heat_p, torch.full_like(heat_p, -1.0))
    ok = v > 0
    if k >= 3:
        lp = lab.new_zeros((B, H + 2, W + 2))
        lp[:, 1:-1, 1:-1] = lab
        vp = v.new_full((B, H + 2, W + 2), -1.0)
        vp[:, 1:-1, 1:-1] = v
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                lq, vq = lp[:, dy:dy + H, dx:dx + W], vp[:, dy:dy + H, dx:dx + W]
                ok &= (lq != lab) | (v >= vq)
    return torch.zeros(n_rows, dtype=torch.long, device=lab.device).index_add_(0, lab.reshape(-1), ok.reshape(-1).long())


def component_peaks(cb, center, threshold, nms_kernel):
    """Center NMS restricted to each component of ``cb``, without a host sync (module docstring).

    Args:
        cb: ``ComponentBatch``.
        center: ``(B, C, H, W)`` heatmaps (a component uses its class channel).
        threshold: values ``<= threshold`` are no center; nms_kernel: odd window (px).

    Returns:
        ``(E,)`` long: the flat pixel (``b*H*W + y*W + x``) of each peak (a component pixel above
        ``threshold`` and 0, equal to the max of the component's heatmap in its ``k x k`` window),
        -1 for the other entries; ``sorted_peaks`` lists them. Triton batches: one entry per
        candidate (one host read when ``cb``'s candidates were made for another heatmap,
        threshold or window); otherwise one entry per pixel of the NMS crops.
    """
    k = check_nms_kernel(nms_kernel)
    if cb.backend == "triton":
        return _window_peaks(cb, center, threshold, k)
    return _crop_peaks(cb, center, threshold, k)


def _window_peaks(cb, center, threshold, k):
    """Triton: each 3x3 candidate tested against its window (``kernels.peak_window``)."""
    sb = cb.slot_bounds
    cands = cb.peak_candidates
    if cands is None or sb is None or not sb.fits(center, threshold, k):
        per = torch.zeros(cb.M + 1, dtype=torch.long, device=cb.device)
        flags, n = peak_candidates(cb.lab, cb.class_maps, center, float(threshold), k, per, 1, 1)
        cands = torch.nonzero_static(flags, size=int(to_host(n)[0])).squeeze(1)  # host sync
    return window_peaks(cands, cb.lab, cb.class_maps, center, k)


def _crop_peaks(cb, center, threshold, k):
    """OpenCV / torch batches: crops of similar size padded together, separable sliding max."""
    dev = cb.device
    C = center.shape[1]
    HW = cb.H * cb.W
    heat = center.reshape(-1)
    lab_flat = cb.lab.reshape(-1)
    outs = [torch.zeros(0, dtype=torch.long, device=dev)]
    for start, stop, hm, wm in cb.buckets:
        ids = cb.bucket_ids[start:stop]
        t = cb.table.index_select(0, ids)
        iy = t[:, COL_Y0, None] + torch.arange(hm, device=dev)[None]  # (n, hm)
        ix = t[:, COL_X0, None] + torch.arange(wm, device=dev)[None]  # (n, wm)
        vy = iy < (t[:, COL_Y0] + t[:, COL_H])[:, None]
        vx = ix < (t[:, COL_X0] + t[:, COL_W])[:, None]
        flat = (t[:, COL_IMG, None, None] * HW + iy.clamp(max=cb.H - 1)[:, :, None] * cb.W
                + ix.clamp(max=cb.W - 1)[:, None, :])  # (n, hm, wm)
        inside = vy[:, :, None] & vx[:, None, :] & (take(lab_flat, flat) == ids[:, None, None])
        h = take(heat, flat + ((t[:, COL_IMG] * (C - 1) + t[:, COL_CLS]) * HW)[:, None, None])
        v = torch.where(inside & (h > threshold), h, torch.full_like(h, -1.0))
        peak = (v > 0) & (v == sliding_max_pool(v, k))
        outs.append(torch.where(peak, flat, torch.full_like(flat, -1)).reshape(-1))
    return torch.cat(outs)


def sorted_peaks(cb, peak_flat, K):
    """``(comp, flat, valid)`` ``(K,)`` of the peaks in ``component_peaks``' output, sorted by
    component, then raster order; no host sync. ``K`` (host) is their number or an upper bound of
    it (``SlotBounds.K``): the rows past the real peaks have ``valid`` False, ``comp`` 0 (no
    component), ``flat`` 0, and come last."""
    padded = torch.cat([peak_flat, peak_flat.new_full((1,), -1)])  # a -1 sentinel for the padding
    idx = torch.nonzero_static(padded >= 0, size=K, fill_value=padded.shape[0] - 1).reshape(-1)
    flat = padded.index_select(0, idx)
    valid = flat >= 0
    flat = flat.clamp(min=0)
    comp = torch.where(valid, take(cb.lab.reshape(-1), flat), torch.zeros_like(flat))
    order = torch.argsort(torch.where(valid, comp * (cb.B * cb.H * cb.W) + flat, torch.full_like(flat, BIG)))
    return comp[order], flat[order], valid[order]

"""The component engine under decoding (docs/method.md §6) and self-refinement (§5).

Both stages work per class and per 8-connected component of a class map: center NMS restricted to
the component, optional center-clustering candidates, grouping of the component's pixels to its
centers through the offsets, and statistics per instance. This module does all of that for every
component of a batch at once:

* ``ComponentBatch``: labels of a ``(B, H, W)`` class-map batch, the component table and the pixel
  list on the device (built by ``component_labelling.label_class_maps``); ``pack_buckets``;
* ``component_peaks``: NMS of each component's class heatmap on its bounding-box crop;
  ``peak_count_bound`` / ``SlotBounds``: upper bounds of the peaks per component (3x3 local
  maxima of the component), read with the labelling's counts so that grouping needs no read;
* ``group_to_centers``: nearest-center grouping inside every component and per-instance
  ("slot") count / heatmap max / argmax;
* ``slot_mean``, and the small ops ``sliding_max_pool``, ``channel_argmax``, ``take``,
  ``sq_dist``, ``check_nms_kernel``.

How it stays fast without changing results (the authors' code runs one full-image 41x41 max-pool
and one full-image grouping per component):

* Labelling (``component_labelling``) runs with OpenCV on each class's bounding box on the CPU
  (about 1 ms per 512x512 class mask), or in torch on the device (no host round trip).
* NMS restricted to a component == a max-pool of its heatmap with -1 outside the component, and
  pixels outside its bounding box can never matter: components are cropped, crops of similar size
  padded into one batch and pooled together with a separable log-step sliding max.
* Grouping restricted to a component needs only its pixels and centers: one ``(P, K_max)``
  distance/argmin over the pixels of all components, each against its own (padded) center list.
* Statistics are scatter reductions over the pixel list. No Python loop runs per pixel or per
  component; the host syncs are a fixed few per call (counted with CUDA sync debug mode).
"""
import numpy as np
import torch

__all__ = [
    "COL_IMG", "COL_CLS", "COL_AREA", "COL_Y0", "COL_X0", "COL_H", "COL_W", "COL_CY", "COL_CX", "NUM_COLS", "BIG",
    "ComponentBatch", "SlotBounds", "pack_buckets", "peak_count_bound", "component_peaks", "sorted_peaks",
    "group_to_centers", "heat_index", "slot_mean", "sliding_max_pool", "channel_argmax", "check_nms_kernel", "take",
    "sq_dist", "to_host",
]

BIG = 1 << 62  # sort key / index larger than any real one

# columns of ComponentBatch.table (row 0 = "no component"): image, class (0..C-1), area (px),
# bounding box top / left / height / width (px), int-truncated centroid y / x (px)
COL_IMG, COL_CLS, COL_AREA, COL_Y0, COL_X0, COL_H, COL_W, COL_CY, COL_CX = range(9)
NUM_COLS = 9


# ------------------------------------------------------------------------------------------------
# small ops
# ------------------------------------------------------------------------------------------------
def check_nms_kernel(k):
    """``int(k)``; raises unless it is a positive odd integer (an NMS window in pixels)."""
    k = int(k)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd integer, got {k}")
    return k


def _sliding_max_1d(x, k, dim):
    """Centred sliding max of odd width ``k`` along ``dim`` (-inf padding), same length."""
    r = k // 2
    if r == 0:
        return x
    L = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = r
    pad = x.new_full(pad_shape, float("-inf"))
    w = torch.cat([pad, x, pad], dim)
    s = 1
    # w[i] = max(x[i .. i+s-1]); doubling until s is the largest power of two <= k
    while 2 * s <= k:
        n = w.shape[dim] - s
        w = torch.maximum(w.narrow(dim, 0, n), w.narrow(dim, s, n))
        s *= 2
    # a window of k = union of two overlapping windows of s (max is idempotent)
    return torch.maximum(w.narrow(dim, 0, L), w.narrow(dim, k - s, L))


def sliding_max_pool(x, k):
    """``F.max_pool2d(x, k, stride=1, padding=k // 2)`` over the last two dims, exactly, for odd ``k``.

    ``x``: ``(..., H, W)`` float; returns the same shape. Separable (max is separable over
    rectangles) and log-step: about ``2 log2(k)`` elementwise maxima per pixel instead of ``k²``.
    """
    k = check_nms_kernel(k)
    return _sliding_max_1d(_sliding_max_1d(x, k, -1), k, -2)


def channel_argmax(x):
    """``x.argmax(0)`` (first maximum) of ``(K, H, W)`` as ``(H, W)`` uint8 (K <= 255; long above 256).

    On the CPU, torch's argmax over the outer dimension is ~100x slower than a max reduction, so
    the first index reaching the maximum is found with an ``amax`` and one weighted ``amax``.
    """
    K = x.shape[0]
    if x.is_cuda or K > 255:
        return x.argmax(0).to(torch.uint8 if K <= 256 else torch.long)
    best = x.amax(0, keepdim=True)
    w = torch.arange(K, 0, -1, dtype=torch.uint8, device=x.device).view(K, 1, 1)  # K .. 1
    return (K - ((x == best) * w).amax(0)).to(torch.uint8)


def to_host(t):
    """``t`` as a host numpy array: the engine's only way to read device values (one device -> host
    copy, a host synchronisation on CUDA; ``tests/test_refine_syncs.py`` counts the calls)."""
    return t.cpu().numpy()


def take(src, idx):
    """``src.reshape(-1)[idx]`` with ``idx``'s shape, via ``index_select`` (several times faster
    than advanced indexing on the CPU)."""
    return src.reshape(-1).index_select(0, idx.reshape(-1)).view(idx.shape)


def sq_dist(cy, cx, vy, vx):
    """Squared distance (px²) between centers and votes; one formula everywhere, for identical ties."""
    return (cy - vy) ** 2 + (cx - vx) ** 2


# ------------------------------------------------------------------------------------------------
# labelling
# ------------------------------------------------------------------------------------------------
class ComponentBatch:
    """The 8-connected components (>= ``min_area`` px) of every class of a batch of class maps.

    Built by ``component_labelling.label_class_maps`` (OpenCV on the host, or torch on the
    device); both give the same tensors, bit for bit. Components are numbered ``1..M`` by image,
    class, then OpenCV's order inside the class's bounding box.

    Attributes (device): ``lab`` ``(B, H, W)`` long global component id (0 = none); ``pix`` ``(P,)``
    long flat indices ``b*H*W + y*W + x`` of every component pixel (raster order); ``comp_p`` the
    component of each; ``table`` ``(M+1, 9)`` long rows ``[img, cls, area, y0, x0, h, w, cy, cx]``
    (columns ``COL_*``), ``col`` its transpose (one contiguous row per column); ``bucket_ids``
    component ids grouped into NMS crop batches; ``cand`` ``(Q, 3)`` long clustering candidates
    ``[comp, y, x]`` sorted by component, then the raster index of their region's first pixel.
    Host: ``buckets`` (list of (start, stop, Hmax, Wmax)), ``M`` (components), ``B``, ``H``, ``W``.
    ``slot_bounds``: None, or the grouping's sizes read with the labelling (``SlotBounds``), so
    that grouping needs no host read of its own.
    """

    def __init__(self, lab, pix, table, bucket_ids, cand, buckets, slot_bounds=None):
        self.B, self.H, self.W = lab.shape
        self.M = table.shape[0] - 1
        self.lab, self.pix, self.table, self.bucket_ids, self.cand = lab, pix, table, bucket_ids, cand
        self.buckets = buckets
        self.slot_bounds = slot_bounds
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
    """Center NMS restricted to each component of ``cb``, without a host sync.

    Args:
        cb: ``ComponentBatch``.
        center: ``(B, C, H, W)`` heatmaps (a component uses its class channel).
        threshold: values ``<= threshold`` are no center; nms_kernel: odd window (px).

    Returns:
        ``(E,)`` long over every pixel of the NMS crops: the flat pixel (``b*H*W + y*W + x``) of
        each peak (a component pixel above ``threshold`` equal to the max of the component's
        heatmap in its ``k x k`` window), -1 elsewhere; ``sorted_peaks`` lists them.
    """
    k = check_nms_kernel(nms_kernel)
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


def _assign_slots(cb, offset, comp_c, y_c, x_c, valid, n_slots, kmax, max_elems):
    """Each pixel's slot: the nearest center of its component through its vote (centers sorted by
    component; invalid ones last). ``n_slots`` ``(M+1,)`` slots per component (at least its center
    count, row 0 none), ``kmax`` >= the most centers of a component (host). No host sync.

    Returns ``(slot (P,), n_centers (M+1,))``.
    """
    dev = cb.device
    M, W, HW = cb.M, cb.W, cb.H * cb.W
    kmax = max(int(kmax), 1)
    n_centers = torch.zeros(M + 1, dtype=torch.long, device=dev).index_add_(0, comp_c, valid.long())
    base = torch.cumsum(n_slots, 0) - n_slots
    start = torch.cumsum(n_centers, 0) - n_centers

    # padded center table (M+1, kmax); padding = +inf (never the argmin unless no center);
    # invalid centers go to a dropped last column
    rank = torch.arange(comp_c.shape[0], device=dev) - start[comp_c]
    rank = torch.where(valid, rank, torch.full_like(rank, kmax))
    cen_y = torch.full((M + 1, kmax + 1), float("inf"), dtype=offset.dtype, device=dev)
    cen_x = torch.full((M + 1, kmax + 1), float("inf"), dtype=offset.dtype, device=dev)
    cen_y[comp_c, rank] = torch.where(valid, y_c.to(offset.dtype), float("inf"))
    cen_x[comp_c, rank] = torch.where(valid, x_c.to(offset.dtype), float("inf"))
    cen_y, cen_x = cen_y[:, :kmax].contiguous(), cen_x[:, :kmax].contiguous()

    pix, comp_p = cb.pix, cb.comp_p
    P = pix.shape[0]
    rem = pix % HW
    obase = (pix - rem) * 2 + rem  # b * 2HW + rem
    off_flat = offset.reshape(-1)
    vy = (rem // W).to(offset.dtype) + take(off_flat, obase)
    vx = (rem % W).to(offset.dtype) + take(off_flat, obase + HW)
    if kmax == 1:
        j = torch.zeros(P, dtype=torch.long, device=dev)
    else:
        j = torch.empty(P, dtype=torch.long, device=dev)
        chunk = max(1, max_elems // kmax)
        for s in range(0, P, chunk):
            cc_ = comp_p[s:s + chunk]
            d = sq_dist(cen_y.index_select(0, cc_), cen_x.index_select(0, cc_),
                        vy[s:s + chunk, None], vx[s:s + chunk, None])  # (p, kmax)
            j[s:s + chunk] = d.argmin(1)
    return take(base, comp_p) + j, n_centers


def group_to_centers(cb, offset, comp_c, y_c, x_c, key, valid, heat_p, n_slots, kmax, T, max_elems=1 << 22):
    """Group every component pixel to the nearest of its component's centers, and slot statistics.

    Args:
        cb: ``ComponentBatch``.
        offset: ``(B, 2, H, W)`` (dy, dx) in pixels; a pixel ``p`` votes for ``p + offset(p)``.
        comp_c, y_c, x_c: ``(K,)`` long component and position (px) of every center candidate.
        key: ``(K,)`` long order of the centers inside a component (ties: lowest index wins).
        valid: ``(K,)`` bool, the candidates that are centers.
        heat_p: ``(P,)`` heatmap at every ``cb.pix`` (in its component's class channel).
        n_slots: ``(M+1,)`` long instance slots per component, at least ``max(#centers, 1)`` (row 0:
            0); a component's centers take its first slots in ``key`` order (one slot when it has
            no center), the others stay empty (count 0).
        kmax: host int >= the most centers of one component; T: host int, ``n_slots.sum()``.

    Returns:
        dict with per-pixel ``slot`` (P,) (instance slot of each ``cb.pix``) and ``heat`` (=
        ``heat_p``); per-slot ``slot_comp``, ``count``, ``hmax`` (max heatmap), ``argmax_flat``
        (first flat pixel reaching it); per-component ``n_centers`` (M+1,); ``T``. No host sync.
    """
    dev = cb.device
    key = torch.where(valid, key, torch.full_like(key, BIG))
    order = torch.argsort(key)
    comp_c, y_c, x_c, valid = comp_c[order], y_c[order], x_c[order], valid[order]
    slot, n_centers = _assign_slots(cb, offset, comp_c, y_c, x_c, valid, n_slots, kmax, max_elems)

    pix = cb.pix
    count = torch.zeros(T, dtype=torch.long, device=dev).index_add_(0, slot, torch.ones_like(slot))
    hmax = torch.full((T,), float("-inf"), dtype=heat_p.dtype, device=dev)
    hmax.scatter_reduce_(0, slot, heat_p, reduce="amax")
    eq = heat_p == take(hmax, slot)
    argmax_flat = torch.full((T,), BIG, dtype=torch.long, device=dev)
    argmax_flat.scatter_reduce_(0, slot, torch.where(eq, pix, torch.full_like(pix, BIG)), reduce="amin")
    slot_comp = torch.repeat_interleave(torch.arange(cb.M + 1, device=dev), n_slots, output_size=T)
    return {
        "slot": slot,
        "heat": heat_p,
        "slot_comp": slot_comp,
        "count": count,
        "hmax": hmax,
        "argmax_flat": argmax_flat,
        "n_centers": n_centers,
        "T": T,
    }


def slot_mean(values_p, slot, count):
    """Mean of per-pixel ``values_p`` ``(P,)`` over each slot (float64 accumulation); ``count`` ``(T,)``."""
    s = torch.zeros(count.shape[0], dtype=torch.float64, device=values_p.device)
    s.index_add_(0, slot, values_p.double())
    return (s / count.clamp(min=1).double()).to(values_p.dtype)

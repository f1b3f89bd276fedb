"""Grouping every component pixel to the nearest of its component's centers, and the per-instance
("slot") statistics (docs/method.md §5.1, §6).

``group_components`` = ``centers.find_centers`` + ``group_to_centers``. Two implementations of the
assignment and the statistics give the same results, bit for bit:

* OpenCV / torch batches: a ``(P, kmax)`` distance table per chunk of pixels and its ``argmin``;
  the statistics are scatter reductions over the pixels (``index_add_`` / ``scatter_reduce_``).
* Triton batches (``kernels.pixel_grouping``): one kernel that assigns the pixels and reduces the
  statistics per run of equal slot before one atomic per run (no per-pixel atomics into few
  addresses).
"""
import torch

from .centers import find_centers
from .kernels import AVAILABLE
from .ops import BIG, sq_dist, take

if AVAILABLE:
    from .kernels.pixel_grouping import EMPTY_KEY, group_pixels

__all__ = ["group_components", "group_to_centers", "slot_mean"]


def group_components(cb, center, offset, *, threshold, nms_kernel, cluster=None, values_p=None, max_elems=1 << 22):
    """Centers (NMS + optional clustering merge) and grouping inside every component at once.

    Args:
        cb: ``ComponentBatch`` with ``M >= 1`` (with clustering candidates in ``cb.cand`` when
            ``cluster`` is set).
        center: ``(B, C, H, W)`` center heatmaps (a component uses its class channel).
        offset: ``(B, 2, H, W)`` (dy, dx) px.
        threshold, nms_kernel: center NMS parameters.
        cluster: ``ClusterParams`` or None (then ``cb.cand`` is ignored).
        values_p: optional ``(P,)`` per-pixel values at ``cb.pix`` to average per slot.

    Returns:
        the dict of ``group_to_centers``; ``heat`` is the marked heatmap. Host syncs: those of
        ``centers.find_centers`` (none when the labelling read the slot bounds).
    """
    c = find_centers(cb, center, threshold=threshold, nms_kernel=nms_kernel, cluster=cluster)
    return group_to_centers(cb, offset, c.comp, c.y, c.x, c.key, c.valid, c.heat, c.n_slots, c.kmax, c.T,
                            values_p=values_p, max_elems=max_elems)


def _nearest_center_slots(cb, offset, comp_c, y_c, x_c, valid, start, base, kmax, max_elems):
    """Torch: each pixel's slot, the nearest center of its component through its vote (centers
    sorted by component; invalid ones last), from a padded ``(M+1, kmax)`` center table."""
    dev = cb.device
    M, W, HW = cb.M, cb.W, cb.H * cb.W
    kmax = max(int(kmax), 1)
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
    return take(base, comp_p) + j


def _torch_slot_statistics(cb, slot, heat_p, values_p, T):
    """Torch: ``(count, hmax, argmax_flat, value_sum)`` per slot by scatter reductions."""
    dev = cb.device
    pix = cb.pix
    count = torch.zeros(T, dtype=torch.long, device=dev).index_add_(0, slot, torch.ones_like(slot))
    hmax = torch.full((T,), float("-inf"), dtype=heat_p.dtype, device=dev)
    hmax.scatter_reduce_(0, slot, heat_p, reduce="amax")
    eq = heat_p == take(hmax, slot)
    argmax_flat = torch.full((T,), BIG, dtype=torch.long, device=dev)
    argmax_flat.scatter_reduce_(0, slot, torch.where(eq, pix, torch.full_like(pix, BIG)), reduce="amin")
    vsum = None
    if values_p is not None:
        vsum = torch.zeros(T, dtype=torch.float64, device=dev).index_add_(0, slot, values_p.double())
    return count, hmax, argmax_flat, vsum


def _triton_slots(cb, offset, y_c, x_c, start, n_centers, base, heat_p, values_p, T):
    """Triton: ``(slot, count, hmax, argmax_flat, value_sum)`` from ``kernels.pixel_grouping``."""
    vals = heat_p.new_zeros(0) if values_p is None else values_p
    slot, count, vsum, hkey = group_pixels(
        cb.pix, cb.comp_p, offset.float().contiguous(), y_c.float(), x_c.float(), start, n_centers, base,
        heat_p.float().contiguous(), (vals.float() if values_p is not None else heat_p.float()).contiguous(), T)
    empty = hkey == EMPTY_KEY
    hi = (hkey >> 32).to(torch.int32)
    hval = torch.where(hi >= 0, hi, hi ^ 0x7FFFFFFF).view(torch.float32)
    hmax = torch.where(empty, float("-inf"), hval).to(heat_p.dtype)
    argmax_flat = torch.where(empty, BIG, 4294967295 - (hkey & 4294967295))
    return slot, count, hmax, argmax_flat, (vsum if values_p is not None else None)


def group_to_centers(cb, offset, comp_c, y_c, x_c, key, valid, heat_p, n_slots, kmax, T, values_p=None,
                     max_elems=1 << 22):
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
        values_p: optional ``(P,)`` values at every ``cb.pix``, averaged per slot.

    Returns:
        dict with per-pixel ``slot`` (P,) (instance slot of each ``cb.pix``) and ``heat`` (=
        ``heat_p``); per-slot ``slot_comp``, ``count``, ``hmax`` (max heatmap), ``argmax_flat``
        (first flat pixel reaching it), with ``values_p`` ``value_mean`` (float64 sums / count, in
        ``values_p``'s dtype); per-component ``n_centers`` (M+1,); ``T``. No host sync.
    """
    dev = cb.device
    key = torch.where(valid, key, torch.full_like(key, BIG))
    order = torch.argsort(key)
    comp_c, y_c, x_c, valid = comp_c[order], y_c[order], x_c[order], valid[order]
    n_centers = torch.zeros(cb.M + 1, dtype=torch.long, device=dev).index_add_(0, comp_c, valid.long())
    base = torch.cumsum(n_slots, 0) - n_slots
    start = torch.cumsum(n_centers, 0) - n_centers
    if cb.backend == "triton":
        slot, count, hmax, argmax_flat, vsum = _triton_slots(cb, offset, y_c, x_c, start, n_centers, base, heat_p,
                                                             values_p, T)
    else:
        slot = _nearest_center_slots(cb, offset, comp_c, y_c, x_c, valid, start, base, kmax, max_elems)
        count, hmax, argmax_flat, vsum = _torch_slot_statistics(cb, slot, heat_p, values_p, T)
    out = {
        "slot": slot,
        "heat": heat_p,
        "slot_comp": torch.repeat_interleave(torch.arange(cb.M + 1, device=dev), n_slots, output_size=T),
        "count": count,
        "hmax": hmax,
        "argmax_flat": argmax_flat,
        "n_centers": n_centers,
        "T": T,
    }
    if vsum is not None:
        out["value_mean"] = (vsum / count.clamp(min=1).double()).to(values_p.dtype)
    return out

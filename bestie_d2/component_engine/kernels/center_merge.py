"""Merging the center-clustering candidates into the NMS peaks (``bestie::merge_candidates``;
supplement §1, docs/method.md §5.1).

A candidate ``(comp, cy, cx)`` is added as a center when its pixel lies in its component, the
component's heatmap there is above ``min_heatmap`` and no peak of the same component is within
``merge_distance`` (``d² <= merge_distance²``; integer ``d²``, so the test is ``d² >= far_min``
with ``far_min = floor(merge_distance²) + 1``, exact). An added candidate marks its pixel: the
heatmap counts as 1.0 there (``heat_p`` at that pixel of the raster-ordered pixel list, found by
binary search). One program handles ``BLOCK`` candidates; each walks the peaks of its component
(``peak_start`` / ``peak_count``, the peaks sorted by component).
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import flat_tiles, launch

__all__ = ["merge_candidates"]


@triton.jit(do_not_specialize=["Q", "P", "H", "W", "C", "far_min", "SEARCH_STEPS"])
def _merge_candidates_kernel(CAND, PKY, PKX, PSTART, PCOUNT, CIMG, CCLS, LAB, HEAT, PIX, HVOUT, ADD, Q, P, H, W, C,
                             min_heatmap, far_min, SEARCH_STEPS, BLOCK: tl.constexpr):
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = q < Q
    cc = tl.load(CAND + q * 3, mask=m, other=0)
    cy = tl.load(CAND + q * 3 + 1, mask=m, other=0)
    cx = tl.load(CAND + q * 3 + 2, mask=m, other=0)
    HW = H * W
    img = tl.load(CIMG + cc, mask=m, other=0)
    rem = cy * W + cx
    cflat = img * HW + rem
    in_comp = m & (tl.load(LAB + cflat, mask=m, other=0) == cc)
    cls = tl.load(CCLS + cc, mask=m, other=0)
    ch = tl.load(HEAT + (img * C + cls) * HW + rem, mask=in_comp, other=0.0)
    ok = m & (tl.where(in_comp, ch, 0.0) > min_heatmap)
    p0 = tl.load(PSTART + cc, mask=m, other=0)
    n = tl.load(PCOUNT + cc, mask=m, other=0)
    far = m
    for j in range(0, tl.max(tl.where(m, n, 0), 0)):
        okj = m & (j < n)
        py = tl.load(PKY + p0 + j, mask=okj, other=0)
        px = tl.load(PKX + p0 + j, mask=okj, other=0)
        d2 = (cy - py) * (cy - py) + (cx - px) * (cx - px)
        far = far & ~(okj & (d2 < far_min))
    add = ok & far
    tl.store(ADD + q, add.to(tl.int8), mask=m)
    # mark: position of cflat in the sorted pixel list
    lo = tl.zeros([BLOCK], dtype=tl.int64)
    hi = tl.zeros([BLOCK], dtype=tl.int64) + P
    for _ in range(0, SEARCH_STEPS):
        act = lo < hi
        mid = (lo + hi) // 2
        less = tl.load(PIX + mid, mask=m & act, other=0) < cflat
        lo, hi = tl.where(act & less, mid + 1, lo), tl.where(act & ~less, mid, hi)
    hit = add & in_comp & (lo < P)
    hit = hit & (tl.load(PIX + lo, mask=hit, other=-1) == cflat)
    tl.store(HVOUT + lo, tl.full([BLOCK], 1.0, tl.float32), mask=hit)


@triton_op("bestie::merge_candidates", mutates_args={})
def merge_candidates(cand: torch.Tensor, peak_y: torch.Tensor, peak_x: torch.Tensor, peak_start: torch.Tensor,
                     peak_count: torch.Tensor, comp_img: torch.Tensor, comp_cls: torch.Tensor, lab: torch.Tensor,
                     heat: torch.Tensor, pix: torch.Tensor, heat_p: torch.Tensor, min_heatmap: float,
                     merge_distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The added candidates and the marked pixel heatmap (module docstring).

    Args:
        cand: ``(Q, 3)`` int64 ``[comp, y, x]`` clustering candidates.
        peak_y, peak_x: ``(K,)`` int64 peak positions sorted by component; component ``m`` has
            ``peak_count[m]`` valid peaks from ``peak_start[m]`` (``(M+1,)`` int64).
        comp_img, comp_cls: ``(M+1,)`` int64 image and class of each component.
        lab: ``(B, H, W)`` int64 component ids; heat: ``(B, C, H, W)`` float32 heatmaps.
        pix: ``(P,)`` int64 component pixels in raster order; heat_p: ``(P,)`` float32 heatmap there.
        min_heatmap, merge_distance: ``ClusterParams``' (px).

    Returns:
        ``add`` ``(Q,)`` bool and the marked copy of ``heat_p``.
    """
    cand, peak_y, peak_x, peak_start, peak_count, comp_img, comp_cls, pix = (
        t.contiguous() for t in (cand, peak_y, peak_x, peak_start, peak_count, comp_img, comp_cls, pix))
    Q, P = cand.shape[0], pix.numel()
    add = torch.empty(Q, dtype=torch.int8, device=cand.device)
    hv = heat_p.clone()
    if Q:
        md = float(merge_distance)
        far_min = 0 if md < 0 else int(md * md // 1) + 1  # integer d2 > md² <=> d2 >= floor(md²) + 1
        B, C, H, W = heat.shape
        grid, block = flat_tiles(Q)
        launch(_merge_candidates_kernel, grid, cand, peak_y, peak_x, peak_start, peak_count, comp_img, comp_cls, lab,
               heat, pix, hv, add, Q, P, H, W, C, float(min_heatmap), far_min, max(P, 1).bit_length() + 1, BLOCK=block)
    return add.bool(), hv

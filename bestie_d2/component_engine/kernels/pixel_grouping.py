"""Every component pixel to the nearest of its component's centers, with the per-slot statistics
(``bestie::group_pixels``; docs/method.md §5.1, §6).

A pixel ``p`` of component ``m`` votes for ``p + offset(p)`` and joins the center of ``m`` nearest
to the vote (squared distance in float32, ``(cy - vy)² + (cx - vx)²`` without fused multiply-adds,
first center on ties, exactly as the torch path); its slot is ``slot_base[m] + j``. The slot
statistics (pixel count, sum of a per-pixel value in float64, maximum of the heatmap with the
first pixel reaching it) are reduced inside each block of the pixel list first: the list is in
raster order, so consecutive pixels of one slot form runs, reduced with in-register doubling
scans; each run adds into its slot with one atomic per statistic. A slot thus receives about one
atomic per image row it spans, not one per pixel.

The heatmap maximum and its first pixel travel as one int64 key (order-preserving bits of the
float32 value in the high word, ``2**32 - 1 - pixel`` in the low word), so one ``atomic_max``
keeps both.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import flat_tiles, launch
from .scans import pixel_position, run_start, segmented_sum_max

__all__ = ["group_pixels", "EMPTY_KEY"]

EMPTY_KEY = -(1 << 63)  # heat key of a slot no pixel joined


@triton.jit(do_not_specialize=["P", "H", "W"])
def _group_pixels_kernel(PIX, COMP, OFF, CY, CX, CSTART, NCEN, SBASE, HV, VALS, SLOT, COUNT, VSUM, HKEY, P, H, W,
                         BLOCK: tl.constexpr, LOG: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = e < P
    pix = tl.load(PIX + e, mask=m, other=0)
    comp = tl.load(COMP + e, mask=m, other=0)
    b, rem, y, x = pixel_position(pix, H, W)
    HW = H * W
    nc = tl.load(NCEN + comp, mask=m, other=0)
    s0 = tl.load(CSTART + comp, mask=m, other=0)
    oy = tl.load(OFF + b * 2 * HW + rem, mask=m, other=0.0)
    ox = tl.load(OFF + (b * 2 + 1) * HW + rem, mask=m, other=0.0)
    vy = y.to(tl.float32) + oy
    vx = x.to(tl.float32) + ox
    best = tl.full([BLOCK], float("inf"), tl.float32)
    bj = tl.zeros([BLOCK], dtype=tl.int64)
    nmax = tl.max(tl.where(m, nc, 0), 0)
    for j in range(0, nmax):
        okj = m & (j < nc)
        cy = tl.load(CY + s0 + j, mask=okj, other=0.0)
        cx = tl.load(CX + s0 + j, mask=okj, other=0.0)
        dy = cy - vy
        dx = cx - vx
        d = dy * dy + dx * dx
        upd = okj & (d < best)
        best = tl.where(upd, d, best)
        bj = tl.where(upd, j, bj)
    slot = tl.load(SBASE + comp, mask=m, other=0) + bj
    tl.store(SLOT + e, slot, mask=m)

    hv = tl.load(HV + e, mask=m, other=0.0) + 0.0  # + 0.0: -0.0 -> 0.0, one key for equal values
    bits = hv.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
    hk = ordered * 4294967296 + (4294967295 - pix)
    vs = tl.load(VALS + e, mask=m, other=0.0).to(tl.float64)
    k = tl.arange(0, BLOCK)
    prev = tl.gather(slot, tl.maximum(k - 1, 0), 0)
    nxt = tl.gather(slot, tl.minimum(k + 1, BLOCK - 1), 0)
    s = run_start(slot, prev, k, 0, LOG)
    end = m & ((k == BLOCK - 1) | (e == P - 1) | (nxt != slot))
    vs, hk = segmented_sum_max(vs, hk, k, s, 0, LOG)
    tl.atomic_add(COUNT + slot, (k - s + 1).to(tl.int64), mask=end)
    tl.atomic_add(VSUM + slot, vs, mask=end)
    tl.atomic_max(HKEY + slot, hk, mask=end)


@triton_op("bestie::group_pixels", mutates_args={})
def group_pixels(pix: torch.Tensor, comp_p: torch.Tensor, offset: torch.Tensor, center_y: torch.Tensor,
                 center_x: torch.Tensor, center_start: torch.Tensor, n_centers: torch.Tensor, slot_base: torch.Tensor,
                 heat_p: torch.Tensor, values_p: torch.Tensor,
                 n_slots_total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest-center grouping of the component pixels, and the slot statistics.

    Args:
        pix: ``(P,)`` int64 flat pixels ``b*H*W + y*W + x`` in raster order; ``comp_p`` ``(P,)``
            int64 their components (``1..M``).
        offset: ``(B, 2, H, W)`` float32 (dy, dx) px.
        center_y, center_x: ``(Kc,)`` float32 center positions (px), grouped by component in
            tie-break order: component ``m`` has ``n_centers[m]`` of them from ``center_start[m]``.
        center_start, n_centers, slot_base: ``(M+1,)`` int64 (``slot_base``: the first slot of
            each component; a component without center has one slot).
        heat_p: ``(P,)`` float32 heatmap (its class channel, marked) at each pixel.
        values_p: ``(P,)`` float32, summed per slot in float64.
        n_slots_total: ``T``, the number of slots.

    Returns:
        ``slot`` ``(P,)`` int64, ``count`` ``(T,)`` int64, ``value_sum`` ``(T,)`` float64,
        ``heat_key`` ``(T,)`` int64 (module docstring; ``EMPTY_KEY`` for an empty slot).
    """
    pix, comp_p, center_y, center_x, center_start, n_centers, slot_base, heat_p, values_p = (
        t.contiguous() for t in (pix, comp_p, center_y, center_x, center_start, n_centers, slot_base, heat_p,
                                 values_p))
    P = pix.numel()
    dev = pix.device
    T = int(n_slots_total)
    slot = torch.empty(P, dtype=torch.int64, device=dev)
    count = torch.zeros(T, dtype=torch.int64, device=dev)
    vsum = torch.zeros(T, dtype=torch.float64, device=dev)
    hkey = torch.full((T,), EMPTY_KEY, dtype=torch.int64, device=dev)
    if P:
        _, _, H, W = offset.shape
        grid, block = flat_tiles(P)
        launch(_group_pixels_kernel, grid, pix, comp_p, offset, center_y, center_x, center_start, n_centers,
               slot_base, heat_p, values_p, slot, count, vsum, hkey, P, H, W, BLOCK=block,
               LOG=block.bit_length() - 1, enable_fp_fusion=False)
    return slot, count, vsum, hkey

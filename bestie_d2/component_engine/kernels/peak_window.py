"""Center NMS restricted to a component, one test per candidate (``bestie::window_peaks``).

A candidate ``p`` (``component_pass.peak_candidates``: above the threshold and not below any
same-component 8-neighbour) is a peak when no pixel of its component inside its ``k x k`` window
has a larger heatmap value (docs/method.md §5.1: the max-pool of the component-restricted heatmap
equals the value at ``p``). A program tests ``CB`` candidates; each reads its window row by row
(``k`` rows of ``BK`` >= k columns), so the cost is ``k²`` loads per candidate, whatever the
component's size, and the candidates are few (3x3 local maxima).
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import launch, per_program
from .scans import pixel_position

__all__ = ["window_peaks"]


@triton.jit(do_not_specialize=["K", "H", "W", "C", "RADIUS"])
def _window_peaks_kernel(CANDS, IDS, CM, HEAT, OUT, K, H, W, C, RADIUS, CB: tl.constexpr, BK: tl.constexpr):
    c = tl.program_id(0) * CB + tl.arange(0, CB)[:, None]
    mc = c < K
    f = tl.load(CANDS + c, mask=mc, other=0)
    b, rem, y, x = pixel_position(f, H, W)
    HW = H * W
    cid = tl.load(IDS + f, mask=mc, other=0)
    v = tl.load(CM + f, mask=mc, other=1)
    hbase = (b * C + (v - 1)) * HW
    h = tl.load(HEAT + hbase + rem, mask=mc, other=0.0)
    dx = tl.arange(0, BK)[None, :] - RADIUS
    okx = mc & (dx <= RADIUS) & (x + dx >= 0) & (x + dx < W)
    bad = tl.zeros([CB, BK], dtype=tl.int32)
    for dy in range(-RADIUS, RADIUS + 1):
        yy = y + dy
        ok = okx & (yy >= 0) & (yy < H)
        q = yy * W + x + dx
        cq = tl.load(IDS + b * HW + q, mask=ok, other=0)
        hq = tl.load(HEAT + hbase + q, mask=ok, other=0.0)
        bad = bad | (ok & (cq == cid) & (hq > h)).to(tl.int32)
    peak = mc & (tl.max(bad, 1)[:, None] == 0)
    tl.store(OUT + c, tl.where(peak, f, -1), mask=mc)


@triton_op("bestie::window_peaks", mutates_args={})
def window_peaks(candidates: torch.Tensor, ids: torch.Tensor, class_maps: torch.Tensor, heat: torch.Tensor,
                 nms_kernel: int) -> torch.Tensor:
    """The candidates that are NMS peaks of their component.

    Args:
        candidates: ``(K,)`` int64 flat pixels ``b*H*W + y*W + x`` (each above the threshold).
        ids: ``(B, H, W)`` int64 component id of each pixel (0 = none).
        class_maps: ``(B, H, W)`` int32 (``c + 1``: the heatmap channel ``c`` of a pixel).
        heat: ``(B, C, H, W)`` float32 center heatmaps.
        nms_kernel: odd window (px).

    Returns:
        ``(K,)`` int64: the candidate's flat pixel where it is a peak, -1 elsewhere.
    """
    candidates = candidates.contiguous()
    K = candidates.numel()
    out = torch.empty(K, dtype=torch.int64, device=candidates.device)
    if K:
        B, H, W = ids.shape
        k = int(nms_kernel)
        cb = per_program(16, 64)
        launch(_window_peaks_kernel, (triton.cdiv(K, cb),), candidates, ids, class_maps, heat, out, K, H, W,
               heat.shape[1], k // 2, CB=cb, BK=triton.next_power_of_2(k))
    return out

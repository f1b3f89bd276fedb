"""Writing the refined instance targets (``bestie::write_instance_targets``; docs/method.md §5.1).

For every kept instance slot: its Gaussian patch is max-merged into the center map of its image
and class (one program per slot, the patch row by row, ``atomic_max`` on float32: exact, and the
same maximum in any order); for every component pixel: ``weight`` = the confidence of its slot and
``offset`` = (center - pixel) in float32 where its slot is kept, 0 elsewhere. The same values as
the torch path (``modeling.self_refinement``), bit for bit.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import flat_tiles, launch, per_program
from .scans import pixel_position

__all__ = ["write_instance_targets"]


@triton.jit(do_not_specialize=["T", "H", "W", "S"])
def _paste_kernel(KEEP, CH, Y0, X0, PATCH, CENTER, T, H, W, S, TB: tl.constexpr, BS: tl.constexpr):
    t = tl.program_id(0) * TB + tl.arange(0, TB)[:, None]
    keep = (t < T) & (tl.load(KEEP + t, mask=t < T, other=0) != 0)
    ch = tl.load(CH + t, mask=keep, other=0)
    y0 = tl.load(Y0 + t, mask=keep, other=0)
    x0 = tl.load(X0 + t, mask=keep, other=0)
    c = tl.arange(0, BS)[None, :]
    xx = x0 + c
    okx = keep & (c < S) & (xx >= 0) & (xx < W)
    for r in range(0, S):
        yy = y0 + r
        ok = okx & (yy >= 0) & (yy < H)
        g = tl.load(PATCH + r * S + c + 0 * t, mask=ok, other=0.0)
        tl.atomic_max(CENTER + (ch * H + yy) * W + xx, g, mask=ok)


@triton.jit(do_not_specialize=["P", "H", "W"])
def _pixel_targets_kernel(PIX, SLOT, KEEP, CONF, PY, PX, WEIGHT, OFFSET, P, H, W, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = e < P
    pix = tl.load(PIX + e, mask=m, other=0)
    s = tl.load(SLOT + e, mask=m, other=0)
    k = m & (tl.load(KEEP + s, mask=m, other=0) != 0)
    b, rem, y, x = pixel_position(pix, H, W)
    HW = H * W
    obase = b * (2 * HW) + rem
    yf = y.to(tl.float32)
    xf = x.to(tl.float32)
    conf = tl.load(CONF + s, mask=k, other=0.0)
    py = tl.load(PY + s, mask=k, other=0).to(tl.float32)
    px = tl.load(PX + s, mask=k, other=0).to(tl.float32)
    tl.store(WEIGHT + pix, tl.where(k, conf, 0.0), mask=m)
    tl.store(OFFSET + obase, tl.where(k, py - yf, 0.0), mask=m)
    tl.store(OFFSET + obase + HW, tl.where(k, px - xf, 0.0), mask=m)


@triton_op("bestie::write_instance_targets", mutates_args={"center", "offset", "weight"})
def write_instance_targets(pix: torch.Tensor, slot: torch.Tensor, keep: torch.Tensor, conf: torch.Tensor,
                           py: torch.Tensor, px: torch.Tensor, channel: torch.Tensor, patch_y0: torch.Tensor,
                           patch_x0: torch.Tensor, patch: torch.Tensor, center: torch.Tensor, offset: torch.Tensor,
                           weight: torch.Tensor) -> None:
    """Refined targets of the kept instance slots, in place.

    Args:
        pix, slot: ``(P,)`` int64 component pixels (flat ``b*H*W + y*W + x``) and their slots.
        keep: ``(T,)`` bool kept slots; conf: ``(T,)`` float32 their confidence; py, px: ``(T,)``
            int64 their center (px); channel: ``(T,)`` int64 center-map channel ``b*C + c``;
            patch_y0, patch_x0: ``(T,)`` int64 top-left corner of each patch (px).
        patch: ``(S, S)`` float32 Gaussian patch.
        center: ``(B, C, H, W)``, offset: ``(B, 2, H, W)``, weight: ``(B, H, W)`` float32 targets,
            written where the pixels / patches fall (``center`` max-merged).
    """
    pix, slot, conf, py, px, channel, patch_y0, patch_x0, patch = (
        t.contiguous() for t in (pix, slot, conf, py, px, channel, patch_y0, patch_x0, patch))
    T, P = keep.numel(), pix.numel()
    H, W = weight.shape[-2:]
    keep_u8 = keep.to(torch.uint8)
    if T:
        S = patch.shape[0]
        tb = per_program(4, 64)
        launch(_paste_kernel, (triton.cdiv(T, tb),), keep_u8, channel, patch_y0, patch_x0, patch, center, T, H, W, S,
               TB=tb, BS=triton.next_power_of_2(S))
    if P:
        grid, block = flat_tiles(P)
        launch(_pixel_targets_kernel, grid, pix, slot, keep_u8, conf, py, px, weight, offset, P, H, W, BLOCK=block)

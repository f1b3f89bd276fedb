"""The component table after the host read (``labelling_triton``), in three small kernels.

* ``bestie::component_rows``: for each kept component root, its table row ``[img, cls, area, y0,
  x0, h, w, cy, cx]`` (``table.COL_*``; int centroid = coordinate sum // area, OpenCV's truncated
  float centroid) and its sort key in OpenCV's numbering: image, class, then the 2x2 block,
  counted from the class's bounding-box origin, that holds the component's first pixels (block
  row of its top row; smallest column over its top row and, when the block holds it, the row
  below).
* ``bestie::component_ids``: the dense component id ``1..M`` of every pixel (0 = none) from the
  roots in table order.
* ``bestie::region_rows``: for each clustering candidate region root, ``[comp, cy, cx]`` and its
  key (component, then the region's first pixel).
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import flat_tiles, launch
from .scans import pixel_position
from .union_find import NSTAT, ST_AREA, ST_SX, ST_SY, ST_X2MIN, ST_XMAX, ST_XMIN, ST_YMAX

__all__ = ["component_rows", "component_ids", "region_rows"]


@triton.jit(do_not_specialize=["M", "H", "W"])
def _component_rows_kernel(ROOTS, CM, S, ORG, ROWS, KEY, M, H, W, NSTAT: tl.constexpr, ST_AREA: tl.constexpr,
                           ST_SY: tl.constexpr, ST_SX: tl.constexpr, ST_YMAX: tl.constexpr, ST_XMIN: tl.constexpr,
                           ST_XMAX: tl.constexpr, ST_X2MIN: tl.constexpr, BLOCK: tl.constexpr):
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = j < M
    r = tl.load(ROOTS + j, mask=m, other=0)
    img, rem, ytop, xfirst = pixel_position(r, H, W)
    HW = H * W
    cls = tl.load(CM + r, mask=m, other=1).to(tl.int64) - 1
    so = r * NSTAT
    area = tl.load(S + so + ST_AREA, mask=m, other=1)
    sy = tl.load(S + so + ST_SY, mask=m, other=0)
    sx = tl.load(S + so + ST_SX, mask=m, other=0)
    ymax = tl.load(S + so + ST_YMAX, mask=m, other=0)
    xmin = tl.load(S + so + ST_XMIN, mask=m, other=0)
    xmax = tl.load(S + so + ST_XMAX, mask=m, other=0)
    x2 = tl.load(S + so + ST_X2MIN, mask=m, other=0)
    oo = (img * 256 + cls + 1) * 2
    oy = tl.load(ORG + oo, mask=m, other=0).to(tl.int64)
    ox = tl.load(ORG + oo + 1, mask=m, other=0).to(tl.int64)
    dy = ytop - oy
    xm = tl.where(dy % 2 == 0, tl.minimum(xfirst, x2), xfirst)
    tl.store(KEY + j, (img * 256 + cls) * HW + (dy // 2) * W + (xm - ox) // 2, mask=m)
    ro = j.to(tl.int64) * 9
    tl.store(ROWS + ro, img, mask=m)
    tl.store(ROWS + ro + 1, cls, mask=m)
    tl.store(ROWS + ro + 2, area, mask=m)
    tl.store(ROWS + ro + 3, ytop, mask=m)
    tl.store(ROWS + ro + 4, xmin, mask=m)
    tl.store(ROWS + ro + 5, ymax - ytop + 1, mask=m)
    tl.store(ROWS + ro + 6, xmax - xmin + 1, mask=m)
    tl.store(ROWS + ro + 7, sy // area, mask=m)
    tl.store(ROWS + ro + 8, sx // area, mask=m)


@triton.jit(do_not_specialize=["M"])
def _root_ids_kernel(ROOTS, CID, M, BLOCK: tl.constexpr):
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = j < M
    r = tl.load(ROOTS + j, mask=m, other=0)
    tl.store(CID + r, j.to(tl.int64) + 1, mask=m)


@triton.jit(do_not_specialize=["N"])
def _pixel_ids_kernel(IDS, CID, LAB, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    v = tl.load(IDS + i, mask=m, other=0)
    c = tl.load(CID + (v - 1), mask=m & (v > 0), other=0)
    tl.store(LAB + i, tl.where(v > 0, c, 0), mask=m)


@triton.jit(do_not_specialize=["Q", "N"])
def _region_rows_kernel(RR, S2, LAB, ROWS, KEY, Q, N, NSTAT: tl.constexpr, ST_AREA: tl.constexpr,
                        ST_SY: tl.constexpr, ST_SX: tl.constexpr, BLOCK: tl.constexpr):
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = j < Q
    r = tl.load(RR + j, mask=m, other=0)
    so = r * NSTAT
    area = tl.load(S2 + so + ST_AREA, mask=m, other=1)
    comp = tl.load(LAB + r, mask=m, other=0)
    ro = j.to(tl.int64) * 3
    tl.store(ROWS + ro, comp, mask=m)
    tl.store(ROWS + ro + 1, tl.load(S2 + so + ST_SY, mask=m, other=0) // area, mask=m)
    tl.store(ROWS + ro + 2, tl.load(S2 + so + ST_SX, mask=m, other=0) // area, mask=m)
    tl.store(KEY + j, comp * N + r, mask=m)


@triton_op("bestie::component_rows", mutates_args={})
def component_rows(roots: torch.Tensor, class_maps: torch.Tensor, stats: torch.Tensor,
                   origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Table rows ``(M, 9)`` int64 and OpenCV-order keys ``(M,)`` of the kept component ``roots``
    (``(M,)`` int64 flat pixels), from ``union_find.label_regions``' statistics and origins."""
    roots = roots.contiguous()
    M = roots.numel()
    rows = torch.empty((M, 9), dtype=torch.int64, device=roots.device)
    key = torch.empty(M, dtype=torch.int64, device=roots.device)
    if M:
        _, H, W = class_maps.shape
        grid, block = flat_tiles(M)
        launch(_component_rows_kernel, grid, roots, class_maps, stats, origin, rows, key, M, H, W, NSTAT=NSTAT,
               ST_AREA=ST_AREA, ST_SY=ST_SY, ST_SX=ST_SX, ST_YMAX=ST_YMAX, ST_XMIN=ST_XMIN, ST_XMAX=ST_XMAX,
               ST_X2MIN=ST_X2MIN, BLOCK=block)
    return rows, key


@triton_op("bestie::component_ids", mutates_args={})
def component_ids(ids: torch.Tensor, roots_in_order: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` int64 component id of every pixel: ``k`` for the pixels whose ``ids`` (root + 1)
    is ``roots_in_order[k - 1] + 1``, 0 where ``ids`` is 0."""
    roots_in_order = roots_in_order.contiguous()
    N = ids.numel()
    lab = torch.empty(ids.shape, dtype=torch.int64, device=ids.device)
    cid = torch.empty(N, dtype=torch.int64, device=ids.device)  # read only at written roots
    M = roots_in_order.numel()
    if M:
        grid, block = flat_tiles(M)
        launch(_root_ids_kernel, grid, roots_in_order, cid, M, BLOCK=block)
    if N:
        grid, block = flat_tiles(N)
        launch(_pixel_ids_kernel, grid, ids, cid, lab, N, BLOCK=block)
    return lab


@triton_op("bestie::region_rows", mutates_args={})
def region_rows(region_roots: torch.Tensor, region_stats: torch.Tensor,
                lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[comp, cy, cx]`` rows ``(Q, 3)`` int64 of the candidate ``region_roots`` and their keys
    ``comp * N + root`` (``(Q,)``), for ``lab`` ``(B, H, W)`` int64 component ids."""
    region_roots = region_roots.contiguous()
    Q = region_roots.numel()
    rows = torch.empty((Q, 3), dtype=torch.int64, device=region_roots.device)
    key = torch.empty(Q, dtype=torch.int64, device=region_roots.device)
    if Q:
        grid, block = flat_tiles(Q)
        launch(_region_rows_kernel, grid, region_roots, region_stats, lab, rows, key, Q, lab.numel(), NSTAT=NSTAT,
               ST_AREA=ST_AREA, ST_SY=ST_SY, ST_SX=ST_SX, BLOCK=block)
    return rows, key

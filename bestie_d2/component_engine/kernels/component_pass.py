"""The per-pixel passes after the union-find labellings (``labelling_triton``), before the one host
read: which components are kept, the counts the host needs, the NMS peak candidates and the
clustering-region candidates. Each is one kernel with per-program sums and one atomic per program
for the counts.

* ``bestie::finalize_components``: a component of the class maps is kept when its area is
  >= ``min_area``; roots of kept components are flagged (``kept_root``) and counted (``M``), their
  areas summed (``P``, the kept pixels); every kept pixel gets the id ``root + 1``, and, with
  clustering, the same id where ``|offset|`` is small (the value map of the 4-connected pass).
* ``bestie::peak_candidates``: the NMS candidates: pixels of a component above ``threshold`` (and
  0) not below any 8-neighbour of the same component (every pixel above the threshold for a 1 x 1
  window). A k x k NMS peak of a component (docs/method.md §5.1) is the maximum of its component
  over its window, so it is one of them. Flagged, counted (``K``) and counted per component.
* ``bestie::finalize_regions``: roots of 4-connected clustering regions whose area passes the
  strict area check are flagged and counted (``Q``), and counted per component.
* ``bestie::slot_totals``: ``T`` = the sum over kept components of max(candidates, 1) (instance
  slots) and ``kmax`` = the most candidates of one component (an upper bound of its centers).
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import flat_tiles, launch, row_tiles
from .union_find import NSTAT, ST_AREA, ST_SPARE

__all__ = ["finalize_components", "peak_candidates", "finalize_regions", "slot_totals"]


@triton.jit(do_not_specialize=["N", "min_area"])
def _finalize_components_kernel(R, S, MAG, KEPT, IDS, VCLU, CNT, N, min_area, NSTAT: tl.constexpr,
                                ST_AREA: tl.constexpr, CLUSTER: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    r = tl.load(R + i, mask=m, other=-1)
    fg = m & (r >= 0)
    area = tl.load(S + r.to(tl.int64) * NSTAT + ST_AREA, mask=fg, other=0)
    kept = fg & (area >= min_area)
    is_root = kept & (r == i)
    ids = tl.where(kept, r + 1, 0)
    tl.store(KEPT + i, is_root.to(tl.uint8), mask=m)
    tl.store(IDS + i, ids, mask=m)
    if CLUSTER:
        mg = tl.load(MAG + i, mask=m, other=0)
        tl.store(VCLU + i, tl.where(mg != 0, ids, 0), mask=m)
    tl.atomic_add(CNT + 0, tl.sum(is_root.to(tl.int64), 0))
    tl.atomic_add(CNT + 1, tl.sum(tl.where(is_root, area, 0), 0))


@triton.jit(do_not_specialize=["NR", "H", "W", "C"])
def _peak_candidates_kernel(IDS, CM, HEAT, CAND, CNT, PER, NR, H, W, C, threshold, PER_STRIDE: tl.constexpr,
                            PER_COL: tl.constexpr, NEIGHBOURS: tl.constexpr, ROWS: tl.constexpr,
                            BLOCK: tl.constexpr):
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    # full (ROWS, BLOCK) tensors, not broadcast views: Triton's interpreter hands raw buffers to
    # its atomics, which misread a broadcast (stride-0) value
    x = tl.arange(0, BLOCK)[None, :] + tl.zeros([ROWS, BLOCK], dtype=tl.int32)
    m = (x < W) & (row < NR)
    i = row * W + x
    cid = tl.load(IDS + i, mask=m, other=0)
    v = tl.load(CM + i, mask=m, other=0)
    inc = m & (cid > 0)
    y = row % H + 0 * x
    b = row // H + 0 * x
    hoff = ((b.to(tl.int64) * C + (v - 1)) * H + y) * W + x
    h = tl.load(HEAT + hoff, mask=inc, other=0.0)
    cand = inc & (h > threshold) & (h > 0.0)
    if NEIGHBOURS:
        for k in tl.static_range(9):
            if k != 4:
                dy = k // 3 - 1
                dx = k % 3 - 1
                ok = cand & (y + dy >= 0) & (y + dy < H) & (x + dx >= 0) & (x + dx < W)
                cq = tl.load(IDS + i + (dy * W + dx), mask=ok, other=0)
                hq = tl.load(HEAT + hoff + (dy * W + dx), mask=ok, other=0.0)
                cand = cand & ~(ok & (cq == cid) & (hq > h))
    tl.store(CAND + i, cand.to(tl.uint8), mask=m)
    tl.atomic_add(CNT, tl.sum(tl.sum(cand.to(tl.int64), 1), 0))
    tl.atomic_add(PER + (cid - 1).to(tl.int64) * PER_STRIDE + PER_COL, tl.full([ROWS, BLOCK], 1, tl.int64), mask=cand)


@triton.jit(do_not_specialize=["N", "area_lo", "area_hi"])
def _finalize_regions_kernel(V2, R2, S2, S1, CAND, CNT, N, area_lo, area_hi, NSTAT: tl.constexpr,
                             ST_AREA: tl.constexpr, ST_SPARE: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    v = tl.load(V2 + i, mask=m, other=0)
    r = tl.load(R2 + i, mask=m & (v != 0), other=-1)
    is_root = m & (v != 0) & (r == i)
    area = tl.load(S2 + i.to(tl.int64) * NSTAT + ST_AREA, mask=is_root, other=0)
    ok = is_root & (area > area_lo) & (area < area_hi)
    tl.store(CAND + i, ok.to(tl.uint8), mask=m)
    tl.atomic_add(CNT, tl.sum(ok.to(tl.int64), 0))
    tl.atomic_add(S1 + (v - 1).to(tl.int64) * NSTAT + ST_SPARE, tl.full([BLOCK], 1, tl.int64), mask=ok)


@triton.jit(do_not_specialize=["N"])
def _slot_totals_kernel(KEPT, S, OUT, N, NSTAT: tl.constexpr, ST_SPARE: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    kr = m & (tl.load(KEPT + i, mask=m, other=0) != 0)
    n = tl.load(S + i.to(tl.int64) * NSTAT + ST_SPARE, mask=kr, other=0)
    tl.atomic_add(OUT, tl.sum(tl.where(kr, tl.maximum(n, 1), 0), 0))
    tl.atomic_max(OUT + 1, tl.max(n, 0))


@triton_op("bestie::finalize_components", mutates_args={})
def finalize_components(root: torch.Tensor, stats: torch.Tensor, mag: torch.Tensor, min_area: int,
                        cluster: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pass after the 8-connected labelling of the class maps (module docstring).

    Args:
        root, stats: ``label_regions(class_maps, 8, ...)``.
        mag: ``(B, H, W)`` bool ``|offset| < offset_threshold`` (read with ``cluster``).
        min_area: smallest kept component (px).

    Returns:
        ``kept_root`` ``(B*H*W,)`` uint8; ``ids`` ``(B, H, W)`` int32 ``root + 1`` on kept pixels,
        0 elsewhere; ``cluster_values`` ``(B, H, W)`` int32 (``ids`` where ``mag``; empty without
        ``cluster``); ``counts`` ``(2,)`` int64 ``[M, P]``.
    """
    N = root.numel()
    dev = root.device
    kept = torch.empty(N, dtype=torch.uint8, device=dev)
    ids = torch.empty_like(root)
    vclu = torch.empty_like(root) if cluster else root.new_empty((0,) + tuple(root.shape[1:]))
    counts = torch.zeros(2, dtype=torch.int64, device=dev)
    if N:
        grid, block = flat_tiles(N)
        launch(_finalize_components_kernel, grid, root, stats, mag if cluster else kept, kept, ids,
               vclu if cluster else ids, counts, N, int(min_area), NSTAT=NSTAT, ST_AREA=ST_AREA,
               CLUSTER=bool(cluster), BLOCK=block)
    return kept, ids, vclu, counts


@triton_op("bestie::peak_candidates", mutates_args={"per_component"})
def peak_candidates(ids: torch.Tensor, class_maps: torch.Tensor, heat: torch.Tensor, threshold: float,
                    nms_kernel: int, per_component: torch.Tensor, per_stride: int,
                    per_col: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NMS peak candidates of every component (module docstring).

    Args:
        ids: ``(B, H, W)`` int32 or int64 component id of each pixel (0 = none).
        class_maps: ``(B, H, W)`` int32, ``c + 1`` = class ``c`` (the heatmap channel of a pixel).
        heat: ``(B, C, H, W)`` float32 center heatmaps.
        threshold, nms_kernel: the center NMS's (``nms_kernel`` >= 3: the 3x3 test).
        per_component: int64 tensor; ``per_component[(id - 1) * per_stride + per_col]`` counts the
            candidates of component ``id``.

    Returns:
        ``candidates`` ``(B*H*W,)`` uint8 and ``K`` ``(1,)`` int64 (their number).
    """
    B, H, W = ids.shape
    cand = torch.empty(ids.numel(), dtype=torch.uint8, device=ids.device)
    k = torch.zeros(1, dtype=torch.int64, device=ids.device)
    if ids.numel():
        grid, rows, block, _ = row_tiles(B * H, W)
        launch(_peak_candidates_kernel, grid, ids, class_maps, heat, cand, k, per_component, B * H, H, W,
               heat.shape[1], float(threshold), PER_STRIDE=int(per_stride), PER_COL=int(per_col),
               NEIGHBOURS=int(nms_kernel) >= 3, ROWS=rows, BLOCK=block)
    return cand, k


@triton_op("bestie::finalize_regions", mutates_args={"component_stats"})
def finalize_regions(region_values: torch.Tensor, region_root: torch.Tensor, region_stats: torch.Tensor,
                     component_stats: torch.Tensor, area_lo: int, area_hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pass after the 4-connected clustering labelling (module docstring).

    Args:
        region_values: ``(B, H, W)`` int32 ``component root + 1`` (0 = none), as labelled.
        region_root, region_stats: ``label_regions(region_values, 4, False)``.
        component_stats: the class-map labelling's statistics; ``ST_SPARE`` of each component root
            gets its candidate regions.
        area_lo, area_hi: a region is a candidate when ``area_lo < area < area_hi`` (px).

    Returns:
        ``candidate_roots`` ``(B*H*W,)`` uint8 and ``Q`` ``(1,)`` int64 (their number).
    """
    N = region_values.numel()
    cand = torch.empty(N, dtype=torch.uint8, device=region_values.device)
    q = torch.zeros(1, dtype=torch.int64, device=region_values.device)
    if N:
        grid, block = flat_tiles(N)
        launch(_finalize_regions_kernel, grid, region_values, region_root, region_stats, component_stats, cand, q,
               N, int(area_lo), int(area_hi), NSTAT=NSTAT, ST_AREA=ST_AREA, ST_SPARE=ST_SPARE, BLOCK=block)
    return cand, q


@triton_op("bestie::slot_totals", mutates_args={})
def slot_totals(kept_root: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """``(2,)`` int64 ``[T, kmax]`` over the kept component roots (module docstring)."""
    N = kept_root.numel()
    out = torch.zeros(2, dtype=torch.int64, device=kept_root.device)
    if N:
        grid, block = flat_tiles(N)
        launch(_slot_totals_kernel, grid, kept_root, stats, out, N, NSTAT=NSTAT, ST_SPARE=ST_SPARE, BLOCK=block)
    return out

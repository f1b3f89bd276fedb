"""Exact connected-components labelling of value maps on the GPU: union-find over horizontal runs,
with per-region statistics reduced per run (``bestie::label_regions``).

Pixels connect to their 8-neighbours (or 4-neighbours) holding the same non-zero value: class maps
(the semantic components of docs/method.md §5-§6, 8-connected) and maps of component ids under a
mask (the center-clustering regions, 4-connected). The partition equals OpenCV's labelling of each
value's mask (``tests/test_triton_labelling.py``).

Design (after the GPU union-find literature: Playne & Hawick 2018, "A new algorithm for parallel
connected-component labelling on GPUs"; the block-based BUF / BKE of Allegretti et al. 2019): few
atomics, each on a tree root, never one per pixel into a few addresses.

1. ``_init_kernel`` (one program per tile of rows): every pixel points to the first pixel of its
   horizontal run of equal values (found with an in-row doubling max-scan); each run start is a
   root. The statistics rows of every pixel are initialised here too (no separate fill).
2. ``_merge_kernel``: each pixel checks its neighbours in the row above; a pair of touching runs
   is joined once, at a pixel where the pixel or its neighbour starts a run (every touching pair of
   runs has such a pixel). Union (Playne-Hawick): find both roots, then ``atomic_min`` of the
   larger root's pointer to the smaller root; it succeeded when the old pointer was the root
   itself, else the walk goes on from the old pointer. Finds halve the path they walk (plain stores
   of grandparents into non-roots: a valid ancestor, whatever the interleaving).
3. ``_flatten_kernel``: every pixel's root (the smallest flat index of its region: its first pixel
   in raster order) is written back, and each run adds its pixel count, coordinate sums and extent
   into its root's statistics row with one atomic per field (``atomic_min`` / ``atomic_max`` for
   the extent). With ``ORIGIN``, the per-(image, value) minimum row / column (the bounding-box
   origin of each class, which fixes OpenCV's component order) is kept with an atomic only where
   a run improves on what is already there.

Statistics row of a root ``r`` (``int64``, ``NSTAT`` columns; other rows are unused):
``[area, sum y, sum x, max y, min x, max x, min x of the row below the first, spare]`` (px; the
spare column is the peak-candidate count of ``component_pass``). All loads of the pointer array in
the merge are volatile (no stale L1 copies).
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .launch import launch, row_tiles
from .scans import any_lane, run_start

__all__ = ["NSTAT", "ST_AREA", "ST_SY", "ST_SX", "ST_YMAX", "ST_XMIN", "ST_XMAX", "ST_X2MIN", "ST_SPARE",
           "BIG32", "label_regions"]

NSTAT = 8
ST_AREA, ST_SY, ST_SX, ST_YMAX, ST_XMIN, ST_XMAX, ST_X2MIN, ST_SPARE = range(NSTAT)
BIG32 = (1 << 31) - 1  # "unset" of the min columns and of the class origins


@triton.jit
def _find(L, x, act):
    """Root of each active lane's node, halving the walked path."""
    r = x
    p = tl.load(L + r, mask=act, other=0, volatile=True)
    go = act & (p != r)
    while any_lane(go):
        gp = tl.load(L + p, mask=go, other=0, volatile=True)
        tl.store(L + r, gp, mask=go & (gp != p))
        r = tl.where(go, gp, r)
        p = tl.load(L + r, mask=go, other=0, volatile=True)
        go = go & (p != r)
    return r


@triton.jit
def _union(L, a, b, act):
    """Join the trees of ``a`` and ``b`` for the active lanes (Playne-Hawick)."""
    go = act
    while any_lane(go):
        a = _find(L, a, go)
        b = _find(L, b, go)
        go = go & (a != b)
        hi = tl.maximum(a, b)
        lo = tl.minimum(a, b)
        old = tl.atomic_min(L + hi, lo, mask=go)
        go = go & (old != hi)
        a = tl.where(go, lo, a)
        b = tl.where(go, old, b)


@triton.jit
def _tile(NR, W, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """Rows ``row`` (ROWS, 1), columns ``x`` (ROWS, BLOCK), in-image mask and flat index."""
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    # full (ROWS, BLOCK) tensors, not broadcast views: Triton's interpreter hands raw buffers to
    # its atomics, which misread a broadcast (stride-0) value
    x = tl.arange(0, BLOCK)[None, :] + tl.zeros([ROWS, BLOCK], dtype=tl.int32)
    m = (x < W) & (row < NR)
    return row, x, m, row * W + x


@triton.jit(do_not_specialize=["NR", "W"])
def _init_kernel(V, L, S, NR, W, NSTAT: tl.constexpr, BIG: tl.constexpr, ROWS: tl.constexpr,
                 BLOCK: tl.constexpr, LOG: tl.constexpr):
    row, x, m, i = _tile(NR, W, ROWS, BLOCK)
    v = tl.load(V + i, mask=m, other=0)
    vl = tl.load(V + i - 1, mask=m & (x > 0), other=0)
    s = run_start(v, vl, x, 1, LOG)
    tl.store(L + i, tl.where(v != 0, row * W + s, -1), mask=m)
    so = i.to(tl.int64) * NSTAT
    zero = tl.zeros([ROWS, BLOCK], dtype=tl.int64)
    big = zero + BIG
    tl.store(S + so, zero, mask=m)
    tl.store(S + so + 1, zero, mask=m)
    tl.store(S + so + 2, zero, mask=m)
    tl.store(S + so + 3, zero - 1, mask=m)
    tl.store(S + so + 4, big, mask=m)
    tl.store(S + so + 5, zero - 1, mask=m)
    tl.store(S + so + 6, big, mask=m)
    tl.store(S + so + 7, zero, mask=m)


@triton.jit(do_not_specialize=["NR", "H", "W"])
def _merge_kernel(V, L, NR, H, W, CONN: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    row, x, m, i = _tile(NR, W, ROWS, BLOCK)
    m = m & ((row % H) > 0)
    v = tl.load(V + i, mask=m, other=0)
    vl = tl.load(V + i - 1, mask=m & (x > 0), other=0)
    starts = (x == 0) | (vl != v)
    for k in tl.static_range(3):
        if CONN == 8 or k == 1:
            xn = x + (k - 1)
            okn = m & (xn >= 0) & (xn < W) & (v != 0)
            n = i - W + (k - 1)
            vn = tl.load(V + n, mask=okn, other=0)
            vnl = tl.load(V + n - 1, mask=okn & (xn > 0), other=0)
            n_starts = (xn == 0) | (vnl != vn)
            _union(L, i, n, okn & (vn == v) & (starts | n_starts))


@triton.jit(do_not_specialize=["NR", "H", "W"])
def _flatten_kernel(V, L, S, ORG, NR, H, W, NSTAT: tl.constexpr, ORIGIN: tl.constexpr, ROWS: tl.constexpr,
                    BLOCK: tl.constexpr, LOG: tl.constexpr):
    row, x, m, i = _tile(NR, W, ROWS, BLOCK)
    v = tl.load(V + i, mask=m, other=0)
    fg = m & (v != 0)
    r = _find(L, i, fg)
    tl.store(L + i, r, mask=fg)
    vl = tl.load(V + i - 1, mask=m & (x > 0), other=0)
    vr = tl.load(V + i + 1, mask=m & (x < W - 1), other=0)
    s = run_start(v, vl, x, 1, LOG)
    end = fg & ((x == W - 1) | (vr != v))
    y = row % H + 0 * x
    n = (x - s + 1).to(tl.int64)
    y64 = y.to(tl.int64)
    so = r.to(tl.int64) * NSTAT
    tl.atomic_add(S + so, n, mask=end)
    tl.atomic_add(S + so + 1, n * y64, mask=end)
    tl.atomic_add(S + so + 2, (s + x).to(tl.int64) * n // 2, mask=end)
    tl.atomic_max(S + so + 3, y64, mask=end)
    tl.atomic_min(S + so + 4, s.to(tl.int64), mask=end)
    tl.atomic_max(S + so + 5, x.to(tl.int64), mask=end)
    tl.atomic_min(S + so + 6, s.to(tl.int64), mask=end & ((r // W) % H + 1 == y))
    if ORIGIN:
        b = row // H
        oo = (b * 256 + v) * 2
        cy = tl.load(ORG + oo, mask=end, other=0, volatile=True)
        tl.atomic_min(ORG + oo, y, mask=end & (y < cy))
        cx = tl.load(ORG + oo + 1, mask=end, other=0, volatile=True)
        tl.atomic_min(ORG + oo + 1, s, mask=end & (s < cx))


def _check_values(values):
    if values.dim() != 3 or values.dtype != torch.int32 or not values.is_contiguous():
        raise ValueError(f"values must be a contiguous (B, H, W) int32 tensor, got {values.dtype} "
                         f"{tuple(values.shape)}")
    if values.numel() >= (1 << 28):
        raise ValueError(f"at most 2**28 pixels per labelling call, got {values.numel()}")


@triton_op("bestie::label_regions", mutates_args={})
def label_regions(values: torch.Tensor, connectivity: int, origin: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
    """Regions of equal non-zero values of ``values`` and their statistics.

    Args:
        values: ``(B, H, W)`` int32, 0 = background; images are labelled independently.
        connectivity: 8 or 4.
        origin: also return the bounding-box origin of every (image, value) with value < 256.

    Returns:
        ``root`` ``(B, H, W)`` int32: the flat index ``b*H*W + y*W + x`` of the first pixel (raster
        order) of each pixel's region, -1 on background; ``stats`` ``(B*H*W, NSTAT)`` int64, the
        statistics row of each root (module docstring; only root rows are meaningful);
        ``origin`` ``(B*256, 2)`` int32 minimum row / column of each (image, value) (``BIG32`` where
        absent; ``(0, 2)`` when not asked for).
    """
    _check_values(values)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    B, H, W = values.shape
    N = values.numel()
    root = torch.empty_like(values)
    stats = torch.empty((N, NSTAT), dtype=torch.int64, device=values.device)
    org = torch.full((B * 256 if origin else 0, 2), BIG32, dtype=torch.int32, device=values.device)
    if N == 0:
        return root, stats, org
    grid, rows, block, log = row_tiles(B * H, W)
    launch(_init_kernel, grid, values, root, stats, B * H, W, NSTAT=NSTAT, BIG=BIG32, ROWS=rows, BLOCK=block,
           LOG=log)
    launch(_merge_kernel, grid, values, root, B * H, H, W, CONN=connectivity, ROWS=rows, BLOCK=block)
    launch(_flatten_kernel, grid, values, root, stats, org if origin else stats, B * H, H, W, NSTAT=NSTAT,
           ORIGIN=bool(origin), ROWS=rows, BLOCK=block, LOG=log)
    return root, stats, org

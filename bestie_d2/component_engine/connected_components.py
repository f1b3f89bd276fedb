"""Exact connected-components labelling of binary masks: OpenCV (host), Triton (CUDA) or torch.

The component engine labels class maps with 8-connectivity (semantic components) and offset
magnitude masks with 4-connectivity (center clustering), docs/method.md §5-§6. OpenCV only labels
host arrays; the torch labelling below runs on whatever device the masks are on, so a GPU caller
needs no host round trip per image or per component.

Public API:

* ``connected_components(masks, connectivity=8, backend="auto")`` -> ``Components``: picks the
  implementation per device (OpenCV for CPU tensors, Triton for CUDA tensors, torch otherwise;
  see ``backends.pick_backend``).
* ``connected_components_opencv(masks, connectivity=8)``, ``connected_components_triton(masks,
  connectivity=8)`` (the union-find kernels of ``kernels.union_find``) and
  ``connected_components_torch(masks, connectivity=8, first_check=8, check_every=4)``: the three
  implementations.
* ``value_region_roots(values, connectivity, ...)``: the torch labelling of integer maps (pixels
  connect to neighbours of the same non-zero value), as region roots; optionally sync-free.
* ``label_components(mask, connectivity)``: the package's one OpenCV call (with stats).

All return the same partition as ``cv2.connectedComponents(mask, connectivity=...)`` on every
image (same pixel sets, hence the same areas); component *ids* may differ by a permutation.

Output convention (every backend): ``labels`` ``(N, H, W)`` int64 on the masks' device, 0 =
background, the components of image ``i`` numbered ``1..counts[i]`` *per image* (as OpenCV does);
``counts`` ``(N,)`` int64 on the same device. The torch and Triton backends number the components
of an image in the raster order (row-major, ``y * W + x``) of their first pixel; OpenCV's numbering
is its own. The Triton backend needs no host synchronisation at all.

The torch algorithm (label equivalence with hooking and pointer jumping)
------------------------------------------------------------------------
The masks are zero-padded by one pixel, ``(N, H+2, W+2)``, and flattened, with one extra slot at
the end whose index ``none`` labels every background entry. Every foreground entry ``i`` holds a
pointer ``L[i] <= i`` to a pixel of its own component (initially itself). One *round*:

1. ``m[i]`` = min of ``L`` over ``i``'s neighbourhood (itself included; 3x3 for 8-connectivity,
   the cross for 4-connectivity). In the padded flat layout every neighbour is ``i +- 1`` or
   ``i +- (W+2)`` (+- 1), so the min is a few ``torch.minimum`` of contiguous 1-D slices, and the
   background contributes ``none``, which never wins.
2. Hooking: ``L[L[i]] = min(L[L[i]], m[i])`` for every foreground ``i`` (``scatter_reduce`` with
   ``amin``: exact and order-independent), then ``L[i] = min(L[i], m[i])``. The root a pixel points
   to learns about the smaller label next to the pixel, so a whole tree moves at once instead of
   one pixel per round as in plain min-propagation.
3. Pointer jumping, twice: ``L = L[L]`` (every jump halves the pointer path lengths).

Each step keeps ``L[i] <= i`` with ``L[i]`` in ``i``'s component, and a round that changes nothing
is a fixed point where neighbouring foreground pixels share one label, which must then be the
component's minimum pixel index (that pixel points to itself). The loop checks for an unchanged
round after ``first_check`` rounds and then every ``check_every`` rounds; a check is the only host
synchronisation (rounds after convergence are no-ops), so a call synchronises
``1 + ceil((rounds - first_check) / check_every)`` times, independent of the number of components
and images. The labels are then compacted without a sort: a component's root is the pixel with
``L[i] == i``, and its id is the running count (``cumsum``) of roots of its image in raster order.

Rounds until the first unchanged round, measured on 416x416 masks (both connectivities): 4-7 for
random noise of density 0.4-0.6, 5 for a full image, 8 for a random maze (one spanning-tree
component), 8-9 for a 1-pixel-wide spiral of 86,944 pixels on one path (plain min-propagation would
need one round per pixel of the path). No bound is proven; ``Components.rounds`` reports the rounds
of each call. With the defaults the benchmark inputs take 8 rounds (one sync), the spiral 12 (two).

Speed: on the CPU OpenCV is 15-130x faster (2 busy cores,
``benchmarks/results/connected_components_cpu.txt``, ``benchmarks/bench_connected_components.py``),
so ``backend="auto"`` uses it for CPU tensors and the torch labelling for any other device (no host
transfer of the masks).
"""
from typing import NamedTuple

import cv2
import numpy as np
import torch

from .backends import pick_backend
from .kernels import AVAILABLE

if AVAILABLE:
    from .kernels.union_find import label_regions

__all__ = [
    "Components",
    "connected_components",
    "connected_components_torch",
    "connected_components_opencv",
    "connected_components_triton",
    "label_components",
    "value_region_roots",
]


class Components(NamedTuple):
    """Result of a labelling.

    ``labels``: ``(N, H, W)`` int64, 0 = background, ``1..counts[i]`` in image ``i``.
    ``counts``: ``(N,)`` int64, the number of components of each image (background excluded).
    ``rounds``: rounds of the torch labelling (host int; 0 for OpenCV).
    """

    labels: torch.Tensor
    counts: torch.Tensor
    rounds: int


def _check_inputs(masks, connectivity):
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    return masks.bool()


def _neighbour_min(L, connectivity, stride):
    """Min of ``L`` over each pixel's 3x3 (8) or cross (4) neighbourhood, itself included.

    ``L`` is the flat padded layout (``_padded_layout``): the neighbours of an image pixel ``j`` are
    ``j +- 1`` and ``j +- stride`` (+- 1), all inside the array, and each shift is a contiguous 1-D
    slice. Entries of the border and the last slot come out partial; callers never use them.
    """
    n, S = L.numel(), stride
    out = L.clone()
    h = torch.minimum(torch.minimum(L[:-2], L[1:-1]), L[2:])  # h[k]: min over k, k+1, k+2 (centre k+1)
    if connectivity == 8:  # out[j] = min(h[j-1-S], h[j-1], h[j-1+S]) for S < j < n-S-1
        torch.minimum(torch.minimum(h[: n - 2 * S - 2], h[S : n - S - 2]), h[2 * S :], out=out[S + 1 : n - S - 1])
    else:  # out[j] = min(h[j-1], L[j-S], L[j+S]) for S <= j < n-S
        torch.minimum(torch.minimum(h[S - 1 : n - S - 1], L[: n - 2 * S]), L[2 * S :], out=out[S : n - S])
    return out


def _round(L, bg_fill, connectivity, stride, neighbour_min=_neighbour_min):
    """One round (module docstring): neighbour min, hooking, two pointer jumps; ``L`` flat int64.

    ``bg_fill`` is ``none`` on background entries and 0 elsewhere: ``maximum(m, bg_fill)`` keeps the
    background (and the ``none`` slot ``L[none] == none``) out of every hook and every min.
    """
    m = torch.maximum(neighbour_min(L, connectivity, stride), bg_fill)
    L = L.scatter_reduce(0, L, m, reduce="amin")
    L = torch.minimum(L, m)
    L = L.index_select(0, L)
    return L.index_select(0, L)


def _padded_layout(masks):
    """``masks`` (N, H, W) bool -> flat ``fg`` of the (N, H+2, W+2) zero-padded masks plus one slot.

    Returns ``(fg, none)``: ``fg`` ``(none + 1,)`` bool, False on the 1-pixel border of every image
    and on the last entry, whose index ``none`` = N*(H+2)*(W+2) is the label of every background
    entry (larger than every pixel index; ``L[none] == none`` always).
    """
    fg = torch.nn.functional.pad(masks, (1, 1, 1, 1)).reshape(-1)
    return torch.cat([fg, fg.new_zeros(1)]), fg.numel()


def _equal_neighbours(V, connectivity, stride):
    """Static edges of a value map in the flat padded layout: ``[(d, eq)]`` for every positive
    neighbour shift ``d``, ``eq[j]`` = pixels ``j`` and ``j + d`` hold the same non-zero value."""
    shifts = (1, stride) if connectivity == 4 else (1, stride - 1, stride, stride + 1)
    return [(d, (V[:-d] == V[d:]) & (V[:-d] != 0)) for d in shifts]


def _valued_neighbour_min(edges, none):
    """The neighbour min of ``_round`` for value maps: only neighbours of the same value count."""

    def neighbour_min(L, connectivity, stride):
        out = L.clone()
        for d, eq in edges:
            torch.minimum(out[:-d], torch.where(eq, L[d:], none), out=out[:-d])
            torch.minimum(out[d:], torch.where(eq, L[:-d], none), out=out[d:])
        return out

    return neighbour_min


def _run_rounds(L, bg_fill, connectivity, stride, first_check, check_every, neighbour_min):
    """Rounds until one changes nothing (checked after ``first_check``, then every
    ``check_every`` rounds; each check is one host sync). Returns ``(L, rounds)``."""
    rounds, todo = 0, first_check
    while True:
        for _ in range(todo):
            prev = L
            L = _round(L, bg_fill, connectivity, stride, neighbour_min)
            rounds += 1
        if torch.equal(L, prev):  # the only host sync
            return L, rounds
        todo = check_every


def _check_schedule(first_check, check_every):
    first_check, check_every = int(first_check), int(check_every)
    if first_check < 1 or check_every < 1:
        raise ValueError(f"first_check and check_every must be >= 1, got {first_check}, {check_every}")
    return first_check, check_every


def connected_components_torch(masks, connectivity=8, first_check=8, check_every=4):
    """Label the connected components of ``masks`` with torch ops on the masks' device.

    Args:
        masks: ``(N, H, W)`` bool (or 0/1) tensor, any device.
        connectivity: 8 (3x3 neighbourhood) or 4 (edge neighbours only).
        first_check: rounds before the first convergence check (>= 1).
        check_every: rounds between later checks (>= 1). Each check is one host sync; the result
            does not depend on these two, only the number of rounds run and of syncs.

    Returns:
        ``Components(labels, counts, rounds)``, ids in the raster order of each component's first
        pixel, per image (module docstring).
    """
    masks = _check_inputs(masks, connectivity)
    first_check, check_every = _check_schedule(first_check, check_every)
    N, H, W = masks.shape
    device = masks.device
    if N * H * W == 0:
        zeros = torch.zeros((N, H, W), dtype=torch.int64, device=device)
        return Components(zeros, torch.zeros(N, dtype=torch.int64, device=device), 0)
    fg, none = _padded_layout(masks)
    idx = torch.arange(none + 1, dtype=torch.int64, device=device)
    bg_fill = (~fg).to(torch.int64) * none
    L = torch.maximum(idx, bg_fill)  # foreground: itself; background: none
    L, rounds = _run_rounds(L, bg_fill, connectivity, W + 2, first_check, check_every, _neighbour_min)
    root = (L == idx) & fg  # (none + 1,): the minimum pixel of each component
    rank = torch.cumsum(root[:-1].view(N, -1), dim=1)  # roots so far in raster order, per image
    counts = rank[:, -1].clone()
    rank = torch.cat([rank.reshape(-1), rank.new_zeros(1)])  # rank[none] = 0: background
    labels = rank.index_select(0, L)[:-1].view(N, H + 2, W + 2)[:, 1:-1, 1:-1]
    return Components(labels.contiguous(), counts, rounds)


def value_region_roots(values, connectivity=8, first_check=8, check_every=4, sync=True):
    """Regions of equal non-zero values: pixels connect to neighbours holding the same value.

    Args:
        values: ``(N, H, W)`` integer tensor, 0 = background (e.g. class maps, or component ids
            where a mask holds); any device, no host transfer.
        connectivity, first_check, check_every: as ``connected_components_torch``.
        sync: False runs exactly ``first_check`` rounds without any host sync and returns, instead
            of the round count, a device bool ``converged`` (the last round changed nothing, so
            the result is exact); the caller reads it with its other results and reruns with
            more rounds when it is False.

    Returns:
        ``(root, rounds or converged)``: ``root`` ``(N, H, W)`` int64, for every non-zero pixel the
        flat index ``n*H*W + y*W + x`` of its region's first pixel in raster order (``-1`` on
        background), so regions are told apart, ordered and reduced over (``scatter``) without
        compacting ids. Same partition per value as ``cv2.connectedComponents`` of ``values == v``.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    first_check, check_every = _check_schedule(first_check, check_every)
    N, H, W = values.shape
    device = values.device
    if N * H * W == 0:
        done = 0 if sync else torch.ones((), dtype=torch.bool, device=device)
        return torch.full((N, H, W), -1, dtype=torch.int64, device=device), done
    V = torch.nn.functional.pad(values.to(torch.int64), (1, 1, 1, 1)).reshape(-1)
    V = torch.cat([V, V.new_zeros(1)])
    none = V.numel() - 1
    fg = V != 0
    idx = torch.arange(none + 1, dtype=torch.int64, device=device)
    bg_fill = (~fg).to(torch.int64) * none
    L = torch.maximum(idx, bg_fill)
    nmin = _valued_neighbour_min(_equal_neighbours(V, connectivity, W + 2), none)
    if sync:
        L, rounds = _run_rounds(L, bg_fill, connectivity, W + 2, first_check, check_every, nmin)
    else:
        for _ in range(first_check):
            prev, L = L, _round(L, bg_fill, connectivity, W + 2, nmin)
        rounds = ~(L != prev).any()  # converged, on the device
    # padded flat index -> image flat index (background stays -1)
    L = L[:-1].view(N, H + 2, W + 2)[:, 1:-1, 1:-1]
    n_, yx = L // ((H + 2) * (W + 2)), L % ((H + 2) * (W + 2))
    root = n_ * (H * W) + (yx // (W + 2) - 1) * W + (yx % (W + 2) - 1)
    return torch.where(L == none, torch.full_like(root, -1), root).contiguous(), rounds


def label_components(mask, connectivity):
    """The one OpenCV labelling call of the package (host arrays).

    Args:
        mask: ``(h, w)`` uint8 numpy array (non-zero = foreground), C-contiguous.
        connectivity: 8 (semantic components) or 4 (center-clustering regions).

    Returns:
        ``(n, labels, stats, centroids)`` as ``cv2.connectedComponentsWithStats`` with int32
        labels: ``n`` labels including the background 0, ``labels`` ``(h, w)`` int32, ``stats``
        ``(n, 5)`` (``cv2.CC_STAT_*`` columns, px), ``centroids`` ``(n, 2)`` float64 ``(x, y)``.
        8-connected ids follow the raster order of the 2x2 blocks (from the array origin) holding
        each component's first pixels, 4-connected ids the raster order of the first pixel
        (checked in ``tests/test_connected_components.py``).
    """
    return cv2.connectedComponentsWithStats(mask, connectivity=connectivity, ltype=cv2.CV_32S)


def connected_components_opencv(masks, connectivity=8):
    """Label ``masks`` with ``label_components`` image by image (on the host).

    Same arguments and output convention as ``connected_components_torch`` (ids in OpenCV's order,
    ``rounds`` = 0). A non-CPU tensor is copied to the host and the labels back (host syncs).
    """
    masks = _check_inputs(masks, connectivity)
    N, H, W = masks.shape
    arr = np.ascontiguousarray(masks.cpu().numpy()).view(np.uint8)
    labels = np.zeros((N, H, W), dtype=np.int32)
    counts = np.zeros(N, dtype=np.int64)
    if H and W:
        for i in range(N):
            n, labels[i], _, _ = label_components(arr[i], connectivity)
            counts[i] = n - 1
    return Components(
        torch.from_numpy(labels).to(torch.int64).to(masks.device), torch.from_numpy(counts).to(masks.device), 0
    )


def connected_components_triton(masks, connectivity=8):
    """Label ``masks`` with the union-find kernels (``kernels.union_find.label_regions``), no host sync.

    Same arguments and output convention as ``connected_components_torch`` (ids in the raster order
    of each component's first pixel, per image; ``rounds`` = 0). CUDA tensors (or CPU tensors under
    Triton's interpreter).
    """
    masks = _check_inputs(masks, connectivity)
    N, H, W = masks.shape
    if N * H * W == 0:
        zeros = torch.zeros((N, H, W), dtype=torch.int64, device=masks.device)
        return Components(zeros, torch.zeros(N, dtype=torch.int64, device=masks.device), 0)
    root = label_regions(masks.to(torch.int32).contiguous(), connectivity, False)[0].view(N, H * W)
    own = torch.arange(N * H * W, device=masks.device).view(N, H * W)
    rank = torch.cumsum(root == own, dim=1)  # roots so far in raster order, per image
    labels = torch.where(root >= 0, rank.gather(1, (root - own[:, :1]).clamp(min=0)), 0)
    return Components(labels.view(N, H, W), rank[:, -1].clone(), 0)


def connected_components(masks, connectivity=8, backend="auto"):
    """Connected components of ``masks`` ``(N, H, W)`` bool with the backend ``pick_backend`` chooses.

    Returns ``Components(labels (N, H, W) int64, counts (N,) int64, rounds)`` on the masks' device;
    the partition equals OpenCV's for every backend, the ids may differ by a permutation.
    """
    which = pick_backend(masks.device, backend)
    if which == "opencv":
        return connected_components_opencv(masks, connectivity)
    if which == "triton":
        return connected_components_triton(masks, connectivity)
    return connected_components_torch(masks, connectivity)

"""Gaussian center maps (docs/method.md §2): the one paster of the package, used by pseudo-label
generation (``bestie_d2.data.target_generator``, numpy maps through ``torch.from_numpy``) and by
self-refinement (§5).

The kernel: a ``(6σ+3) x (6σ+3)`` patch, ``g = exp(-((x-x0)² + (y-y0)²) / (2σ²))`` with ``x0 = y0 = 3σ+1``
(peak 1 for integer σ). A patch is pasted with index ``(3σ+1, 3σ+1)`` on the integer point, clipped at
the borders and max-merged into the map; points outside the map are skipped.

``paste_gaussians_`` pastes any number of points into any number of maps with one
``scatter_reduce(amax)``: no Python loop over points and no host-device synchronisation, so the
same code runs on CPU and GPU. ``paste_gaussians_numpy`` is its CPU sibling for the data loader's
numpy maps: the same kernel (``gaussian_kernel``) and clipping, a loop over the few points of an image,
about 7x faster than going through torch for 3 points on a 416² map (tests check both agree exactly).
"""
import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["gaussian_kernel", "gaussian_patch", "patch_origin", "paste_gaussians_", "paste_gaussians_numpy"]


def _check_sigma(sigma):
    sigma = float(sigma)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"Gaussian sigma must be a finite number > 0, got {sigma}")
    return sigma


def gaussian_kernel(sigma, *, device=None, dtype=torch.float32):
    """The ``(6σ+3, 6σ+3)`` Gaussian patch with its peak at index ``(3σ+1, 3σ+1)``."""
    sigma = _check_sigma(sigma)
    size = int(6 * sigma + 3)
    c0 = 3 * sigma + 1
    ax = torch.arange(size, dtype=torch.float64, device=device) - c0
    g = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2.0 * sigma * sigma))
    return g.to(dtype)


def paste_gaussians_(maps, channels, points_yx, sigma):
    """Max-merge a Gaussian centred on each integer point into ``maps`` (in place).

    Args:
        maps: ``(N, H, W)`` float tensor (for a ``(B, C, H, W)`` map pass ``maps.view(B * C, H, W)``;
            it must be contiguous).
        channels: ``(K,)`` long, the map index ``0..N-1`` of each point.
        points_yx: ``(K, 2)`` long ``(y, x)`` pixel indices.
        sigma: Gaussian sigma in pixels.

    Points outside ``0 <= y < H, 0 <= x < W`` (or with a channel outside ``0..N-1``) are skipped.
    Returns ``maps``.
    """
    sigma = _check_sigma(sigma)
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    if not maps.is_contiguous():
        raise ValueError("maps must be contiguous (it is modified in place through a flat view)")
    N, H, W = maps.shape
    channels = torch.as_tensor(channels, device=maps.device).reshape(-1).long()
    pts = torch.as_tensor(points_yx, device=maps.device).reshape(-1, 2).long()
    if pts.shape[0] == 0:
        return maps
    g, ar = gaussian_patch(sigma, maps.device, maps.dtype)  # (S, S) patch, (1, S) arange
    y, x = pts.t()
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W) & (channels >= 0) & (channels < N)
    yy, xx = (patch_origin(pts, sigma).t().unsqueeze(2) + ar).unbind(0)  # (K, S) each
    vy, vx = (yy >= 0) & (yy < H), (xx >= 0) & (xx < W)
    valid = (ok[:, None] & vy).unsqueeze(2) & vx.unsqueeze(1)
    rows = (channels.clamp(0, N - 1)[:, None] * H + yy.clamp(0, H - 1)) * W
    flat = rows.unsqueeze(2) + xx.clamp(0, W - 1).unsqueeze(1)  # (K, S, S)
    # invalid entries write -inf into an arbitrary (clamped) position: a no-op for amax
    vals = torch.where(valid, g, float("-inf"))
    maps.view(-1).scatter_reduce_(0, flat.view(-1), vals.view(-1), reduce="amax", include_self=True)
    return maps


def patch_origin(points_yx, sigma):
    """``(K, 2)`` long top-left ``(y, x)`` of the patch of each integer point: ``round(p - c0)`` with
    ``c0 = 3σ+1`` (round half to even, as Python's round; exact integer arithmetic when ``c0`` is
    an integer)."""
    c0 = 3 * _check_sigma(sigma) + 1
    if float(c0).is_integer():
        return points_yx - int(c0)
    return torch.round(points_yx.double() - c0).long()


@lru_cache(maxsize=32)
def gaussian_patch(sigma, device, dtype):
    """``gaussian_kernel(sigma)`` and the column offsets ``arange(S)`` ``(1, S)`` on ``device``,
    cached per (sigma, device, dtype): no op per call."""
    g = gaussian_kernel(sigma, device=device, dtype=dtype)
    return g, torch.arange(g.shape[0], device=device)[None]


@lru_cache(maxsize=16)
def _numpy_kernel(sigma):
    g = gaussian_kernel(sigma).numpy()
    g.setflags(write=False)
    return g


def paste_gaussians_numpy(center_map, points_yx, sigma):
    """:func:`paste_gaussians_` for one numpy map: max-merge the Gaussian at each integer point.

    Args:
        center_map: ``(H, W)`` float32 numpy array, modified in place.
        points_yx: ``(K, 2)`` integer ``(y, x)`` pixel indices; points outside the map are skipped.
        sigma: Gaussian sigma in pixels.

    Returns ``center_map``.
    """
    sigma = _check_sigma(sigma)
    pts = np.asarray(points_yx).reshape(-1, 2).astype(np.int64)
    if pts.shape[0] == 0:
        return center_map
    g = _numpy_kernel(sigma)
    S = g.shape[0]
    c0 = 3 * sigma + 1
    H, W = center_map.shape
    for y, x in pts:
        if not (0 <= y < H and 0 <= x < W):
            continue
        y0, x0 = int(round(y - c0)), int(round(x - c0))
        ya, yb, xa, xb = max(0, y0), min(H, y0 + S), max(0, x0), min(W, x0 + S)
        dst = center_map[ya:yb, xa:xb]
        np.maximum(dst, g[ya - y0 : yb - y0, xa - x0 : xb - x0], out=dst)
    return center_map

"""Small tensor ops of the component engine: index helpers, the one host read, exact sliding max.

``take`` / ``sq_dist`` / ``to_host`` are used by every stage; ``sliding_max_pool`` and
``check_nms_kernel`` by the crop NMS (``peaks``); ``channel_argmax`` by decoding.
"""
import torch

__all__ = ["BIG", "check_nms_kernel", "sliding_max_pool", "channel_argmax", "to_host", "take", "sq_dist"]

BIG = 1 << 62  # sort key / index larger than any real one


def check_nms_kernel(k):
    """``int(k)``; raises unless it is a positive odd integer (an NMS window in pixels)."""
    k = int(k)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd integer, got {k}")
    return k


def _sliding_max_1d(x, k, dim):
    """Centred sliding max of odd width ``k`` along ``dim`` (-inf padding), same length."""
    r = k // 2
    if r == 0:
        return x
    L = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = r
    pad = x.new_full(pad_shape, float("-inf"))
    w = torch.cat([pad, x, pad], dim)
    s = 1
    # w[i] = max(x[i .. i+s-1]); doubling until s is the largest power of two <= k
    while 2 * s <= k:
        n = w.shape[dim] - s
        w = torch.maximum(w.narrow(dim, 0, n), w.narrow(dim, s, n))
        s *= 2
    # a window of k = union of two overlapping windows of s (max is idempotent)
    return torch.maximum(w.narrow(dim, 0, L), w.narrow(dim, k - s, L))


def sliding_max_pool(x, k):
    """``F.max_pool2d(x, k, stride=1, padding=k // 2)`` over the last two dims, exactly, for odd ``k``.

    ``x``: ``(..., H, W)`` float; returns the same shape. Separable (max is separable over
    rectangles) and log-step: about ``2 log2(k)`` elementwise maxima per pixel instead of ``k²``.
    """
    k = check_nms_kernel(k)
    return _sliding_max_1d(_sliding_max_1d(x, k, -1), k, -2)


def channel_argmax(x):
    """``x.argmax(0)`` (first maximum) of ``(K, H, W)`` as ``(H, W)`` uint8 (K <= 255; long above 256).

    On the CPU, torch's argmax over the outer dimension is ~100x slower than a max reduction, so
    the first index reaching the maximum is found with an ``amax`` and one weighted ``amax``.
    """
    K = x.shape[0]
    if x.is_cuda or K > 255:
        return x.argmax(0).to(torch.uint8 if K <= 256 else torch.long)
    best = x.amax(0, keepdim=True)
    w = torch.arange(K, 0, -1, dtype=torch.uint8, device=x.device).view(K, 1, 1)  # K .. 1
    return (K - ((x == best) * w).amax(0)).to(torch.uint8)


def to_host(t):
    """``t`` as a host numpy array: the engine's only way to read device values (one device -> host
    copy, a host synchronisation on CUDA; ``tests/test_refine_syncs.py`` counts the calls)."""
    return t.cpu().numpy()


def take(src, idx):
    """``src.reshape(-1)[idx]`` with ``idx``'s shape, via ``index_select`` (several times faster
    than advanced indexing on the CPU; one op for 1-D tensors)."""
    flat = src if src.dim() == 1 else src.reshape(-1)
    if idx.dim() == 1:
        return flat.index_select(0, idx)
    return flat.index_select(0, idx.reshape(-1)).view(idx.shape)


def sq_dist(cy, cx, vy, vx):
    """Squared distance (px²) between centers and votes; one formula everywhere, for identical ties."""
    return (cy - vy) ** 2 + (cx - vx) ** 2

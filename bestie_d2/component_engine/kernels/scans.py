"""In-register scans, tests and index arithmetic shared by the engine's Triton kernels (``@triton.jit`` helpers).

Triton's ``associative_scan`` with a custom combine runs one Python call per element under the
interpreter, so the scans here are Hillis-Steele doublings with ``tl.gather`` (``log2(n)`` steps,
the same on a GPU and in the interpreter).
"""
import triton
import triton.language as tl

__all__ = ["any_lane", "cummax_along", "pixel_position", "run_start", "segmented_sum_max"]


@triton.jit
def pixel_position(f, H, W):
    """A flat pixel index ``f`` of a ``[B, H, W]`` map as ``(b, rem, y, x)``: image, index within
    the image (``y * W + x``), row and column."""
    HW = H * W
    rem = f % HW
    return f // HW, rem, rem // W, rem % W


@triton.jit
def any_lane(mask):
    """Whether any lane of a 2-D mask is set (a scalar, for loop conditions)."""
    return tl.max(tl.max(mask.to(tl.int32), 1), 0) > 0


@triton.jit
def cummax_along(s, x, AXIS: tl.constexpr, LOG: tl.constexpr):
    """Inclusive running max of ``s`` along ``AXIS``; ``x`` = each lane's index along it."""
    for k in tl.static_range(LOG):
        d = 1 << k
        prev = tl.gather(s, tl.maximum(x - d, 0), AXIS)
        s = tl.where(x >= d, tl.maximum(s, prev), s)
    return s


@triton.jit
def run_start(v, v_prev, x, AXIS: tl.constexpr, LOG: tl.constexpr):
    """Index of the first lane of each lane's run of equal ``v`` along ``AXIS`` (``v_prev``: the value
    one lane before, ignored at index 0)."""
    start = (x == 0) | (v_prev != v)
    return cummax_along(tl.where(start, x, 0), x, AXIS, LOG)


@triton.jit
def segmented_sum_max(vs, hk, x, s, AXIS: tl.constexpr, LOG: tl.constexpr):
    """Inclusive running sum of ``vs`` and max of ``hk`` along ``AXIS`` inside runs starting at ``s``."""
    for k in tl.static_range(LOG):
        d = 1 << k
        j = tl.maximum(x - d, 0)
        pv = tl.gather(vs, j, AXIS)
        ph = tl.gather(hk, j, AXIS)
        ok = (x - d) >= s
        vs = tl.where(ok, vs + pv, vs)
        hk = tl.where(ok, tl.maximum(hk, ph), hk)
    return vs, hk

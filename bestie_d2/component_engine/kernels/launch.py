"""Launch helpers shared by the engine's Triton kernels: tile shapes, counted launches, the
interpreter flag.

The kernels work on tiles of ``ROWS`` image rows x ``BLOCK`` columns (``BLOCK`` = the row width
rounded up to a power of two, at most ``MAX_WIDTH``). On a GPU a tile holds about 2048 pixels; under
Triton's interpreter (CPU, tests) a tile holds up to 65536 pixels, because the interpreter's cost
is per program, not per pixel.
"""
import os

import torch
import triton
from torch.library import wrap_triton

__all__ = ["INTERPRETED", "MAX_WIDTH", "row_tiles", "flat_tiles", "launch", "launch_count"]

try:
    from triton import knobs as _knobs

    INTERPRETED = bool(_knobs.runtime.interpret)
except (ImportError, AttributeError):  # older Triton: the environment variable alone
    INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

MAX_WIDTH = 8192  # widest supported row (px)
_launches = [0]


def row_tiles(n_rows, width):
    """``(grid, ROWS, BLOCK, LOG)`` of a row-tiled launch over ``n_rows`` rows of ``width`` px
    (``LOG`` = log2(BLOCK), the steps of an in-row doubling scan)."""
    if width > MAX_WIDTH:
        raise ValueError(f"the Triton component kernels support rows up to {MAX_WIDTH} px, got {width}; "
                         "use MODEL.BESTIE.COMPONENTS_BACKEND 'torch' for wider images")
    block = triton.next_power_of_2(max(int(width), 2))
    budget = 1 << 16 if INTERPRETED else 1 << 11
    rows = min(triton.next_power_of_2(max(int(n_rows), 1)), max(1, budget // block))
    return (triton.cdiv(max(int(n_rows), 1), rows),), rows, block, block.bit_length() - 1


def flat_tiles(n):
    """``(grid, BLOCK)`` of a launch over ``n`` elements in blocks of ``BLOCK``."""
    block = 1 << 16 if INTERPRETED else 1024
    return (triton.cdiv(max(int(n), 1), block),), block


def launch(kernel, grid, *args, **meta):
    """``kernel[grid](*args, **meta)`` through ``torch.library.wrap_triton`` (so a ``triton_op``
    stays traceable), counted in ``launch_count()``. The kernels index their tensors as contiguous
    arrays: a non-contiguous tensor argument is refused (callers pass ``.contiguous()`` inputs)."""
    for a in args:
        if isinstance(a, torch.Tensor) and not a.is_contiguous():
            raise ValueError(f"{getattr(kernel, '__name__', kernel)}: a tensor argument of shape {tuple(a.shape)} "
                             "is not contiguous")
    _launches[0] += 1
    wrap_triton(kernel)[grid](*args, **meta)


def launch_count():
    """Kernel launches of the engine since import (monotone counter)."""
    return _launches[0]

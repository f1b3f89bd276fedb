"""Launch helpers shared by the engine's Triton kernels: tile shapes, counted launches, the
interpreter flag.

The row kernels work on tiles of ``ROWS`` image rows x ``BLOCK`` columns (``BLOCK`` = the row width
rounded up to a power of two, at least 128 and at most ``MAX_WIDTH``); the flat kernels on blocks
of ``BLOCK`` elements. On a GPU a tile holds 1024 pixels (``ROWS = 1024 // BLOCK``) and a flat
block 1024 elements (compile times for sm_90 of 2-6 s per kernel, measured with Triton 3.6 and 3.8): shapes depend only on the width's power of two, so a training run compiles
each kernel once or twice. Under Triton's interpreter (CPU, tests) a tile holds up to 65536 pixels,
because the interpreter's cost is per program, not per pixel; ``recording(gpu_shapes=True)``
switches it to the GPU's shapes (to compile the recorded launches for a GPU).
"""
import contextlib
import os

import torch
import triton
from torch.library import wrap_triton

__all__ = ["INTERPRETED", "MAX_WIDTH", "row_tiles", "flat_tiles", "per_program", "launch", "launch_count",
           "recording"]

try:
    from triton import knobs as _knobs

    INTERPRETED = bool(_knobs.runtime.interpret)
except (ImportError, AttributeError):  # older Triton: the environment variable alone
    INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

MAX_WIDTH = 8192  # widest supported row (px)
_launches = [0]
_recorders = []
_gpu_shapes = [not INTERPRETED]


def per_program(gpu, interpreted):
    """The work size of one program: ``gpu`` on a GPU, ``interpreted`` under the interpreter."""
    return gpu if _gpu_shapes[0] else interpreted


def row_tiles(n_rows, width):
    """``(grid, ROWS, BLOCK, LOG)`` of a row-tiled launch over ``n_rows`` rows of ``width`` px
    (``LOG`` = log2(BLOCK), the steps of an in-row doubling scan)."""
    if width > MAX_WIDTH:
        raise ValueError(f"the Triton component kernels support rows up to {MAX_WIDTH} px, got {width}; "
                         "use MODEL.BESTIE.COMPONENTS_BACKEND 'torch' for wider images")
    if _gpu_shapes[0]:
        block = max(triton.next_power_of_2(int(width)), 128)
        rows = max(1, 1024 // block)
    else:
        block = triton.next_power_of_2(max(int(width), 2))
        rows = min(triton.next_power_of_2(max(int(n_rows), 1)), max(1, (1 << 16) // block))
    return (triton.cdiv(max(int(n_rows), 1), rows),), rows, block, block.bit_length() - 1


def flat_tiles(n):
    """``(grid, BLOCK)`` of a launch over ``n`` elements in blocks of ``BLOCK``."""
    block = per_program(1024, 1 << 16)
    return (triton.cdiv(max(int(n), 1), block),), block


def launch(kernel, grid, *args, **meta):
    """``kernel[grid](*args, **meta)`` through ``torch.library.wrap_triton`` (so a ``triton_op``
    stays traceable), counted in ``launch_count()``, on the GPU of its tensors. The kernels index
    their tensors as contiguous arrays: a non-contiguous tensor argument is refused (callers pass
    ``.contiguous()`` inputs)."""
    for a in args:
        if isinstance(a, torch.Tensor) and not a.is_contiguous():
            raise ValueError(f"{getattr(kernel, '__name__', kernel)}: a tensor argument of shape {tuple(a.shape)} "
                             "is not contiguous")
    _launches[0] += 1
    for rec in _recorders:
        rec.append((kernel, grid, args, meta))
    dev = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    if dev is not None and dev.type == "cuda":  # launch on the tensors' GPU, not the current one
        with torch.cuda.device(dev):
            wrap_triton(kernel)[grid](*args, **meta)
    else:
        wrap_triton(kernel)[grid](*args, **meta)


def launch_count():
    """Kernel launches of the engine since import (monotone counter)."""
    return _launches[0]


@contextlib.contextmanager
def recording(gpu_shapes=False):
    """Within the block, every launch is appended to the yielded list as ``(kernel, grid, args,
    meta)`` (``tests/test_triton_compile.py`` compiles each recorded launch for a GPU target); with
    ``gpu_shapes`` the launches use the GPU's tile shapes even under the interpreter."""
    rec = []
    _recorders.append(rec)
    old = _gpu_shapes[0]
    _gpu_shapes[0] = old or bool(gpu_shapes)
    try:
        yield rec
    finally:
        _recorders.remove(rec)
        _gpu_shapes[0] = old

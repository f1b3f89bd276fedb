"""Which labelling backend the component engine uses for tensors on a device.

* ``"opencv"``: host labelling with OpenCV; the CPU default (15-130x faster there than the torch
  labelling, ``benchmarks/results/connected_components_cpu.txt``).
* ``"triton"``: the engine's Triton kernels (``kernels``); the default for CUDA tensors when
  Triton is installed (it ships with torch's Linux CUDA wheels). On CPU tensors it runs only under
  Triton's interpreter (``TRITON_INTERPRET=1`` set before ``bestie_d2`` is imported), which is how
  the test suite checks the kernels without a GPU.
* ``"torch"``: plain torch ops on any device; the fallback where Triton is absent.
"""
import torch

from . import kernels

__all__ = ["BACKENDS", "pick_backend", "triton_status"]

BACKENDS = ("auto", "opencv", "torch", "triton")


def triton_status(device):
    """``(usable, reason)``: whether the Triton kernels can run on tensors of ``device``, and why not."""
    dev = torch.device(device)
    if not kernels.AVAILABLE:
        return False, f"Triton is not installed ({kernels.IMPORT_ERROR})"
    if dev.type == "cuda":
        return True, ""
    if dev.type == "cpu" and kernels.INTERPRETED:
        return True, ""
    if dev.type == "cpu":
        return False, ("the Triton kernels need CUDA tensors; on the CPU they run only under Triton's "
                       "interpreter (set TRITON_INTERPRET=1 before importing bestie_d2)")
    return False, f"the Triton kernels do not run on '{dev.type}' tensors"


def pick_backend(device, backend="auto"):
    """The labelling backend for tensors on ``device``.

    ``"auto"``: ``"opencv"`` for CPU tensors, ``"triton"`` for CUDA tensors when Triton is usable,
    ``"torch"`` otherwise. ``"opencv"`` / ``"torch"`` / ``"triton"`` force one; ``"triton"``
    raises a ``RuntimeError`` saying why when it cannot run there.
    """
    if backend not in BACKENDS:
        raise ValueError(f"components backend must be one of {BACKENDS}, got {backend!r}")
    dev = torch.device(device)
    if backend == "auto":
        if dev.type == "cpu":
            return "opencv"
        return "triton" if triton_status(dev)[0] else "torch"
    if backend == "triton":
        ok, why = triton_status(dev)
        if not ok:
            raise RuntimeError(f"MODEL.BESTIE.COMPONENTS_BACKEND 'triton' cannot run here: {why}. "
                               "Use 'auto', 'opencv' (CPU) or 'torch'.")
    return backend

"""Triton kernels of the component engine, each registered as a torch op in the ``bestie``
namespace (``torch.library.triton_op``), so that the dispatcher, ``torch.compile`` and the op
counter of ``tests/test_engine_op_counts.py`` see one op per call:

* ``union_find.label_regions``: exact connected-components labelling of value maps (pixels connect
  to 8- or 4-neighbours holding the same non-zero value) by union-find, with per-region statistics
  reduced per horizontal run;
* ``component_pass.finalize_components`` / ``finalize_regions``: the per-pixel pass after the
  labellings (kept components, counts, NMS peak candidates, clustering-region candidates);
* ``peak_window.window_peaks``: the NMS test of each peak candidate against its k x k window;
* ``pixel_grouping.group_pixels``: every component pixel to its nearest center, with per-slot
  statistics reduced per run of equal slot before one atomic per run.

``AVAILABLE`` says whether Triton could be imported, ``INTERPRETED`` whether its interpreter runs
the kernels (``TRITON_INTERPRET=1`` at import time: CPU tensors, used by the test suite).
``launch_count()`` counts kernel launches (for the op-count test and the benchmarks).
"""
__all__ = ["AVAILABLE", "INTERPRETED", "IMPORT_ERROR", "launch_count"]

try:
    import triton  # noqa: F401
except Exception as e:  # noqa: BLE001  (any import failure means: no Triton)
    AVAILABLE, INTERPRETED, IMPORT_ERROR = False, False, f"{type(e).__name__}: {e}"
else:
    from .launch import INTERPRETED, launch_count

    AVAILABLE, IMPORT_ERROR = True, ""
    from . import component_pass, peak_window, pixel_grouping, union_find  # noqa: F401  (register the ops)

if not AVAILABLE:
    INTERPRETED = False

    def launch_count():
        return 0

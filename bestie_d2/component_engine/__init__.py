"""The component engine under decoding (docs/method.md §6) and self-refinement (§5).

Both stages work per class and per 8-connected component of a class map: center NMS restricted to
the component, optional center-clustering candidates, grouping of the component's pixels to its
centers through the offsets, and statistics per instance. The engine does this for every
component of a batch at once; data flows one way through it:

    labelling (labelling, labelling_torch, labelling_triton; connected_components)
      -> component table (table.ComponentBatch)
      -> centers (peaks: NMS; centers: clustering merge)
      -> grouping (grouping: pixels -> slots, per-slot statistics)
      -> consumers: modeling.self_refinement (targets), modeling.post_processing (instances)

Backends (``backends.pick_backend``, ``MODEL.BESTIE.COMPONENTS_BACKEND``): OpenCV on the CPU, the
Triton kernels of ``kernels`` on CUDA, plain torch as the fallback; all give the same results.
Small ops live in ``ops``; the center-clustering parameters in ``clustering``.
"""
from .backends import BACKENDS, pick_backend
from .clustering import ClusterParams, offset_magnitude_mask
from .grouping import group_components
from .labelling import label_class_maps
from .ops import channel_argmax, take, to_host
from .table import COL_AREA, COL_CLS, COL_CX, COL_CY, COL_H, COL_IMG, COL_W, COL_X0, COL_Y0, ComponentBatch

__all__ = [
    "BACKENDS", "pick_backend", "ClusterParams", "offset_magnitude_mask", "group_components", "label_class_maps",
    "channel_argmax", "take", "to_host", "ComponentBatch",
    "COL_AREA", "COL_CLS", "COL_CX", "COL_CY", "COL_H", "COL_IMG", "COL_W", "COL_X0", "COL_Y0",
]

"""Self-refinement (docs/method.md §5): center clustering (``clustering``) and refined targets (``refine``).

Names are resolved lazily: ``refine`` imports ``bestie_d2.modeling.postprocessing``, which imports
``clustering``; importing ``refine`` here eagerly would make that an import cycle.
"""
import importlib

__all__ = [
    "ClusterParams",
    "cluster_centers",
    "merge_centers",
    "RefineParams",
    "refine_image_label",
    "refine_point",
]

_WHERE = {
    "ClusterParams": "clustering",
    "cluster_centers": "clustering",
    "merge_centers": "clustering",
    "RefineParams": "refine",
    "refine_image_label": "refine",
    "refine_point": "refine",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Class names for captions: a data set's ``thing_classes``, padded to C, and image-label text."""
from typing import List, Optional, Sequence

import numpy as np
from detectron2.data import MetadataCatalog

from ..utils.vis import to_numpy

__all__ = ["class_names", "label_names"]


def class_names(dataset_name: Optional[str], num_classes: int) -> List[str]:
    """The ``thing_classes`` of ``dataset_name`` (None: none), padded to ``num_classes`` entries
    with ``"class c"``."""
    names = []
    if dataset_name:
        names = list(MetadataCatalog.get(dataset_name).get("thing_classes", []) or [])
    if len(names) < num_classes:
        names += [f"class {c}" for c in range(len(names), num_classes)]
    return names


def label_names(label_vec, names: Sequence[str]) -> str:
    """``(C,)`` multi-hot image label -> ``"cat, dog"`` (``"none"`` when empty)."""
    ids = np.flatnonzero(to_numpy(label_vec) > 0)
    return ", ".join(names[i] for i in ids) if len(ids) else "none"

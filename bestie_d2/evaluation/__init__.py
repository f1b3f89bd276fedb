"""Evaluators: PASCAL VOC instance segmentation (chainercv / FCIS protocol)."""
from ..utils.masks import encode_masks
from .voc_instance import (
    VOCInstanceEvaluator,
    eval_instance_segmentation_voc,
    eval_instance_segmentation_voc_multi,
    voc_ap,
)

__all__ = [
    "VOCInstanceEvaluator",
    "encode_masks",
    "eval_instance_segmentation_voc",
    "eval_instance_segmentation_voc_multi",
    "voc_ap",
]

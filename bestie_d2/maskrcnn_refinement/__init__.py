"""Mask R-CNN refinement (docs/method.md §9): BESTIE's pseudo labels train Detectron2's Mask R-CNN.

The paper's last stage, in one place:

1. :mod:`.pseudo_labels` — :class:`PseudoLabelWriter`, a Detectron2 ``DatasetEvaluator`` run by
   ``inference_on_dataset`` over a *training* split, writes the model's predictions as a COCO
   instances json (:func:`export_pseudo_coco`; CLI ``python -m bestie_d2.tools.export_pseudo_coco``);
2. :mod:`.registration` — :func:`register_pseudo_coco` / :func:`register_pseudo_coco_from_config`
   (``BESTIE.PSEUDO_COCO.*``) turn that json back into a Detectron2 data set;
3. :mod:`.weight_transfer` — optionally start Mask R-CNN's ResNet from the trained BESTIE's
   (:func:`write_maskrcnn_init`) where no ImageNet weights are available;
4. the Mask R-CNN itself is Detectron2's, configured by ``configs/VOC/mask_rcnn_R50_FPN_refine.yaml``,
   ``configs/COCO/mask_rcnn_R50_FPN_refine.yaml`` and ``configs/toy/mask_rcnn_refine.yaml``
   (``configs/*/mask_rcnn_*``), trained with ``bestie_d2.tools.train_net``.
"""
from .pseudo_labels import PseudoLabelWriter, export_pseudo_coco, instances_to_annotations, merge_entries
from .registration import (
    common_image_root,
    contiguous_to_dataset_id,
    read_pseudo_coco_header,
    register_pseudo_coco,
    register_pseudo_coco_from_config,
    source_image_root,
    unregister_pseudo_coco,
)
from .weight_transfer import bestie_backbone_for_maskrcnn, write_maskrcnn_init

__all__ = [
    "PseudoLabelWriter",
    "bestie_backbone_for_maskrcnn",
    "common_image_root",
    "contiguous_to_dataset_id",
    "export_pseudo_coco",
    "instances_to_annotations",
    "merge_entries",
    "read_pseudo_coco_header",
    "register_pseudo_coco",
    "register_pseudo_coco_from_config",
    "source_image_root",
    "unregister_pseudo_coco",
    "write_maskrcnn_init",
]

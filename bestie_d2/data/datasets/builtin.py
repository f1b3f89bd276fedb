"""The built-in data-set names (registered lazily when ``bestie_d2`` is imported).

Roots are taken from ``$BESTIE_DATASETS`` (else ``$DETECTRON2_DATASETS``, else ``./datasets``)
when this module is imported; set the variable before ``import bestie_d2``.

=========================  ===========================================================  ==============
name                       source                                                       evaluator_type
=========================  ===========================================================  ==============
``voc_2012_train_aug``     ``VOC2012/ImageSets/Segmentation/train_aug.txt`` (10,582) +  voc_instance
                           ``VOC2012/cls_labels/train_aug_cls.txt``
``voc_2012_val``           ``VOC2012/ImageSets/Segmentation/val.txt`` (1,449), GT       voc_instance
``bestie_coco_2017_train`` ``coco/annotations/instances_train2017.json``, ``train2017``   coco
``bestie_coco_2017_val``   ``coco/annotations/instances_val2017.json``, ``val2017``       coco
``bestie_toy_train/val``   ``toy/`` (generated on first load)                           voc_instance
=========================  ===========================================================  ==============

``voc_2012_val`` replaces detectron2's own (box-only PASCAL VOC detection) registration of that name.
"""
import os

from .catalog import get_datasets_root
from .coco import COCO_CLASSES, register_bestie_coco
from .toy import register_toy_dataset
from .voc import VOC_CLASSES, register_voc_layout

__all__ = ["register_all_builtin"]


def register_all_builtin(root=None) -> None:
    """Register every built-in name under ``root`` (default :func:`get_datasets_root`). No file access."""
    root = get_datasets_root() if root is None else os.path.abspath(os.fspath(root))
    voc = os.path.join(root, "VOC2012")
    register_voc_layout(
        "voc_2012_train_aug", voc, "ImageSets/Segmentation/train_aug.txt", "cls_labels/train_aug_cls.txt",
        VOC_CLASSES, "voc_instance", replace_foreign=True, with_gt=True,
    )
    register_voc_layout(
        "voc_2012_val", voc, "ImageSets/Segmentation/val.txt", None, VOC_CLASSES, "voc_instance",
        replace_foreign=True, with_gt=True, require_gt=True,
    )
    coco = os.path.join(root, "coco")
    for split in ("train", "val"):
        register_bestie_coco(
            f"bestie_coco_2017_{split}",
            os.path.join(coco, "annotations", f"instances_{split}2017.json"),
            os.path.join(coco, f"{split}2017"),
            coco,
            COCO_CLASSES,
        )
    register_toy_dataset("bestie_toy", os.path.join(root, "toy"))

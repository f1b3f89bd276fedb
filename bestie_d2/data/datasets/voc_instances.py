"""VOC instance ground truth: ``SegmentationObject`` + ``SegmentationClass`` -> instances -> annotations.

Instances follow chainercv's ``VOCInstanceSegmentationDataset``: an instance's mask is the set of
pixels with its index in ``SegmentationObject`` (255 boundary pixels belong to no mask); its class
is the majority ``SegmentationClass`` label inside the mask (0 and 255 not counted).
"""
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util

from ..errors import AnnotationError, ClassIdError, ImageSizeMismatchError
from .label_maps import read_label_map

__all__ = ["voc_instances_from_maps", "annotations_from_masks", "read_voc_instances"]


def voc_instances_from_maps(
    obj: np.ndarray, cls: np.ndarray, num_classes: int, obj_path: str = "", cls_path: str = ""
) -> Tuple[np.ndarray, np.ndarray]:
    """Instances from a VOC object map and class map.

    Returns ``(masks (N,H,W) bool, classes (N,) int64 in 0..C-1)``, ordered by object index.
    Values 0 and 255 of ``obj`` are background / ignore. Raises ``ClassIdError`` for class-map
    values outside ``0..C`` and 255, ``AnnotationError`` for an instance without class pixels.
    """
    if obj.shape != cls.shape:
        raise ImageSizeMismatchError(
            f"SegmentationObject size {obj.shape[1]}x{obj.shape[0]} (WxH) differs from "
            f"SegmentationClass size {cls.shape[1]}x{cls.shape[0]} ({cls_path})",
            path=obj_path,
        )
    cls = cls.astype(np.int64)
    bad = (cls > num_classes) & (cls != 255)
    if bad.any():
        v = int(cls[bad][0])
        raise ClassIdError(
            f"class-map value {v} out of range (0 bg, 1..{num_classes} classes, 255 ignore)", path=cls_path
        )
    obj = obj.astype(np.int64)
    fg = (obj != 0) & (obj != 255)
    ids, inv = np.unique(obj[fg], return_inverse=True)
    if ids.size == 0:
        return np.zeros((0,) + obj.shape, dtype=bool), np.zeros((0,), dtype=np.int64)
    c = cls[fg]
    valid = (c != 0) & (c != 255)
    key = inv.reshape(-1)[valid] * 256 + c[valid]
    ukey, counts = np.unique(key, return_counts=True)
    kid, kcls = ukey // 256, ukey % 256
    order = np.lexsort((kcls, -counts, kid))  # per instance: most pixels first, ties -> smaller id
    kid, kcls = kid[order], kcls[order]
    first = np.ones(kid.shape, dtype=bool)
    first[1:] = kid[1:] != kid[:-1]
    classes = np.full(ids.shape, -1, dtype=np.int64)
    classes[kid[first]] = kcls[first] - 1
    missing = np.nonzero(classes < 0)[0]
    if missing.size:
        raise AnnotationError(
            f"instance {int(ids[missing[0]])} has no object-class pixels in {cls_path} "
            "(all background/ignore there)",
            path=obj_path,
        )
    masks = obj[None, :, :] == ids[:, None, None]
    return masks, classes


def annotations_from_masks(masks: np.ndarray, classes: np.ndarray) -> List[dict]:
    """``(N, H, W)`` bool masks and ``(N,)`` classes -> record ``annotations`` (XYWH_ABS ``bbox``,
    ``category_id``, compressed-RLE ``segmentation`` with str counts, ``iscrowd`` 0)."""
    from detectron2.structures import BoxMode

    if masks.shape[0] == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    boxes = mask_util.toBbox(rles)
    anns = []
    for rle, box, c in zip(rles, boxes, classes):
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "bbox": [float(v) for v in box],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": int(c),
                "segmentation": rle,
                "iscrowd": 0,
            }
        )
    return anns


def read_voc_instances(obj_path: str, cls_path: str, num_classes: int, image_size: Tuple[int, int],
                       image_path: str = "") -> Tuple[List[dict], List[int]]:
    """Read one image's object and class maps; returns ``(annotations, sorted unique classes)``.

    Raises ``ImageSizeMismatchError`` when the object map is not ``image_size`` ``(H, W)`` (naming
    ``image_path``), and the errors of :func:`read_label_map` / :func:`voc_instances_from_maps`.
    """
    H, W = image_size
    obj = read_label_map(obj_path)
    cls = read_label_map(cls_path)
    if obj.shape != (H, W):
        raise ImageSizeMismatchError(
            f"size {obj.shape[1]}x{obj.shape[0]} (WxH) differs from the image "
            f"{image_path} ({W}x{H})", path=obj_path,
        )
    masks, classes = voc_instances_from_maps(obj, cls, num_classes, obj_path, cls_path)
    return annotations_from_masks(masks, classes), sorted(set(int(c) for c in classes))

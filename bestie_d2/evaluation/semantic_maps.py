"""Quality of semantic maps (WSSS / CAM maps) against the ground-truth instances of a data set."""
import os
from typing import Iterable, Optional

import numpy as np
import pycocotools.mask as mask_util

from ..data.datasets.label_maps import read_label_map
from ..utils.masks import masks_to_rles

__all__ = ["semantic_map_miou"]


def semantic_map_miou(records: Iterable[dict], sem_dir: str) -> Optional[float]:
    """Mean IoU, over the labels present (background included), of ``sem_dir/<image_id>.png``
    against the semantic map drawn from each record's instance ``annotations``.

    ``records``: data-set dicts; those without an ``annotations`` key (no instance ground truth,
    e.g. SBD-only VOC train_aug images) are left out. Maps: 0 = background, ``c + 1`` = class c
    (any other value counts as its own label). Returns a fraction in [0, 1], or None when no
    record has ground truth.
    """
    inter, union = {}, {}
    for r in records:
        if "annotations" not in r:
            continue
        H, W = r["height"], r["width"]
        gt = np.zeros((H, W), np.int64)
        for a in r["annotations"]:  # in record order, later instances on top (RLE or polygons)
            gt[mask_util.decode(masks_to_rles([a["segmentation"]], H, W)[0]).astype(bool)] = a["category_id"] + 1
        pred = read_label_map(os.path.join(sem_dir, f"{r['image_id']}.png")).astype(np.int64)
        for c in np.union1d(np.unique(gt), np.unique(pred)):
            g, p = gt == c, pred == c
            inter[c] = inter.get(c, 0) + int((g & p).sum())
            union[c] = union.get(c, 0) + int((g | p).sum())
    ious = [inter[c] / union[c] for c in union if union[c] > 0]
    return float(np.mean(ious)) if ious else None

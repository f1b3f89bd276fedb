"""Statistics of instance cues against ground-truth instances.

The quantity that drives BESTIE's pseudo labels is how many GT instances receive *exactly one*
cue of their class (docs/method.md §2: a semantic component becomes a pseudo instance only then).
"""
import os
from typing import Dict, Iterable, Optional

import numpy as np
import pycocotools.mask as mask_util

from ..data.points import filter_by_confidence, read_points
from ..utils.masks import masks_to_rles

__all__ = ["cue_statistics", "format_cue_statistics"]


def cue_statistics(
    records: Iterable[dict],
    cue_dir: Optional[str],
    num_classes: int,
    *,
    threshold: float = 0.0,
    points_key: str = "peak_points_file",
) -> Dict[str, float]:
    """Count, over GT instances, how many hold 0 / exactly 1 / several cues of their own class.

    Args:
        records: data set dicts with ``annotations`` (RLE or polygon ``segmentation``, ``category_id``).
        cue_dir: folder of ``<image_id>.txt`` files; None = the record's ``points_key`` path.
        threshold: keep cues with ``conf > threshold`` (the BESTIE mapper's filter).

    Returns:
        dict with ``images``, ``gt_instances``, ``cues``, ``exactly_one`` / ``none`` / ``several``
        (fractions of GT instances), ``cue_precision`` (fraction of cues inside a GT instance of
        their class) and ``cues_per_image``.
    """
    n_inst = n_one = n_none = n_many = n_cues = n_cues_hit = n_img = 0
    for r in records:
        anns = [a for a in r.get("annotations", []) if not a.get("iscrowd", 0)]
        path = os.path.join(cue_dir, f"{r['image_id']}.txt") if cue_dir else r.get(points_key)
        pts = read_points(path, num_classes, image_size=(r["height"], r["width"]))
        pts = filter_by_confidence(pts, threshold) if threshold > 0 else pts
        n_img += 1
        n_cues += len(pts)
        if not anns:
            continue
        rles = masks_to_rles([a["segmentation"] for a in anns], r["height"], r["width"])  # RLE or polygons
        masks = mask_util.decode(rles).astype(bool)  # (H, W, N)
        classes = np.array([a["category_id"] for a in anns])
        xs = pts[:, 0].astype(int)
        ys = pts[:, 1].astype(int)
        pc = pts[:, 2].astype(int)
        inside = masks[ys, xs, :] & (pc[:, None] == classes[None, :])  # (P, N)
        per_inst = inside.sum(0)
        n_inst += len(anns)
        n_one += int((per_inst == 1).sum())
        n_none += int((per_inst == 0).sum())
        n_many += int((per_inst > 1).sum())
        n_cues_hit += int(inside.any(1).sum())
    frac = (lambda k: k / n_inst) if n_inst else (lambda k: float("nan"))
    return {
        "images": n_img,
        "gt_instances": n_inst,
        "cues": n_cues,
        "cues_per_image": n_cues / max(n_img, 1),
        "exactly_one": frac(n_one),
        "none": frac(n_none),
        "several": frac(n_many),
        "cue_precision": n_cues_hit / n_cues if n_cues else float("nan"),
    }


def format_cue_statistics(s: Dict[str, float]) -> str:
    return (
        f"{s['gt_instances']} GT instances in {s['images']} images, {s['cues']} cues "
        f"({s['cues_per_image']:.2f}/image): exactly one cue {100 * s['exactly_one']:.1f}%, "
        f"none {100 * s['none']:.1f}%, several {100 * s['several']:.1f}%; "
        f"cue precision {100 * s['cue_precision']:.1f}%"
    )

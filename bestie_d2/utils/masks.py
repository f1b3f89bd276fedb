"""Instance masks in the COCO formats: ``(N, H, W)`` arrays, polygons and RLE -> compressed RLE / bool.

Used by the VOC instance evaluator (:mod:`bestie_d2.evaluation.voc_instance`) and the demo grid's
ground-truth column. Compressed RLE dicts (``{"size": [H, W], "counts": bytes}``) are what
``pycocotools.mask`` computes IoUs on; they keep memory small.
"""
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["encode_masks", "masks_to_rles", "annotation_masks"]


def encode_masks(masks) -> List[dict]:
    """Encode ``(N, H, W)`` masks (bool/uint8 numpy array or torch tensor) to a list of RLE dicts.

    One mask at a time (Fortran-ordered uint8 copy of a single ``(H, W, 1)`` slice) to keep the
    peak memory small. Float masks are thresholded at 0.5.
    """
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    if masks.dtype.kind == "f":
        masks = masks > 0.5
    rles = []
    for m in masks:
        rle = mask_util.encode(np.asfortranarray(m[:, :, None], dtype=np.uint8))[0]
        rles.append(rle)
    return rles


def masks_to_rles(masks, height=None, width=None) -> List[dict]:
    """Normalise one image's masks to a list of compressed RLE dicts.

    Accepts a list of RLE dicts (compressed or uncompressed; an uncompressed one keeps its own
    ``size``), polygon lists (then ``height`` and ``width`` are needed), single ``(H, W)`` masks,
    or an ``(N, H, W)`` array / tensor. None = no mask.
    """
    if masks is None:
        return []
    if isinstance(masks, (list, tuple)):
        out = []
        for m in masks:
            if isinstance(m, dict):
                if isinstance(m.get("counts"), list):  # uncompressed RLE
                    h, w = m["size"]
                    m = mask_util.frPyObjects(m, h, w)
                out.append(m)
            elif isinstance(m, (list, tuple)):  # polygons
                if height is None or width is None:
                    raise ValueError("polygon masks need the image height and width")
                out.append(mask_util.merge(mask_util.frPyObjects(m, height, width)))
            else:
                arr = np.asarray(m.detach().cpu().numpy() if hasattr(m, "detach") else m)
                out.extend(encode_masks(arr[None]))
        return out
    return encode_masks(masks)


def annotation_masks(record: dict, height: int, width: int) -> Tuple[np.ndarray, List[int]]:
    """The non-crowd instance masks of a data-set record's ``annotations`` with a ``segmentation``:
    ``(N, H, W)`` bool and their ``category_id`` list."""
    anns = [a for a in record.get("annotations", [])
            if a.get("segmentation") is not None and not a.get("iscrowd", 0)]
    if not anns:
        return np.zeros((0, height, width), bool), []
    rles = masks_to_rles([a["segmentation"] for a in anns], height, width)
    return np.stack([mask_util.decode(r).astype(bool) for r in rles]), [int(a["category_id"]) for a in anns]

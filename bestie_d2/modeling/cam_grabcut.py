"""GrabCut refinement of CAM semantic maps (optional step of ``cam_to_semantic``).

Raw CAMs (PAM's included) fire on the most discriminative parts of an object and under-segment it;
a WSSS pipeline therefore refines them before they serve as semantic pseudo labels. The paper's
WSSS maps come from DRS pseudo labels refined by a DeepLab-V2 re-training (docs/method.md §1.1), which
we do not ship. This module is a cheap, training-free stand-in: per labelled class, OpenCV's
GrabCut (Rother et al., SIGGRAPH 2004; used for weak labels in Khoreva et al., CVPR 2017) fits
colour models to seeds taken from the CAM and returns the class's extent following image edges.

Seeds of class ``k`` (CAM values are per-class max-normalised, in [0, 1]):

* ``cam_k >= fg_threshold``                  -> sure foreground (``GC_FGD``);
* ``probable_fg_threshold <= cam_k < fg``    -> probable foreground (``GC_PR_FGD``);
* ``max_j cam_j < bg_threshold``             -> sure background (``GC_BGD``) (``0`` disables);
* everything else                             -> probable background (``GC_PR_BGD``).

Classes are refined independently; a pixel claimed by several classes takes the one with the
highest CAM, a pixel claimed by none is background. Runs on the CPU (numpy / cv2), about 0.1 s
for a 160 x 160 image with three classes. Deterministic: OpenCV's RNG is re-seeded (to 0) before
each GrabCut call.
"""
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = ["grabcut_semantic"]


def grabcut_semantic(
    image: np.ndarray,
    cam: np.ndarray,
    classes: np.ndarray,
    fg_threshold: float = 0.5,
    probable_fg_threshold: float = 0.1,
    bg_threshold: float = 0.0,
    iterations: int = 3,
    size: Optional[Tuple[int, int]] = None,
) -> np.ndarray:
    """CAM + image -> semantic map refined by GrabCut.

    Args:
        image: (H, W, 3) uint8 image (any channel order: GrabCut's colour models do not care).
        cam: (K, H, W) float CAM of ``classes``, normalised to [0, 1] per class, original frame.
        classes: (K,) int class ids.
        fg_threshold, probable_fg_threshold, bg_threshold: seed thresholds (module docstring).
        iterations: GrabCut iterations per class.
        size: (H, W), needed only when ``K == 0``.
    Returns:
        (H, W) uint8: 0 = background, ``c + 1`` = class c.
    """
    if not (0.0 <= probable_fg_threshold <= fg_threshold <= 1.0):
        raise ValueError(
            "GrabCut seeds need 0 <= PROBABLE_FG_THRESHOLD <= FG_THRESHOLD <= 1, got "
            f"{probable_fg_threshold} and {fg_threshold}"
        )
    if int(iterations) < 1:
        raise ValueError(f"GrabCut needs at least one iteration, got {iterations}")
    cam = np.asarray(cam, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if cam.ndim != 3 or cam.shape[0] != classes.shape[0]:
        raise ValueError(f"cam must be (K, H, W) with K = len(classes) = {len(classes)}, got {cam.shape}")
    if cam.shape[0] == 0:
        H, W = size if size is not None else cam.shape[1:]
        return np.zeros((int(H), int(W)), dtype=np.uint8)
    K, H, W = cam.shape
    if image.shape[:2] != (H, W) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) = ({H}, {W}, 3) like the CAM, got {image.shape}")
    img = np.ascontiguousarray(image, dtype=np.uint8)

    strongest = cam.max(axis=0)
    # Per pixel, the CAM value of every class that GrabCut assigns it to, -1 elsewhere.
    claimed = np.full((K, H, W), -1.0, dtype=np.float32)
    for k in range(K):
        seeds = np.full((H, W), cv2.GC_PR_BGD, np.uint8)
        if bg_threshold > 0:
            seeds[strongest < bg_threshold] = cv2.GC_BGD
        seeds[cam[k] >= probable_fg_threshold] = cv2.GC_PR_FGD
        seeds[cam[k] >= fg_threshold] = cv2.GC_FGD
        if not (seeds == cv2.GC_FGD).any():
            continue  # no confident evidence for this class
        if not ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any():
            claimed[k] = cam[k]  # nothing to separate from
            continue
        # GrabCut initialises its colour models with k-means++ from OpenCV's global RNG: seed it per
        # call so a map depends only on its inputs (not on how many images were processed before).
        cv2.setRNGSeed(0)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        cv2.grabCut(img, seeds, None, bgd_model, fgd_model, int(iterations), cv2.GC_INIT_WITH_MASK)
        fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        claimed[k][fg] = cam[k][fg]
    best = claimed.max(axis=0)
    sem = (classes[claimed.argmax(axis=0)] + 1).astype(np.uint8)
    sem[best < 0] = 0
    return sem

"""CAM inference shared by ``extract_cues`` and ``cam_to_semantic`` (docs/method.md §8.3).

For one image with ground-truth image labels ``L`` (original size H x W):

1. resize the image to ``S x S`` (``INPUT.PAM.TEST_SIZE``, aspect ratio not kept) and run it
   together with its horizontal flip (:func:`compute_cams`);
2. per image and per labelled class: ``ReLU(cam)`` -> bilinear upsampling (``align_corners=False``)
   to the **original** H x W -> divide by the class's spatial max + 1e-5 (:func:`normalize_cams`);
3. average with the flip's CAM flipped back.

Steps 4-6 are in :func:`find_peaks` (3x3 average smoothing, k x k max-pool NMS, top-K per class,
``conf >= threshold``) and :func:`cams_to_semantic` (background below a threshold, else the argmax
class + 1). Both take a CAM tensor, so they can be used (and tested) on any given CAM.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "resize_for_cam",
    "normalize_cams",
    "compute_cams",
    "find_peaks",
    "cams_to_semantic",
]

EPS = 1e-5


def resize_for_cam(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (3, size, size) uint8 tensor (bilinear, aspect not kept)."""
    img = cv2.resize(image, (int(size), int(size)), interpolation=cv2.INTER_LINEAR)
    return torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))


def normalize_cams(raw: torch.Tensor, classes: torch.Tensor, out_size: Tuple[int, int]) -> torch.Tensor:
    """ReLU, select ``classes``, upsample to ``out_size``, divide by per-class max + 1e-5.

    Args:
        raw: (C, h, w) raw CAM.
        classes: (K,) long class ids.
        out_size: (H, W) original image size.
    Returns:
        (K, H, W) float CAM with values in [0, 1).
    """
    H, W = int(out_size[0]), int(out_size[1])
    if classes.numel() == 0:
        return raw.new_zeros((0, H, W), dtype=torch.float32)
    cam = F.relu(raw.float()[classes.to(raw.device)])
    cam = F.interpolate(cam[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    return cam / (cam.flatten(1).amax(dim=1)[:, None, None] + EPS)


@torch.no_grad()
def compute_cams(
    model,
    images: torch.Tensor,
    image_sizes: Sequence[Tuple[int, int]],
    labels: Sequence[Sequence[int]],
    flip: bool = True,
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Flip-averaged, per-class max-normalised CAMs at the original resolution.

    Args:
        model: anything with ``cams(images) -> (N, C, h, w)`` (e.g.
            :class:`bestie_d2.modeling.pam.PAMClassifier`), in eval mode.
        images: (N, 3, S, S) resized images (pixel values, as ``model.cams`` expects).
        image_sizes: original (H, W) per image.
        labels: ground-truth class ids per image (the classes whose CAMs are returned).
        flip: also run the flipped images and average (docs/method.md §8.3 step 3).
    Returns:
        per image ``(classes (K,) long, cams (K, H, W) float in [0, 1])`` on the model's device,
        classes sorted ascending.
    """
    n = images.shape[0]
    batch = torch.cat([images, images.flip(-1)]) if flip else images
    raw = model.cams(batch)
    out = []
    for i in range(n):
        classes = torch.as_tensor(sorted(set(int(c) for c in labels[i])), dtype=torch.long)
        classes = classes.to(raw.device)
        cam = normalize_cams(raw[i], classes, image_sizes[i])
        if flip:
            cam_f = normalize_cams(raw[n + i], classes, image_sizes[i]).flip(-1)
            cam = (cam + cam_f) * 0.5
        out.append((classes, cam))
    return out


def find_peaks(
    cam: torch.Tensor,
    classes: torch.Tensor,
    smooth_kernel: int = 3,
    nms_kernel: int = 15,
    top_k: int = 25,
    conf_threshold: float = 0.1,
) -> np.ndarray:
    """Local maxima of class activation maps (docs/method.md §8.3 steps 4-6).

    Args:
        cam: (K, H, W) CAM of the classes ``classes`` (normalised, in the original frame).
        classes: (K,) class ids.
        smooth_kernel: side of the average-pool smoothing (stride 1, zero padding counted);
            <= 1 disables it.
        nms_kernel: side of the max-pool NMS window (a pixel is a peak if it equals the max;
            of exactly tied pixels in a window only the first in raster order is kept).
        top_k: at most this many peaks per class (highest first).
        conf_threshold: keep peaks with value ``>= conf_threshold``.
    Returns:
        (N, 4) float32 ``[x, y, c, conf]`` (x = column, y = row, original pixels), grouped by class
        in the order of ``classes``, each class in descending confidence.
    """
    if cam.numel() == 0 or cam.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.float32)
    x = cam.float()[None]
    if smooth_kernel and smooth_kernel > 1:
        x = F.avg_pool2d(x, smooth_kernel, stride=1, padding=smooth_kernel // 2)
    x = x[0]
    K, H, W = x.shape
    if nms_kernel and nms_kernel > 1:
        # Exact ties inside a window (plateaus, e.g. the clamped rows/columns at the border of an
        # upsampled CAM) would all survive an equality test; a tiny raster-order ramp (in float64,
        # far below any real difference) keeps only the first pixel of a tie.
        ramp = torch.arange(H * W, dtype=torch.float64, device=x.device).view(1, H, W)
        xd = x.double() - ramp * (1e-9 / (H * W))
        pooled = F.max_pool2d(xd[None], nms_kernel, stride=1, padding=nms_kernel // 2)[0]
        is_peak = xd == pooled[:, :H, :W]
    else:
        is_peak = torch.ones_like(x, dtype=torch.bool)
    scores = torch.where(is_peak, x, torch.full_like(x, -1.0)).flatten(1)
    k = min(int(top_k), H * W)
    vals, idx = scores.topk(k, dim=1)  # sorted, descending
    keep = vals >= conf_threshold
    rows = []
    vals, idx, keep = vals.cpu(), idx.cpu(), keep.cpu()
    classes = classes.cpu()
    for j in range(K):
        v, i = vals[j][keep[j]], idx[j][keep[j]]
        if v.numel() == 0:
            continue
        ys, xs = (i // W).float(), (i % W).float()
        c = torch.full_like(v, float(classes[j]))
        rows.append(torch.stack([xs, ys, c, v.clamp(0.0, 1.0)], dim=1))
    if not rows:
        return np.zeros((0, 4), dtype=np.float32)
    return torch.cat(rows).numpy().astype(np.float32)


def cams_to_semantic(
    cam: torch.Tensor, classes: torch.Tensor, bg_threshold: float, size: Optional[Tuple[int, int]] = None
) -> np.ndarray:
    """CAM -> semantic map (H, W) uint8: 0 = background, c + 1 = class c.

    A pixel is background when every labelled class's CAM is below ``bg_threshold``; otherwise it
    takes the class with the highest CAM. ``size`` is needed only when ``cam`` has no class.
    """
    if cam.shape[0] == 0:
        H, W = size if size is not None else cam.shape[1:]
        return np.zeros((int(H), int(W)), dtype=np.uint8)
    best, arg = cam.float().max(dim=0)
    sem = (classes.to(arg.device)[arg] + 1).to(torch.int32)
    sem[best < bg_threshold] = 0
    return sem.cpu().numpy().astype(np.uint8)

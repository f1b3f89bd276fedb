"""Semantic segmentation loss of BESTIE (docs/method.md §4): hard-pixel-mined cross entropy.

Why not ``detectron2.projects.deeplab.loss.DeepLabCE`` (present in both supported installs): it
computes the same mean of the ``int(top_k * N*H*W)`` largest per-pixel losses, but (1) it takes
the mean of a *sorted* ``topk``, and the float sum of the same values in another order differs in
the last bits, so switching would change every training step's loss (this package keeps its
outputs bit-identical across refactors); (2) with ``int(top_k * N*H*W) == 0`` (tiny test crops) it
returns NaN, where this function keeps at least one pixel. ``tests/test_losses.py`` checks both
against Detectron2's module.
"""
import torch
from torch.nn import functional as F

__all__ = ["hard_pixel_cross_entropy"]


def hard_pixel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_label: int = 255, top_k: float = 1.0
) -> torch.Tensor:
    """Per-pixel CE over the whole batch, averaged over the ``max(int(top_k * N*H*W), 1)`` largest.

    Ignored pixels have loss 0 but stay in the pool (and in the mean when ``top_k == 1``), as in
    DeepLab's hard-pixel mining. Pure torch, no host sync.

    Args:
        logits: (N, K, H, W) float.
        labels: (N, H, W) long, values in [0, K) or ``ignore_label``.
        ignore_label: label value with zero loss.
        top_k: fraction of pixels kept, in (0, 1] (``MODEL.BESTIE.SEM_LOSS_TOP_K``, 0.2).
    Returns:
        scalar tensor (nats per pixel).
    """
    pixel = F.cross_entropy(logits, labels, ignore_index=ignore_label, reduction="none").reshape(-1)
    if top_k >= 1.0:
        return pixel.mean()
    k = max(int(top_k * pixel.numel()), 1)
    return torch.topk(pixel, k, sorted=False).values.mean()

"""BESTIE losses (docs/method.md §4): hard-pixel-mined CE and IAG-weighted center / offset losses.

All functions are pure torch, keep the autograd graph in every case (an empty guidance region gives
a zero that still backpropagates) and never synchronise with the host.
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DeepLabCE", "hard_pixel_cross_entropy", "weighted_mse_loss", "weighted_l1_loss"]


def hard_pixel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_label: int = 255, top_k: float = 1.0
) -> torch.Tensor:
    """Per-pixel CE over the whole batch, averaged over the ``int(top_k * N*H*W)`` largest.

    Ignored pixels have loss 0 but stay in the pool (and in the mean when ``top_k == 1``), as in
    DeepLab's hard-pixel mining.

    Args:
        logits: (N, K, H, W) float.
        labels: (N, H, W) long, values in [0, K) or ``ignore_label``.
        ignore_label: label value with zero loss.
        top_k: fraction of pixels kept, in (0, 1].
    Returns:
        scalar tensor.
    """
    pixel = F.cross_entropy(logits, labels, ignore_index=ignore_label, reduction="none").reshape(-1)
    if top_k >= 1.0:
        return pixel.mean()
    k = max(int(top_k * pixel.numel()), 1)
    return torch.topk(pixel, k, sorted=False).values.mean()


class DeepLabCE(nn.Module):
    """Module form of :func:`hard_pixel_cross_entropy` (``top_k_percent_pixels`` = fraction)."""

    def __init__(self, ignore_label: int = 255, top_k_percent_pixels: float = 1.0):
        super().__init__()
        self.ignore_label = ignore_label
        self.top_k_percent_pixels = top_k_percent_pixels

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return hard_pixel_cross_entropy(
            logits, labels, self.ignore_label, self.top_k_percent_pixels
        )


def _guided(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_{b,k,p} w(b,p) * per_pixel(b,k,p) / #{(b,p): w(b,p) > 0}, 0 when the region is empty."""
    if weight.dim() == per_pixel.dim() - 1:
        weight = weight.unsqueeze(1)
    weight = weight.to(per_pixel.dtype)
    total = (per_pixel * weight).sum()
    # The count is over pixels, not pixel x channel. With w >= 0, count == 0 <=> sum(w) == 0, in
    # which case total is exactly 0 and clamping the count keeps a differentiable zero.
    count = (weight > 0).sum().to(per_pixel.dtype)
    return total / count.clamp(min=1.0)


def weighted_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """IAG center loss: ``sum w (pred - target)^2 / #{w > 0}`` (sum over channels and pixels).

    Args:
        pred, target: (N, K, H, W) float (K = C class-wise center channels).
        weight: (N, H, W) or (N, 1, H, W), >= 0 (binary pseudo weights or soft refined ones; soft
            weights are still normalised by the count of positive pixels).
    Returns:
        scalar tensor; 0 (with a graph to ``pred``) when every weight is 0.
    """
    return _guided((pred - target) ** 2, weight)


def weighted_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """IAG offset loss: ``sum w |pred - target| / #{w > 0}`` over both offset channels.

    Shapes as :func:`weighted_mse_loss` (K = 2).
    """
    return _guided((pred - target).abs(), weight)

"""The instance-aware guided (IAG) loss of BESTIE (paper §3.3; docs/method.md §4).

The pseudo (or refined) instance labels cover only part of the image: the instance-aware region
``w`` (``weight`` of the mapper / of refinement: 1 on accepted pseudo instances, the refined
confidence in [0, 1] on refined ones, 0 elsewhere) guides where the center and offset heads are
supervised:

    L_ctr = sum_{b,c,p} w(b,p) * (C(b,c,p) - C*(b,c,p))² / #{(b,p) : w(b,p) > 0}
    L_off = sum_{b,k,p} w(b,p) * |O(b,k,p) - O*(b,k,p)| / #{(b,p) : w(b,p) > 0}

(``c`` over the C class-wise center channels, ``k`` over dy, dx in pixels; the count is of pixels,
not pixel x channel; 0 when the region is empty). The total BESTIE loss is
``L_seg + 200 L_ctr + 0.01 L_off`` (``MODEL.BESTIE.CENTER_LOSS_WEIGHT``, ``OFFSET_LOSS_WEIGHT``),
each IAG term averaged over the pseudo and refined targets once self-refinement runs.

Pure torch: the graph is kept in every case (an empty region gives a zero that still
backpropagates) and nothing synchronises with the host.
"""
import torch

__all__ = ["iag_weighted_mean", "weighted_mse_loss", "weighted_l1_loss"]


def iag_weighted_mean(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_{b,k,p} w(b,p) * per_pixel(b,k,p) / #{(b,p): w(b,p) > 0}``, 0 when the region is empty.

    Args:
        per_pixel: (N, K, H, W) float.
        weight: (N, H, W) or (N, 1, H, W), >= 0.
    """
    if weight.dim() == per_pixel.dim() - 1:
        weight = weight.unsqueeze(1)
    weight = weight.to(per_pixel.dtype)
    total = (per_pixel * weight).sum()
    # With w >= 0, count == 0 <=> sum(w) == 0, in which case total is exactly 0 and clamping the
    # count keeps a differentiable zero.
    count = (weight > 0).sum().to(per_pixel.dtype)
    return total / count.clamp(min=1.0)


def weighted_mse_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """IAG center loss ``L_ctr``: ``sum w (pred - target)² / #{w > 0}`` (sum over channels and pixels).

    Args:
        pred, target: (N, C, H, W) float class-wise center heatmaps.
        weight: (N, H, W) or (N, 1, H, W), >= 0 (binary pseudo weights or soft refined ones; soft
            weights are still normalised by the count of positive pixels).
    Returns:
        scalar tensor; 0 (with a graph to ``pred``) when every weight is 0.
    """
    return iag_weighted_mean((pred - target) ** 2, weight)


def weighted_l1_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """IAG offset loss ``L_off``: ``sum w |pred - target| / #{w > 0}`` over both offset channels (px).

    Shapes as :func:`weighted_mse_loss` with (N, 2, H, W) offsets.
    """
    return iag_weighted_mean((pred - target).abs(), weight)

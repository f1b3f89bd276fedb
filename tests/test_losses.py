"""BESTIE losses: hard-pixel CE and IAG-weighted center / offset losses, checked by hand."""
import math

import bestie_d2  # noqa: F401  (prepares detectron2)
import pytest
import torch
import torch.nn.functional as F

from bestie_d2.modeling.iag_loss import weighted_l1_loss, weighted_mse_loss
from bestie_d2.modeling.semantic_loss import hard_pixel_cross_entropy


def test_weighted_mse_by_hand():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [1.0, 2.0]]]], requires_grad=True)
    target = torch.zeros(1, 2, 2, 2)
    weight = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])  # (N, H, W), soft weights allowed
    # sum over both channels, two positive pixels: (1 + 0.25) * 1 + (9 + 1) * 0.5 = 6.25
    loss = weighted_mse_loss(pred, target, weight)
    assert loss.item() == pytest.approx(6.25 / 2)
    # (N, 1, H, W) weights give the same value
    assert weighted_mse_loss(pred, target, weight[:, None]).item() == pytest.approx(6.25 / 2)
    loss.backward()
    expected = 2 * pred.detach() * weight[:, None] / 2
    assert torch.allclose(pred.grad, expected)


def test_weighted_l1_by_hand_batch():
    pred = torch.zeros(2, 2, 1, 2)
    target = torch.tensor([[[[1.0, -2.0]], [[3.0, 4.0]]], [[[1.0, 1.0]], [[1.0, 1.0]]]])
    weight = torch.tensor([[[1.0, 1.0]], [[0.0, 0.25]]])
    # image 0: |1|+|-2|+|3|+|4| = 10 (w=1); image 1 pixel 1: (1+1)*0.25 = 0.5; count = 3
    assert weighted_l1_loss(pred, target, weight).item() == pytest.approx(10.5 / 3)


@pytest.mark.parametrize("fn", [weighted_mse_loss, weighted_l1_loss])
def test_zero_weight_gives_zero_with_graph(fn):
    pred = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = fn(pred, torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0


def test_top_k_ce_by_hand():
    logits = torch.tensor([[[[2.0, 0.0, -1.0, 0.5]], [[0.0, 1.0, 3.0, 0.5]]]])  # (1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 1, 255]]])
    pix = [
        -math.log(math.exp(2) / (math.exp(2) + 1)),
        -math.log(1 / (1 + math.e)),
        -math.log(math.exp(3) / (math.exp(3) + math.exp(-1))),
        0.0,  # ignored: counts with loss 0
    ]
    # plain mean over all 4 pixels, the ignored one included
    assert hard_pixel_cross_entropy(logits, labels, 255, 1.0).item() == pytest.approx(sum(pix) / 4)
    # top 50%: int(0.5 * 4) = 2 largest
    top2 = sorted(pix, reverse=True)[:2]
    assert hard_pixel_cross_entropy(logits, labels, 255, 0.5).item() == pytest.approx(sum(top2) / 2)


def test_top_k_over_whole_batch_matches_detectron2_deeplab():
    from detectron2.projects.deeplab.loss import DeepLabCE as D2DeepLabCE

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 8, 8)
    labels = torch.randint(0, 4, (3, 8, 8))
    labels[0, :2] = 255
    ours = hard_pixel_cross_entropy(logits, labels, 255, 0.2)
    ref = D2DeepLabCE(ignore_label=255, top_k_percent_pixels=0.2)(logits, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    # whole-batch pooling differs from per-image pooling in general
    flat = F.cross_entropy(logits, labels, ignore_index=255, reduction="none").flatten()
    k = int(0.2 * flat.numel())
    assert ours.item() == pytest.approx(flat.topk(k).values.mean().item(), rel=1e-6)


def test_why_not_detectron2_deeplab_ce():
    """The two differences that keep ``hard_pixel_cross_entropy`` (bestie_d2.modeling.semantic_loss)."""
    from detectron2.projects.deeplab.loss import DeepLabCE as D2DeepLabCE

    # fewer pixels than 1 / top_k: Detectron2 averages an empty top-k (NaN), ours keeps one pixel
    logits, labels = torch.randn(1, 3, 2, 2), torch.randint(0, 3, (1, 2, 2))
    assert math.isnan(D2DeepLabCE(ignore_label=255, top_k_percent_pixels=0.2)(logits, labels).item())
    pix = F.cross_entropy(logits, labels, reduction="none").flatten()
    assert hard_pixel_cross_entropy(logits, labels, 255, 0.2).item() == pix.max().item()
    # the same k values, summed in topk's unsorted order (ours) or sorted (Detectron2): the sums
    # are of the same multiset, so they agree to rounding, but not necessarily bit for bit
    torch.manual_seed(1)
    logits = torch.randn(4, 21, 64, 64)
    labels = torch.randint(0, 21, (4, 64, 64))
    ours = hard_pixel_cross_entropy(logits, labels, 255, 0.2)
    ref = D2DeepLabCE(ignore_label=255, top_k_percent_pixels=0.2)(logits, labels)
    k = int(0.2 * labels.numel())
    flat = F.cross_entropy(logits, labels, reduction="none").flatten()
    assert torch.equal(ours, torch.topk(flat, k, sorted=False).values.mean())
    assert torch.equal(ref, torch.topk(flat, k).values.mean())
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)

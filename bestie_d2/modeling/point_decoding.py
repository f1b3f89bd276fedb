"""Point-guided instance decoding: one instance per given point (docs/method.md §6, "with points").

When the point labels of an image are known — the training images of the point route, whose
predictions become the Mask R-CNN pseudo labels — the centers need not be found: every pixel of a
predicted class joins the point of that class nearest to its vote ``p + offset(p)``, the same
grouping the point-route self-refinement uses (:func:`~bestie_d2.modeling.self_refinement.refine_point`,
reused here with the predicted semantic map in place of the WSSS map). Predicted foreground of a
class without points is no instance. This is the authors' optional ``val_clean`` point decoding,
used here where the points are training labels, never on evaluation images.
"""
import torch

from ..component_engine import channel_argmax
from .self_refinement import refine_point

__all__ = ["decode_instances_with_points"]


def decode_instances_with_points(sem_prob, offset, points, image_label=None):
    """Decode the instances of one image with its point labels.

    Args:
        sem_prob: ``(C+1, H, W)`` semantic probabilities (channel 0 = background).
        offset: ``(2, H, W)`` (dy, dx) offsets in pixels of the same frame.
        points: ``(K, 3)`` long ``[y, x, c]`` point labels in pixels of that frame, ``c`` in
            ``0..C-1``. Points outside the image are ignored; repeated points are one instance.
        image_label: optional ``(C,)`` multi-hot; classes outside it (and classes without points)
            are zeroed before the argmax. Default: the classes of ``points``.

    Returns:
        ``masks`` ``(N, H, W)`` bool, ``classes`` ``(N,)`` long, ``scores`` ``(N,)`` float: one
        instance per distinct point that got pixels, ordered by class, then by point (first
        occurrence); score = mean probability of the class over the mask (``s_seg``; no center
        score, the point is given).
    """
    with torch.no_grad():
        sem_prob, offset = sem_prob.detach(), offset.detach()
        C1, H, W = sem_prob.shape
        C = C1 - 1
        if offset.shape != (2, H, W):
            raise ValueError(f"shape mismatch: sem_prob {tuple(sem_prob.shape)}, offset {tuple(offset.shape)}")
        dev = sem_prob.device
        pts = torch.as_tensor(points, device=dev).reshape(-1, 3).long()
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < H) & (pts[:, 1] >= 0) & (pts[:, 1] < W)
        if ((pts[:, 2] < 0) | (pts[:, 2] >= C)).any():
            raise ValueError(f"point classes must be in 0..{C - 1}, got {pts[:, 2].tolist()}")
        pts = pts[inside]
        has_pts = torch.zeros(C, dtype=torch.bool, device=dev)
        has_pts[pts[:, 2]] = True
        keep = has_pts if image_label is None else has_pts & (torch.as_tensor(image_label, device=dev) > 0)
        prob = sem_prob.clone()
        prob[1:] *= keep.to(prob.dtype).view(C, 1, 1)
        pred = channel_argmax(prob).long()  # (H, W), 0 = background, c + 1 = class c
        targets, _ = refine_point(offset[None].float(), [pts], keep[None].float(), pred[None])
        on = targets["weight"][0].reshape(-1) > 0
        pix = torch.nonzero(on).squeeze(1)
        ys, xs = (pix // W).float(), (pix % W).float()
        # the nearest point's position, exact: refine_point writes point - pixel in float32
        py = (ys + targets["offset"][0, 0].reshape(-1)[pix]).round().long()
        px = (xs + targets["offset"][0, 1].reshape(-1)[pix]).round().long()
        cls = pred.reshape(-1)[pix] - 1
        key = (cls * H + py) * W + px  # (class, point) identity of every labelled pixel
        # instances in (class, first point occurrence) order
        pkey = (pts[:, 2] * H + pts[:, 0]) * W + pts[:, 1]
        order = torch.argsort(pts[:, 2] * (pts.shape[0] + 1) + torch.arange(pts.shape[0], device=dev), stable=True)
        ordered = pkey[order]
        uniq, inv = torch.unique(ordered, return_inverse=True)
        first = torch.full((uniq.numel(),), ordered.numel(), dtype=torch.long, device=dev)
        first.scatter_reduce_(0, inv, torch.arange(ordered.numel(), device=dev), reduce="amin")
        ukeys = ordered[first.sort().values]  # distinct points, in first-occurrence order
        if ukeys.numel() == 0 or pix.numel() == 0:
            return (torch.zeros((0, H, W), dtype=torch.bool, device=dev),
                    torch.zeros(0, dtype=torch.long, device=dev), torch.zeros(0, dtype=sem_prob.dtype, device=dev))
        sk, perm = ukeys.sort()
        inst = perm[torch.searchsorted(sk, key).clamp(max=sk.numel() - 1)]  # each pixel's point
        counts = torch.zeros(ukeys.numel(), dtype=torch.long, device=dev).index_add_(0, inst, torch.ones_like(inst))
        mask_flat = torch.zeros((ukeys.numel(), H * W), dtype=torch.bool, device=dev)
        mask_flat[inst, pix] = True
        p = prob.reshape(C1, -1)[cls + 1, pix]
        s_seg = torch.zeros(ukeys.numel(), dtype=prob.dtype, device=dev).index_add_(0, inst, p)
        s_seg = s_seg / counts.clamp(min=1)
        nonempty = counts > 0
        classes = ukeys // (H * W)
        return (mask_flat[nonempty].view(-1, H, W), classes[nonempty], s_seg[nonempty])

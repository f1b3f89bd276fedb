"""Instance decoding of BESTIE outputs (docs/method.md §6), on the component engine.

For every predicted class (argmax of the semantic probabilities) and every 8-connected component
of it with at least ``min_area`` pixels: centers = heatmap NMS restricted to the component (plus,
with ``ClusterParams``, the center-clustering candidates), every pixel joins the center nearest to
its vote ``p + offset(p)``, and each non-empty group is an instance scored ``s_ctr * s_seg``.
All components of the image are decoded at once (``component_labelling.label_class_maps``,
``center_clustering.group_components``); host syncs per image with the torch labelling are a
fixed two (labelling counts and the grouping's size bounds in one transfer; the instance count;
``tests/test_refine_syncs.py``), with OpenCV the class and magnitude maps go to the host and the
labels back. CPU and GPU, OpenCV, torch and Triton labelling give identical results.
"""
import torch

from ..component_engine import (
    COL_CLS, channel_argmax, group_components, label_class_maps, offset_magnitude_mask, take, to_host,
)

__all__ = ["decode_instances"]


def _empty(H, W, dtype, dev):
    return (torch.zeros((0, H, W), dtype=torch.bool, device=dev), torch.zeros(0, dtype=torch.long, device=dev),
            torch.zeros(0, dtype=dtype, device=dev))


def decode_instances(sem_prob, center, offset, *, center_threshold=0.1, nms_kernel=41, min_area=50,
                     cluster=None, backend="auto"):
    """Decode instances of one image (docs/method.md §6).

    Args:
        sem_prob: ``(C+1, H, W)`` semantic probabilities (softmax; channel 0 = background).
        center: ``(C, H, W)`` class-wise center heatmaps.
        offset: ``(2, H, W)`` (dy, dx) offsets in pixels.
        center_threshold: center NMS threshold (test: 0.1).
        nms_kernel: odd NMS window (41 px).
        min_area: 8-connected predicted-class components smaller than this are dropped (50 px).
        cluster: ``ClusterParams`` to add clustering centers (authors' test setting), or None.
        backend: component labelling, "auto" | "opencv" | "torch" (``component_labelling``).

    Returns:
        ``masks`` ``(N, H, W)`` bool, ``classes`` ``(N,)`` long (0..C-1), ``scores`` ``(N,)`` float,
        ordered by class, component (raster order of its first pixel) and center order. Instances
        never span two components. Scores: ``s_ctr * s_seg`` with ``s_ctr`` the heatmap maximum over
        the instance (clustering-marked centers have 1.0; ``s_ctr >= 1`` -> ``s_ctr = s_seg``) and
        ``s_seg`` the mean class probability over the instance. A component without any center is
        one instance. With no instance N = 0 (the authors' evaluation adds one empty mask with score
        0; callers that want it add it).
    """
    with torch.no_grad():
        # float32 whatever the network's precision (AMP): the same instances as from float32 maps
        sem_prob, center, offset = (t.detach().float().contiguous() for t in (sem_prob, center, offset))
        C1, H, W = sem_prob.shape
        C = C1 - 1
        if center.shape != (C, H, W) or offset.shape != (2, H, W):
            raise ValueError(
                f"shape mismatch: sem_prob {tuple(sem_prob.shape)}, center {tuple(center.shape)}, "
                f"offset {tuple(offset.shape)}"
            )
        if C1 > 256:
            raise ValueError("at most 255 classes are supported")
        dev = center.device
        sem = channel_argmax(sem_prob)
        mag = None if cluster is None else offset_magnitude_mask(offset, cluster.offset_threshold)[None]
        heat = center[None]
        cb = label_class_maps(sem[None], min_area, mag, cluster, backend=backend,
                              peaks_for=(heat, center_threshold, nms_kernel))
        if cb.M == 0:
            return _empty(H, W, center.dtype, dev)
        # semantic probability of the component's class: channel cls + 1
        cls_p = take(cb.col[COL_CLS], cb.comp_p)
        pp = take(sem_prob, (cls_p + 1) * (H * W) + cb.pix)
        g = group_components(cb, heat, offset[None], threshold=center_threshold, nms_kernel=nms_kernel,
                             cluster=cluster, values_p=pp)
        slot, count = g["slot"], g["count"]
        s_seg = g["value_mean"]
        s_ctr = g["hmax"].to(s_seg.dtype)
        s_ctr = torch.where(s_ctr >= 1, s_seg, s_ctr)
        scores = s_ctr * s_seg
        classes = take(cb.col[COL_CLS], g["slot_comp"])
        keep = count > 0
        newidx = torch.cumsum(keep.long(), 0)
        N = int(to_host(newidx[-1:])[0])  # host sync: number of instances
        inst = torch.zeros(H * W, dtype=torch.int32, device=dev)
        inst[cb.pix] = take(newidx, slot).to(torch.int32)
        masks = inst.view(1, H, W) == torch.arange(1, N + 1, dtype=torch.int32, device=dev).view(N, 1, 1)
        kept = torch.argsort((~keep).to(torch.uint8), stable=True)[:N]  # kept slots, in order, sync-free
        return masks, classes.index_select(0, kept), scores.index_select(0, kept)

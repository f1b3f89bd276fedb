"""Online self-refinement of the instance targets (docs/method.md §5), on the component engine.

``refine_image_label`` (§5.1): for every image and every class of its image label, the WSSS
foreground of the class is split into 8-connected components (>= ``min_area`` px). Inside each
component: centers = heatmap NMS (``center_threshold`` 0.3, ``nms_kernel`` 41) plus the center
clustering candidates (merge rule of §5.1, added ones marked 1.0 in the heatmap); pixels are grouped
to the nearest center through the predicted offsets; a component without center or with more than
``max_instances`` non-empty instances is skipped. Per instance ``S``: ``(py, px)`` = first (raster)
argmax of the marked heatmap over ``S``, ``s_ctr`` its value, ``s_seg`` = mean over ``S`` of the
softmax probability of the class (absent classes zeroed: never the component's own class);
``s_ctr < center_threshold`` -> ``(py, px)`` = the component's int centroid and ``conf = s_seg``,
else ``conf = s_ctr * s_seg``; clipped to [0, 1]. Targets: a Gaussian (σ) at ``(py, px)`` max-merged
into the class channel, ``weight = conf`` and ``offset = (py - y, px - x)`` on ``S``.

``refine_point`` (§5.2): the WSSS foreground of each labelled class is grouped to the nearest GT
point of that class through the offsets (weight 1, offset to the point). Unlike the authors' code,
points on row 0 / column 0 are kept (their ``y == 0 or x == 0`` padding filter dropped real points,
docs/method.md §12.8); invalid entries are recognised by being outside the image or having a class
outside ``0..C-1`` / the image label.

Both run under ``torch.no_grad()`` on detached tensors, vectorised over the batch: component
labelling (``component_labelling``; OpenCV on the host for CPU tensors, torch on the device
otherwise, ``RefineParams.components_backend``), NMS, clustering merge, grouping, statistics and
Gaussian pasting in torch over all components at once, on the device of the network outputs.
Host synchronisations per call with the torch labelling, whatever the number of components
(counted in ``tests/test_refine_syncs.py``): 1 for ``refine_image_label`` (the labelling's counts
and boxes, which the NMS crop batches need, read in one transfer with upper bounds of the
grouping's sizes, ``components.SlotBounds``) and 1 for ``refine_point``; the statistics stay on the device (``SelfRefinementHook`` reads them when it logs).

The instance count of the skip rule (``#ids > max_instances``) counts the *non-empty* instances of the
component (a center that no pixel votes for is no instance).
"""
import time
from dataclasses import dataclass

import torch

from ..component_engine import (
    COL_CLS, COL_CX, COL_CY, COL_IMG, group_components, label_class_maps, offset_magnitude_mask, take, to_host,
)
from ..component_engine.kernels import AVAILABLE as _TRITON
from ..component_engine.ops import sq_dist
from .gaussian import gaussian_patch, paste_gaussians_, patch_origin

if _TRITON:
    from ..component_engine.kernels.target_writing import write_instance_targets

__all__ = ["RefineParams", "refine_image_label", "refine_point"]


@dataclass
class RefineParams:
    """Self-refinement parameters (``MODEL.BESTIE.REFINE`` and the Gaussian sigma)."""

    center_threshold: float = 0.3
    nms_kernel: int = 41
    max_instances: int = 5
    min_area: int = 50
    sigma: float = 6.0
    components_backend: str = "auto"  # component engine: "auto" | "opencv" | "torch" | "triton"

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.BESTIE.REFINE
        return cls(
            center_threshold=float(r.CENTER_THRESHOLD),
            nms_kernel=int(r.NMS_KERNEL),
            max_instances=int(r.MAX_INSTANCES),
            min_area=int(r.MIN_AREA),
            sigma=float(cfg.BESTIE.INPUT.GAUSSIAN_SIGMA),
            components_backend=str(cfg.MODEL.BESTIE.COMPONENTS_BACKEND),
        )


def _gt_foreground(wsss, image_label, C):
    """``(B, H, W)`` long: ``wsss`` where it is a class ``c+1`` of the image label, else 0."""
    B, H, W = wsss.shape
    lbl = image_label.reshape(B, C) > 0
    valid = (wsss >= 1) & (wsss <= C)
    idx = (wsss - 1).clamp(0, C - 1).reshape(B, H * W)
    gt = lbl.gather(1, idx).reshape(B, H, W)
    return torch.where(valid & gt, wsss, torch.zeros_like(wsss))


def _stats(n_inst, conf_sum, n_skipped, n_comp, B, t0, device):
    """The statistics dict: 0-dim float64 tensors on ``device`` (no host sync; the training hook
    reads them when it logs), plus ``refine_time_s`` (host seconds of the call: on an
    asynchronous device the launch time, not the compute time)."""
    def dev(v):
        return v.double() if torch.is_tensor(v) else torch.full((), float(v), dtype=torch.float64, device=device)

    n_inst, conf_sum, n_skipped, n_comp = (dev(v) for v in (n_inst, conf_sum, n_skipped, n_comp))
    return {
        "refined_instances_per_image": n_inst / max(B, 1),
        "mean_confidence": conf_sum / n_inst.clamp(min=1.0),
        "skipped_component_fraction": n_skipped / n_comp.clamp(min=1.0),
        "refine_time_s": time.perf_counter() - t0,
    }


def _check_image_label_inputs(sem_logits, center, offset):
    B, C, H, W = center.shape
    if sem_logits.shape != (B, C + 1, H, W) or offset.shape != (B, 2, H, W):
        raise ValueError(
            f"shape mismatch: sem_logits {tuple(sem_logits.shape)}, center {tuple(center.shape)}, "
            f"offset {tuple(offset.shape)}"
        )
    if C > 254:
        raise ValueError("at most 254 classes are supported")


def _kept_instances(cb, g, max_instances):
    """``(keep (T,) bool, skip_comp (M+1,) bool)``: the non-empty instances of components that are
    not skipped (no center, or more than ``max_instances`` non-empty instances; row 0: none)."""
    dev = cb.device
    nonempty = g["count"] > 0
    n_inst_comp = torch.zeros(cb.M + 1, dtype=torch.long, device=dev).index_add_(0, g["slot_comp"], nonempty.long())
    skip_comp = (g["n_centers"] == 0) | (n_inst_comp > max_instances)
    skip_comp = torch.cat([torch.ones(1, dtype=torch.bool, device=dev), skip_comp[1:]])  # row 0: none
    return nonempty & ~take(skip_comp, g["slot_comp"]), skip_comp


def _class_probability(cb, sem_logits):
    """``(P,)`` softmax probability of each component pixel's own class (channel ``cls + 1``),
    computed at the component pixels only (absent classes are zeroed in the authors' P, but a
    component's class is always present)."""
    B, C1, H, W = sem_logits.shape
    HW, pix = H * W, cb.pix
    rem, b_p = pix % HW, pix // HW
    cls_p = take(cb.col[COL_CLS], cb.comp_p)
    lidx = (b_p * (C1 * HW) + rem)[None, :] + (torch.arange(C1, device=cb.device) * HW)[:, None]  # (C+1, P)
    lg = take(sem_logits.float(), lidx)
    lg = (lg - lg.amax(0, keepdim=True)).exp_()
    return lg.gather(0, (cls_p + 1)[None])[0] / lg.sum(0)


def _instance_centers(cb, g, s_seg, center_threshold):
    """Per slot ``(py, px, conf)``: the first argmax of the marked heatmap and ``s_ctr * s_seg``,
    or, when ``s_ctr < center_threshold``, the component's int centroid and ``s_seg``."""
    W, HW = cb.W, cb.H * cb.W
    s_ctr, slot_comp = g["hmax"], g["slot_comp"]
    af = g["argmax_flat"] % HW
    low = s_ctr < center_threshold
    py = torch.where(low, take(cb.col[COL_CY], slot_comp), af // W)
    px = torch.where(low, take(cb.col[COL_CX], slot_comp), af % W)
    conf = torch.where(low, s_seg, s_ctr * s_seg).clamp(0.0, 1.0)
    return py, px, conf


def _write_image_label_targets(cb, g, keep, py, px, conf, targets, sigma):
    """Gaussians at the kept instances' centers into ``targets["center"]``; ``weight = conf`` and
    the offsets to the center on every pixel of a kept instance (per-slot values, one gather per
    pixel; zeros elsewhere)."""
    t_center, t_offset, t_weight = targets["center"], targets["offset"], targets["weight"]
    B, C, H, W = t_center.shape
    HW, pix, slot, slot_comp = H * W, cb.pix, g["slot"], g["slot_comp"]
    img_s = take(cb.col[COL_IMG], slot_comp)
    ch = torch.where(keep, img_s * C + take(cb.col[COL_CLS], slot_comp), torch.full_like(img_s, -1))
    if cb.backend == "triton":  # one kernel pair, the same values
        yx = torch.stack([py, px], 1)
        y0, x0 = patch_origin(yx, sigma).unbind(1)
        patch = gaussian_patch(sigma, t_center.device, t_center.dtype)[0]
        write_instance_targets(pix, slot, keep, conf.float(), py, px, ch, y0, x0, patch, t_center, t_offset, t_weight)
        return
    paste_gaussians_(t_center.view(B * C, H, W), ch, torch.stack([py, px], 1), sigma)
    conf_s = torch.where(keep, conf, torch.zeros_like(conf))
    py_s = torch.where(keep, py, torch.full_like(py, -1))
    kp = take(keep, slot)
    rem = pix % HW
    y_p = (rem // W).float()
    x_p = (rem % W).float()
    zero = torch.zeros_like(y_p)
    obase = (pix // HW) * (2 * HW) + rem
    t_weight.view(-1).index_copy_(0, pix, take(conf_s, slot))
    t_offset.view(-1).index_copy_(0, obase, torch.where(kp, take(py_s, slot).float() - y_p, zero))
    t_offset.view(-1).index_copy_(0, obase + HW, torch.where(kp, take(px, slot).float() - x_p, zero))


def refine_image_label(sem_logits, center, offset, image_label, wsss, params=None, cluster=None):
    """Refined instance targets in the image-label setting (docs/method.md §5.1).

    Args:
        sem_logits: ``(B, C+1, H, W)`` semantic logits (softmax is taken here).
        center: ``(B, C, H, W)`` predicted class-wise center heatmaps.
        offset: ``(B, 2, H, W)`` predicted offsets (dy, dx).
        image_label: ``(B, C)`` multi-hot image labels.
        wsss: ``(B, H, W)`` long WSSS maps (0 bg, ``c+1`` class c, 255 ignore).
        params: ``RefineParams`` (defaults if None; ``components_backend`` picks the labelling).
        cluster: ``ClusterParams`` for center clustering, or None to use heatmap peaks only.

    Returns:
        ``(targets, stats)``: ``targets`` = {``center`` (B, C, H, W), ``offset`` (B, 2, H, W),
        ``weight`` (B, H, W) in [0, 1]} (float32, on the outputs' device); ``stats`` = 0-dim float64
        device tensors {``refined_instances_per_image``, ``mean_confidence`` (over refined
        instances), ``skipped_component_fraction`` (components without center or with more than
        ``max_instances`` instances, over all components >= ``min_area``)} and the host float
        ``refine_time_s``.
    """
    t0 = time.perf_counter()
    params = params or RefineParams()
    with torch.no_grad():
        # float32 whatever the network's precision (AMP): the same targets as from float32 maps
        sem_logits, center, offset = (t.detach().float().contiguous() for t in (sem_logits, center, offset))
        _check_image_label_inputs(sem_logits, center, offset)
        B, C, H, W = center.shape
        dev = center.device
        fg = _gt_foreground(wsss.detach().to(dev).long(), image_label.detach().to(dev), C).to(torch.uint8)
        mag = None if cluster is None else offset_magnitude_mask(offset, cluster.offset_threshold)
        cb = label_class_maps(fg, params.min_area, mag, cluster, backend=params.components_backend,
                              peaks_for=(center, params.center_threshold, params.nms_kernel))
        targets = {"center": torch.zeros((B, C, H, W), dtype=torch.float32, device=dev),
                   "offset": torch.zeros((B, 2, H, W), dtype=torch.float32, device=dev),
                   "weight": torch.zeros((B, H, W), dtype=torch.float32, device=dev)}
        if cb.M == 0:
            return targets, _stats(0, 0, 0, 0, B, t0, dev)
        g = group_components(cb, center, offset, threshold=params.center_threshold,
                             nms_kernel=params.nms_kernel, cluster=cluster, values_p=_class_probability(cb, sem_logits))
        keep, skip_comp = _kept_instances(cb, g, params.max_instances)
        s_seg = g["value_mean"]
        py, px, conf = _instance_centers(cb, g, s_seg, params.center_threshold)
        _write_image_label_targets(cb, g, keep, py, px, conf, targets, params.sigma)
        stats = _stats(keep.sum(), (conf.double() * keep).sum(), skip_comp[1:].sum(), cb.M, B, t0, dev)
        return targets, stats


def _sorted_points(points, image_label, H, W):
    """The points as ``(grp, py, px, ok)`` long ``(K,)``, sorted: valid points first, by (image,
    class) group ``b*C + c``, then in the given order; and ``n_grp`` ``(B*C,)`` valid points per group."""
    B, C = image_label.shape
    dev = image_label.device
    pts = []
    for b, p in enumerate(points):  # tagged with their image where they are (the loader: host)
        p = torch.as_tensor(p).reshape(-1, 3).long()
        pts.append(torch.cat([torch.full((p.shape[0], 1), b, dtype=torch.long, device=p.device), p], 1))
    if len({t.device for t in pts}) > 1:
        pts = [t.to(dev) for t in pts]
    # (K, 4) [b, y, x, c]: one host -> device copy for the batch, queued without a host sync
    pts = torch.cat(pts, 0).to(dev, non_blocking=True)
    pb, py, px, pc = pts.unbind(1)
    ok = (py >= 0) & (py < H) & (px >= 0) & (px < W) & (pc >= 0) & (pc < C)
    ok = ok & (image_label[pb, pc.clamp(0, C - 1)] > 0)
    grp = pb * C + pc.clamp(0, C - 1)  # (image, class) group
    K = pts.shape[0]
    key = torch.where(ok, grp * (K + 1) + torch.arange(K, device=dev), torch.full_like(grp, 1 << 62))
    order = torch.argsort(key)
    grp, py, px, ok = grp[order], py[order], px[order], ok[order]
    n_grp = torch.zeros(B * C, dtype=torch.long, device=dev).index_add_(0, grp, ok.long())
    return grp, py, px, n_grp


def _nearest_point(offset, pix, g_p, grp, py, px, n_grp, kmax, n_valid):
    """``(sel, tab_y, tab_x)``: for every pixel ``pix`` of group ``g_p``, the flat index
    ``g*kmax + j`` of the group's point nearest to its vote (first on ties) in the padded point
    tables ``(B*C, kmax)``."""
    dev = offset.device
    _, _, H, W = offset.shape
    HW = H * W
    start = torch.cumsum(n_grp, 0) - n_grp
    vg = grp[:n_valid]  # the valid points are the first n_valid after sorting
    rank = torch.arange(n_valid, device=dev) - start[vg]
    tab_y = torch.full((n_grp.shape[0], kmax), float("inf"), dtype=torch.float32, device=dev)
    tab_x = torch.full((n_grp.shape[0], kmax), float("inf"), dtype=torch.float32, device=dev)
    tab_y[vg, rank] = py[:n_valid].float()
    tab_x[vg, rank] = px[:n_valid].float()
    rem = pix % HW
    off_flat = offset.reshape(-1)
    obase = (pix - rem) * 2 + rem  # b * 2HW + rem
    vy = (rem // W).float() + take(off_flat, obase)
    vx = (rem % W).float() + take(off_flat, obase + HW)
    j = torch.zeros_like(pix)
    chunk = max(1, (1 << 22) // kmax)
    for s in range(0, pix.shape[0], chunk):
        gs = g_p[s:s + chunk]
        d = sq_dist(tab_y.index_select(0, gs), tab_x.index_select(0, gs), vy[s:s + chunk, None],
                    vx[s:s + chunk, None])
        j[s:s + chunk] = d.argmin(1)
    return g_p * kmax + j, tab_y, tab_x


def refine_point(offset, points, image_label, wsss):
    """Refined instance targets in the point setting (docs/method.md §5.2).

    Args:
        offset: ``(B, 2, H, W)`` predicted offsets (dy, dx).
        points: list of B ``(K_b, 3)`` long tensors ``[y, x, c]`` (GT points, crop pixels). Entries
            outside the image, with a class outside ``0..C-1`` or not in the image label are ignored;
            points on row 0 / column 0 are kept.
        image_label: ``(B, C)`` multi-hot.
        wsss: ``(B, H, W)`` long WSSS maps.

    Returns:
        ``(targets, stats)``: ``targets`` = {``offset`` (B, 2, H, W), ``weight`` (B, H, W) in {0, 1}};
        every WSSS foreground pixel of a labelled class with at least one point of that class gets
        weight 1 and the offset to the GT point nearest to its vote ``p + offset(p)``.
        ``stats``: ``refined_instances_per_image`` (points that got pixels), ``mean_confidence`` (1.0,
        0 without instance), ``skipped_component_fraction`` (fraction of (image, labelled class) WSSS
        foregrounds left unlabelled because the class has no point) as 0-dim device tensors, and
        ``refine_time_s``. One host sync (the point and pixel counts).
    """
    t0 = time.perf_counter()
    with torch.no_grad():
        offset = offset.detach().float()
        B, _, H, W = offset.shape
        dev = offset.device
        HW = H * W
        image_label = image_label.detach().to(dev).reshape(B, -1)
        C = image_label.shape[1]
        if len(points) != B:
            raise ValueError(f"points must hold one (K, 3) tensor per image ({B}), got {len(points)}")
        fg_flat = _gt_foreground(wsss.detach().to(dev).long(), image_label, C).reshape(B, HW)  # 0 / c+1
        grp, py, px, n_grp = _sorted_points(points, image_label, H, W)
        present = torch.zeros((B, C + 1), dtype=torch.bool, device=dev)
        present.scatter_(1, fg_flat, torch.ones_like(fg_flat, dtype=torch.bool))
        has_fg = present[:, 1:].reshape(-1)
        # pixels to label: foreground of a class that has points
        g_map = torch.where(fg_flat > 0, torch.arange(B, device=dev)[:, None] * C + fg_flat - 1,
                            torch.zeros_like(fg_flat))
        lab_ok = (fg_flat > 0) & (take(n_grp, g_map) > 0)
        counts = to_host(torch.stack([n_grp.max(), n_grp.sum(), lab_ok.sum()]))  # the one host sync (B * C > 0)
        kmax, n_valid, P = (int(v) for v in counts)
        pix = torch.nonzero_static(lab_ok.reshape(-1), size=P).squeeze(1)
        t_offset = torch.zeros((B, 2, H, W), dtype=torch.float32, device=dev)
        t_weight = torch.zeros((B, H, W), dtype=torch.float32, device=dev)
        targets = {"offset": t_offset, "weight": t_weight}
        n_unlab = (has_fg & (n_grp == 0)).sum()
        if pix.numel() == 0 or kmax == 0:
            return targets, _stats(0, 0, n_unlab, has_fg.sum(), B, t0, dev)
        sel, tab_y, tab_x = _nearest_point(offset, pix, take(g_map, pix), grp, py, px, n_grp, kmax, n_valid)
        rem = pix % HW
        obase = (pix - rem) * 2 + rem
        t_weight.view(-1).index_fill_(0, pix, 1.0)
        t_offset.view(-1).index_copy_(0, obase, take(tab_y, sel) - (rem // W).float())
        t_offset.view(-1).index_copy_(0, obase + HW, take(tab_x, sel) - (rem % W).float())
        used = torch.zeros(B * C * kmax, dtype=torch.bool, device=dev)
        used.index_fill_(0, sel, True)
        n_inst = used.sum()
        return targets, _stats(n_inst, n_inst.double(), n_unlab, has_fg.sum(), B, t0, dev)

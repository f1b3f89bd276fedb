"""Reference decoding for benchmarks and tests only: a literal, per-component re-statement of
docs/method.md §6 (the authors' procedure), written from the spec.

For every predicted class and every 8-connected component of it (>= ``min_area``), the heatmap is
restricted to the component over the *full image*, one full-image ``k x k`` max-pool finds the
centers, the clustering candidates are merged (``cluster_centers`` / ``merge_centers``, one region at
a time, defined here), and every
pixel of the image is grouped before the result is masked to the component. It is slow on purpose
(one full-image max-pool and K x H x W distance per component) and is what
``bestie_d2.modeling.post_processing.decode_instances`` must reproduce.

Also holds ``make_synthetic_outputs``, the synthetic network outputs used by the decode benchmark
and tests.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bestie_d2.component_engine.clustering import far_from_all, offset_magnitude_mask, regions_4conn

__all__ = ["reference_decode", "cluster_centers", "merge_centers", "make_synthetic_outputs"]


def cluster_centers(offset, region, heatmap, params):
    """Candidate centers of one region from the offset map (one region at a time).

    Args:
        offset: ``(2, H, W)`` float (dy, dx).
        region: ``(H, W)`` bool, the component the candidates must come from.
        heatmap: ``(H, W)`` the center heatmap *restricted to the region* (0 outside); a candidate is
            kept only where ``heatmap > params.min_heatmap``.
        params: ``ClusterParams``.

    Returns:
        ``(K, 2)`` long ``(y, x)`` on ``offset``'s device, ordered by the raster position of the
        first pixel of each magnitude region.
    """
    with torch.no_grad():
        mask = offset_magnitude_mask(offset.detach(), params.offset_threshold) & region.to(offset.device).bool()
        m = mask.to(torch.uint8).cpu().numpy()
        n, _, areas, cy, cx, first = regions_4conn(m)
        keep = np.flatnonzero(params.area_ok(areas))
        keep = keep[keep > 0]
        keep = keep[np.argsort(first[keep], kind="stable")]
        pts = torch.from_numpy(np.stack([cy[keep], cx[keep]], axis=1).reshape(-1, 2)).to(offset.device)
        if pts.shape[0] == 0:
            return pts
        hv = heatmap.detach()[pts[:, 0], pts[:, 1]]
        return pts[hv > params.min_heatmap]


def merge_centers(peaks, candidates, heatmap, params):
    """Merge clustering candidates into the heatmap peaks (docs/method.md §5.1 merge rule).

    If there is no peak every candidate is added; otherwise a candidate is added only if its L2
    distance to every peak is ``> params.merge_distance``. The heatmap is set to 1.0 at every added
    candidate (in place: pass the restricted per-component copy). Returns ``(centers (K, 2) long,
    heatmap)`` with the peaks first, then the added candidates in their order.
    """
    peaks = peaks.reshape(-1, 2).long()
    candidates = candidates.reshape(-1, 2).long().to(peaks.device)
    if candidates.shape[0] == 0:
        return peaks, heatmap
    if peaks.shape[0] == 0:
        add = candidates
    else:
        d2 = ((candidates[:, None, :] - peaks[None, :, :]) ** 2).sum(-1)  # (Q, P), exact integers
        add = candidates[far_from_all(d2, params.merge_distance).all(1)]
    if add.shape[0]:
        heatmap[add[:, 0], add[:, 1]] = 1.0
    return torch.cat([peaks, add], 0), heatmap


def reference_decode(sem_prob, center, offset, *, center_threshold=0.1, nms_kernel=41, min_area=50,
                     cluster=None):
    """Same contract as ``decode_instances``; see the module docstring."""
    with torch.no_grad():
        C1, H, W = sem_prob.shape
        S = sem_prob.argmax(0)
        S_np = S.cpu().numpy().astype(np.uint8)
        ys = torch.arange(H, dtype=offset.dtype, device=offset.device).view(H, 1).expand(H, W)
        xs = torch.arange(W, dtype=offset.dtype, device=offset.device).view(1, W).expand(H, W)
        vote_y = ys + offset[0]
        vote_x = xs + offset[1]
        masks, classes, scores = [], [], []
        for v in np.unique(S_np):
            if v == 0:
                continue
            c = int(v) - 1
            n, lab, stats, _ = cv2.connectedComponentsWithStats((S_np == v).astype(np.uint8), connectivity=8)
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] < min_area:
                    continue
                K = torch.from_numpy(lab == k).to(center.device)
                HK = center[c] * K
                # center NMS over the full image (authors: find_instance_center on the masked map)
                t = torch.where(HK > center_threshold, HK, torch.full_like(HK, -1.0))
                pooled = F.max_pool2d(t[None, None], nms_kernel, 1, (nms_kernel - 1) // 2)[0, 0]
                peaks = ((t == pooled) & (t > 0)).nonzero()
                if cluster is not None:
                    cands = cluster_centers(offset, K, HK, cluster)
                    peaks, HK = merge_centers(peaks, cands, HK, cluster)
                if peaks.shape[0] == 0:
                    ids = K.long()
                else:
                    cy = peaks[:, 0].to(offset.dtype).view(-1, 1, 1)
                    cx = peaks[:, 1].to(offset.dtype).view(-1, 1, 1)
                    d = (cy - vote_y[None]) ** 2 + (cx - vote_x[None]) ** 2  # (K, H, W)
                    ids = (d.argmin(0) + 1) * K
                for i in torch.unique(ids).tolist():
                    if i == 0:
                        continue
                    m = ids == i
                    s_ctr = HK[m].max()
                    s_seg = sem_prob[c + 1][m].mean()
                    if s_ctr >= 1:
                        s_ctr = s_seg
                    masks.append(m)
                    classes.append(c)
                    scores.append(float(s_ctr * s_seg))
        if not masks:
            return (torch.zeros((0, H, W), dtype=torch.bool), torch.zeros(0, dtype=torch.long),
                    torch.zeros(0))
        return torch.stack(masks), torch.tensor(classes, dtype=torch.long), torch.tensor(scores)


def make_synthetic_outputs(H, W, *, num_classes=20, num_instances=10, num_present=3, seed=0,
                           radius=(18, 55), sigma=6.0, noise=0.0, touching=True):
    """Synthetic network outputs with known instances.

    Instances are ellipses of ``num_present`` classes (one pair of touching same-class instances
    when ``touching``); returns ``(sem_prob (C+1,H,W), center (C,H,W), offset (2,H,W), inst (H,W)
    long instance map 0 = bg, inst_class (N,) long)``. With ``noise > 0`` the heatmap gets smooth
    random bumps (extra peaks), the offsets get Gaussian noise and the semantic map gets noisy
    class flips (small spurious components), i.e. "random-ish" outputs.
    """
    g = np.random.default_rng(seed)
    C = num_classes
    cls_present = g.choice(C, size=num_present, replace=False)
    inst = np.zeros((H, W), dtype=np.int64)
    yy, xx = np.mgrid[0:H, 0:W]
    centers, inst_cls, radii = [], [], []
    for i in range(num_instances):
        ry, rx = g.uniform(*radius, size=2)
        if touching and i == 1:
            # a second instance of the first instance's class, overlapping it by 2 px horizontally
            (cy0, cx0), (ry0, rx0) = centers[0], radii[0]
            ry = min(ry, ry0)
            cy = cy0
            cx = cx0 + rx0 + rx - 2
            if cx + rx >= W:
                cx = cx0 - rx0 - rx + 2
            c = inst_cls[0]
        else:
            cy = g.uniform(ry, H - ry)
            cx = g.uniform(rx, W - rx)
            c = cls_present[i % num_present]
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        inst[m] = i + 1
        centers.append((cy, cx))
        radii.append((ry, rx))
        inst_cls.append(c)
    inst_cls = np.array(inst_cls)
    ids = [i for i in range(1, num_instances + 1) if (inst == i).any()]
    # relabel the surviving (possibly occluded) instances 1..N and use their true centroids
    inst2 = np.zeros_like(inst)
    out_cls, cents = [], []
    for n, i in enumerate(ids, 1):
        m = inst == i
        inst2[m] = n
        out_cls.append(inst_cls[i - 1])
        cents.append((int(yy[m].mean()), int(xx[m].mean())))
    inst = inst2
    out_cls = np.array(out_cls, dtype=np.int64)

    sem = np.zeros((H, W), dtype=np.int64)
    for n in range(1, len(out_cls) + 1):
        sem[inst == n] = out_cls[n - 1] + 1
    logits = g.normal(0, 0.3, size=(C + 1, H, W)).astype(np.float32)
    np.put_along_axis(logits, sem[None], np.take_along_axis(logits, sem[None], 0) + 4.0, 0)
    if noise > 0:
        # spurious class blobs
        for _ in range(6):
            r = int(g.integers(3, 10))
            y, x = int(g.integers(r, H - r)), int(g.integers(r, W - r))
            c = int(g.choice(cls_present)) + 1
            cv2.circle(logits[c], (x, y), r, 9.0, -1)
    sem_prob = torch.softmax(torch.from_numpy(logits), 0)

    center = np.zeros((C, H, W), dtype=np.float32)
    offset = np.zeros((2, H, W), dtype=np.float32)
    for n, (cy, cx) in enumerate(cents, 1):
        c = out_cls[n - 1]
        gmap = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)).astype(np.float32)
        np.maximum(center[c], gmap, out=center[c])
        m = inst == n
        offset[0][m] = cy - yy[m]
        offset[1][m] = cx - xx[m]
    if noise > 0:
        bumps = g.random((C, H // 16 + 1, W // 16 + 1)).astype(np.float32)
        bumps = torch.nn.functional.interpolate(torch.from_numpy(bumps)[None], size=(H, W), mode="bicubic",
                                                align_corners=False)[0].numpy()
        center = center + noise * bumps
        offset = offset + g.normal(0, 2.0 * noise, size=offset.shape).astype(np.float32)
    return (sem_prob, torch.from_numpy(center), torch.from_numpy(offset), torch.from_numpy(inst),
            torch.from_numpy(out_cls))

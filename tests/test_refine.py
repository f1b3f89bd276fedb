"""Self-refinement (docs/method.md §5) on hand-built network outputs, and the torch Gaussian pasting."""
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.modeling.gaussian import gaussian_kernel, paste_gaussians_
from bestie_d2.component_engine import ClusterParams
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label, refine_point

C = 3
STAT_KEYS = {"refined_instances_per_image", "mean_confidence", "skipped_component_fraction", "refine_time_s"}


def grid(h, w):
    return torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")


def gaussian_at(h, w, cy, cx, sigma=6.0):
    yy, xx = grid(h, w)
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2).float() / (2 * sigma ** 2))


def logits_for(wsss, prob, num_classes=C):
    """Logits whose softmax is ``prob`` on the WSSS class of each pixel and uniform elsewhere."""
    h, w = wsss.shape
    p = torch.full((num_classes + 1, h, w), (1 - prob) / num_classes)
    p.scatter_(0, wsss.clamp(0, num_classes)[None], prob)
    return p.log()


def pasted(h, w, points, sigma=6.0):
    m = torch.zeros(1, h, w)
    pts = torch.tensor(points).reshape(-1, 2)
    return paste_gaussians_(m, torch.zeros(len(pts), dtype=torch.long), pts, sigma)[0]


def run(wsss, center, offset, label, prob=0.7, params=None, cluster=None):
    """Single-image call: adds the batch dim."""
    logits = logits_for(wsss, prob)
    t, st = refine_image_label(logits[None], center[None], offset[None], torch.tensor([label]).float(),
                               wsss[None], params or RefineParams(), cluster)
    assert set(st) == STAT_KEYS
    return {k: v[0] for k, v in t.items()}, st


def offsets_to(h, w, assign):
    """Offsets from an ``(H, W)`` map of target points (2, H, W) given as (ty, tx) tensors."""
    yy, xx = grid(h, w)
    ty, tx = assign
    return torch.stack([(ty - yy).float(), (tx - xx).float()])


# --------------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------------
def test_gaussian_kernel():
    g = gaussian_kernel(6)
    assert g.shape == (39, 39) and g[19, 19] == 1.0 and g.argmax() == 19 * 39 + 19
    assert torch.allclose(g, g.t()) and torch.allclose(g, g.flip(0))


def test_paste_channels_and_skips():
    m = torch.zeros(3, 20, 20)
    paste_gaussians_(m, torch.tensor([0, 2, 1, -1, 5]), torch.tensor([[10, 9], [19, 0], [25, 3], [4, 4], [4, 4]]), 2)
    assert m[0, 10, 9] == 1.0 and m[2, 19, 0] == 1.0
    assert (m[2] > 0).sum() == 8 * 8  # clipped at the border
    assert m[1].sum() == 0  # point outside the map
    assert (m[0] > 0).sum() == 15 * 15  # (6σ+3)² patch, fully inside


# --------------------------------------------------------------------------------------------
# image-label refinement (§5.1)
# --------------------------------------------------------------------------------------------
def test_single_instance_confidence_is_center_times_semantic():
    h, w = 64, 80
    yy, xx = grid(h, w)
    a = (yy - 30) ** 2 + (xx - 30) ** 2 <= 14 ** 2
    wsss = a.long() * 1  # class 0
    center = torch.zeros(C, h, w)
    center[0] = 0.8 * gaussian_at(h, w, 30, 30)
    center[1] = 0.9  # another class: never used for class 0's components
    offset = offsets_to(h, w, (torch.full((h, w), 30), torch.full((h, w), 30)))
    t, st = run(wsss, center, offset, [1, 0, 0], prob=0.7)
    assert torch.allclose(t["weight"][a], torch.tensor(0.8 * 0.7), atol=1e-5)
    assert (t["weight"][~a] == 0).all()
    assert torch.equal(t["offset"][:, a], offset[:, a]) and (t["offset"][:, ~a] == 0).all()
    assert torch.equal(t["center"][0], pasted(h, w, [[30, 30]]))
    assert (t["center"][1:] == 0).all()
    assert st["refined_instances_per_image"] == 1.0
    assert st["mean_confidence"] == pytest.approx(0.56, abs=1e-5)
    assert st["skipped_component_fraction"] == 0.0


def test_two_touching_instances_in_one_component():
    h, w = 64, 96
    yy, xx = grid(h, w)
    a = (yy - 30) ** 2 + (xx - 30) ** 2 <= 14 ** 2
    b = ((yy - 30) ** 2 + (xx - 56) ** 2 <= 14 ** 2) & ~a
    wsss = (a | b).long() * 2  # class 1, one 8-connected component
    center = torch.zeros(C, h, w)
    center[1] = torch.maximum(0.9 * gaussian_at(h, w, 30, 30), 0.6 * gaussian_at(h, w, 30, 56))
    tx = torch.where(b, torch.tensor(56), torch.tensor(30))
    offset = offsets_to(h, w, (torch.full((h, w), 30), tx))
    t, st = run(wsss, center, offset, [0, 1, 0], prob=0.5)
    assert torch.allclose(t["weight"][a], torch.tensor(0.45), atol=1e-5)
    assert torch.allclose(t["weight"][b], torch.tensor(0.30), atol=1e-5)
    assert torch.equal(t["offset"][:, a | b], offset[:, a | b])
    assert torch.equal(t["center"][1], pasted(h, w, [[30, 30], [30, 56]]))
    assert st["refined_instances_per_image"] == 2.0


@pytest.mark.parametrize("n,refined", [(5, True), (6, False)])
def test_more_than_max_instances_skips_component(n, refined):
    h, w = 64, 200
    yy, xx = grid(h, w)
    peaks_x = [25 + 30 * i for i in range(n)]
    comp = (yy >= 22) & (yy < 42) & (xx >= 10) & (xx < peaks_x[-1] + 15)
    wsss = comp.long() * 3  # class 2
    center = torch.zeros(C, h, w)
    for px in peaks_x:
        center[2] = torch.maximum(center[2], 0.8 * gaussian_at(h, w, 32, px))
    nearest = torch.tensor(peaks_x)[(xx[..., None] - torch.tensor(peaks_x)).abs().argmin(-1)]
    offset = offsets_to(h, w, (torch.full((h, w), 32), nearest))
    t, st = run(wsss, center, offset, [0, 0, 1])
    if refined:
        assert torch.allclose(t["weight"][comp], torch.tensor(0.8 * 0.7), atol=1e-5)
        assert torch.equal(t["center"][2], pasted(h, w, [[32, px] for px in peaks_x]))
        assert st["refined_instances_per_image"] == n and st["skipped_component_fraction"] == 0.0
    else:
        assert (t["weight"] == 0).all() and (t["center"] == 0).all() and (t["offset"] == 0).all()
        assert st["refined_instances_per_image"] == 0 and st["skipped_component_fraction"] == 1.0


def test_low_center_falls_back_to_component_centroid():
    h, w = 64, 100
    yy, xx = grid(h, w)
    comp = (yy >= 20) & (yy <= 40) & (xx >= 10) & (xx <= 90)  # int centroid (30, 50)
    wsss = comp.long()
    center = torch.zeros(C, h, w)
    center[0] = 0.9 * gaussian_at(h, w, 30, 30)
    center[0, 30, 75] = 0.5  # a second peak; its own pixel votes for the first one
    right = comp & (xx >= 60)
    tx = torch.where(right, torch.tensor(75), torch.tensor(30))
    tx[30, 75] = 30
    offset = offsets_to(h, w, (torch.full((h, w), 30), tx))
    t, st = run(wsss, center, offset, [1, 0, 0], prob=0.6)
    s_b = right.clone()
    s_b[30, 75] = False
    s_a = comp & ~s_b
    # instance B: max heatmap over it < 0.3 -> center at the component centroid, conf = s_seg
    assert torch.allclose(t["weight"][s_b], torch.tensor(0.6), atol=1e-5)
    assert (t["offset"][0][s_b] == (30 - yy[s_b])).all() and (t["offset"][1][s_b] == (50 - xx[s_b])).all()
    # instance A keeps its own peak: conf = 0.9 * 0.6
    assert torch.allclose(t["weight"][s_a], torch.tensor(0.54), atol=1e-5)
    assert (t["offset"][1][s_a] == (30 - xx[s_a])).all()
    assert torch.equal(t["center"][0], pasted(h, w, [[30, 30], [30, 50]]))
    assert st["mean_confidence"] == pytest.approx((0.54 + 0.6) / 2, abs=1e-5)


def test_clustering_center_is_marked():
    h, w = 64, 64
    yy, xx = grid(h, w)
    a = (yy - 30) ** 2 + (xx - 32) ** 2 <= 15 ** 2
    wsss = a.long() * 2
    center = torch.full((C, h, w), 0.1)  # no heatmap peak above 0.3
    offset = offsets_to(h, w, (torch.full((h, w), 30), torch.full((h, w), 32)))
    t, st = run(wsss, center, offset, [0, 1, 0], prob=0.8, cluster=ClusterParams())
    # marked candidate: s_ctr = 1.0 -> conf = s_seg
    assert torch.allclose(t["weight"][a], torch.tensor(0.8), atol=1e-5)
    assert torch.equal(t["center"][1], pasted(h, w, [[30, 32]]))
    # without clustering there is no center at all: the component is skipped
    t, st = run(wsss, center, offset, [0, 1, 0], prob=0.8, cluster=None)
    assert (t["weight"] == 0).all() and st["skipped_component_fraction"] == 1.0


def test_only_labelled_classes_and_large_components():
    h, w = 64, 64
    yy, xx = grid(h, w)
    wsss = torch.zeros(h, w, dtype=torch.long)
    big = (yy - 20) ** 2 + (xx - 20) ** 2 <= 10 ** 2
    other = (yy - 45) ** 2 + (xx - 45) ** 2 <= 10 ** 2
    small = (yy >= 55) & (yy < 61) & (xx < 8)  # 48 px < 50
    wsss[big] = 1
    wsss[other] = 2  # class 1: not in the image label
    wsss[small] = 1
    wsss[0, :] = 255
    center = torch.zeros(C, h, w)
    center[0] = 0.5 * gaussian_at(h, w, 20, 20) + 0.5 * gaussian_at(h, w, 58, 3)
    center[1] = 0.5 * gaussian_at(h, w, 45, 45)
    offset = torch.zeros(2, h, w)
    t, st = run(wsss, center, offset, [1, 0, 0])
    assert (t["weight"][big] > 0).all()
    assert (t["weight"][~big] == 0).all()
    assert st["refined_instances_per_image"] >= 1


def test_batched_equals_single_images():
    h, w = 48, 64
    yy, xx = grid(h, w)
    imgs = []
    for b, (cy, cx, c) in enumerate([(20, 20, 0), (25, 40, 2), (24, 30, 1)]):
        wsss = (((yy - cy) ** 2 + (xx - cx) ** 2) <= 12 ** 2).long() * (c + 1)
        center = torch.zeros(C, h, w)
        center[c] = (0.5 + 0.2 * b) * gaussian_at(h, w, cy, cx)
        offset = offsets_to(h, w, (torch.full((h, w), cy), torch.full((h, w), cx))) + 0.3 * torch.randn(2, h, w)
        label = [0, 0, 0]
        label[c] = 1
        imgs.append((wsss, center, offset, label))
    logits = torch.stack([logits_for(i[0], 0.6 + 0.1 * k) for k, i in enumerate(imgs)])
    args = [torch.stack([i[k] for i in imgs]) for k in range(3)]
    label = torch.tensor([i[3] for i in imgs]).float()
    t, st = refine_image_label(logits, args[1], args[2], label, args[0], RefineParams(), ClusterParams())
    for b, i in enumerate(imgs):
        tb, _ = refine_image_label(logits[b:b + 1], i[1][None], i[2][None], label[b:b + 1], i[0][None],
                                   RefineParams(), ClusterParams())
        for k in t:
            assert torch.equal(t[k][b], tb[k][0]), k
    assert st["refined_instances_per_image"] == 1.0


def test_params_from_config(bestie_cfg):
    cfg = bestie_cfg
    cfg.MODEL.BESTIE.REFINE.MAX_INSTANCES = 7
    cfg.BESTIE.INPUT.GAUSSIAN_SIGMA = 8.0
    p = RefineParams.from_config(cfg)
    assert p == RefineParams(center_threshold=0.3, nms_kernel=41, max_instances=7, min_area=50, sigma=8.0)


# --------------------------------------------------------------------------------------------
# point refinement (§5.2)
# --------------------------------------------------------------------------------------------
def test_point_refinement_groups_to_nearest_point_through_offsets():
    h, w = 64, 64
    yy, xx = grid(h, w)
    fg = (yy >= 10) & (yy < 50) & (xx < 60)
    wsss = fg.long()  # class 0
    wsss[55:, :10] = 2  # class 1 foreground without any point
    # left half votes for the point on row 0, right half for (30, 50); the pixel (20, 45) is
    # closer to (30, 50) by position but votes for (0, 5)
    to_a = (xx < 30).clone()
    to_a[20, 45] = True
    ty = torch.where(to_a, torch.tensor(0), torch.tensor(30))
    tx = torch.where(to_a, torch.tensor(5), torch.tensor(50))
    offset = offsets_to(h, w, (ty, tx)) + 0.4 * torch.rand(2, h, w) - 0.2
    points = [torch.tensor([[0, 5, 0], [30, 50, 0], [40, 40, 2], [-1, -1, -1]])]
    label = torch.tensor([[1.0, 1.0, 0.0]])
    t, st = refine_point(offset[None], points, label, wsss[None])
    assert set(t) == {"offset", "weight"} and set(st) == STAT_KEYS
    assert (t["weight"][0][fg] == 1).all() and (t["weight"][0][~fg] == 0).all()
    exp = offsets_to(h, w, (ty, tx))
    assert torch.equal(t["offset"][0][:, fg], exp[:, fg])
    assert (t["offset"][0][:, ~fg] == 0).all()
    assert t["offset"][0][:, 20, 45].tolist() == [-20.0, -40.0]  # to the point on row 0
    assert st["refined_instances_per_image"] == 2.0 and st["mean_confidence"] == 1.0
    assert st["skipped_component_fraction"] == 0.5  # class 1 has foreground but no point


def test_point_refinement_without_points():
    h, w = 32, 32
    wsss = torch.ones(1, h, w, dtype=torch.long)
    t, st = refine_point(torch.zeros(1, 2, h, w), [torch.zeros((0, 3), dtype=torch.long)],
                         torch.tensor([[1.0, 0, 0]]), wsss)
    assert (t["weight"] == 0).all() and st["refined_instances_per_image"] == 0.0

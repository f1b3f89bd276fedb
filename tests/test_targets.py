"""Pseudo-label generation (docs/method.md §2) on hand-built WSSS maps, and the Gaussian paster it
shares with self-refinement checked against a literal numpy statement of the kernel."""
import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.data.target_generator import make_pseudo_targets
from bestie_d2.modeling.gaussian import gaussian_kernel, paste_gaussians_, paste_gaussians_numpy


def gaussian_patch(sigma):
    """Reference kernel in numpy: ``exp(-(dx² + dy²) / 2σ²)`` on ``(6σ+3)²``, centre ``3σ+1``, float32."""
    size = int(6 * sigma + 3)
    ax = np.arange(size, dtype=np.float64) - (3 * sigma + 1)
    return np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2.0 * sigma * sigma)).astype(np.float32)


def paste_gaussians(center_map, points_yx, sigma):
    """Reference paster, one point at a time in numpy (clipped, max-merged, outside points skipped)."""
    g = gaussian_patch(sigma)
    size, c0 = g.shape[0], 3 * float(sigma) + 1
    H, W = center_map.shape
    for y, x in np.asarray(points_yx, dtype=np.int64).reshape(-1, 2):
        if y < 0 or x < 0 or y >= H or x >= W:
            continue
        y0, x0 = int(round(y - c0)), int(round(x - c0))
        ya, yb, xa, xb = max(0, y0), min(H, y0 + size), max(0, x0), min(W, x0 + size)
        dst = center_map[ya:yb, xa:xb]
        np.maximum(dst, g[ya - y0:yb - y0, xa - x0:xb - x0], out=dst)
    return center_map


def paste(center_map, points_yx, sigma):
    """The package's paster on a numpy map (as the target generator calls it)."""
    pts = torch.from_numpy(np.asarray(points_yx, dtype=np.int64).reshape(-1, 2))
    paste_gaussians_(torch.from_numpy(center_map)[None], torch.zeros(len(pts), dtype=torch.long), pts, sigma)
    return center_map

C = 3


def _label(*classes):
    v = np.zeros(C, dtype=np.float32)
    v[list(classes)] = 1
    return v


def _targets(sem, points, label, supervision="image", **kw):
    return make_pseudo_targets(
        sem, np.asarray(points, dtype=np.int64).reshape(-1, 3), label,
        num_classes=C, supervision=supervision, **kw,
    )


@pytest.mark.parametrize("sigma", [1, 2, 2.5, 3, 4, 5, 6, 8, 10])
def test_kernel_and_paster_agree_exactly_with_numpy(sigma):
    assert np.array_equal(gaussian_kernel(sigma).numpy(), gaussian_patch(sigma))
    rng = np.random.default_rng(int(sigma * 10))
    pts = np.concatenate([rng.integers(-5, 75, size=(30, 2)), [[0, 0], [69, 59], [-1, 3], [70, 0]]])
    want = paste_gaussians(np.zeros((70, 60), np.float32), pts, sigma)
    assert np.array_equal(paste(np.zeros((70, 60), np.float32), pts, sigma), want)
    # the data loader's numpy sibling (used by the target generator) agrees exactly too, also when
    # merging into a map that already holds values
    assert np.array_equal(paste_gaussians_numpy(np.zeros((70, 60), np.float32), pts, sigma), want)
    base = rng.random((70, 60)).astype(np.float32)
    assert np.array_equal(paste_gaussians_numpy(base.copy(), pts, sigma), paste(base.copy(), pts, sigma))


def test_gaussian_patch_shape_and_peak():
    g = gaussian_kernel(6).numpy()
    assert g.shape == (39, 39) and g.dtype == np.float32
    assert g[19, 19] == 1.0 and g.max() == 1.0
    assert np.unravel_index(g.argmax(), g.shape) == (19, 19)
    np.testing.assert_allclose(g[19, 19 + 6], np.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1, ::-1])
    assert gaussian_kernel(2).shape == (15, 15)


def test_paste_gaussians_clipped_at_border_and_max_merged():
    m = np.zeros((30, 40), np.float32)
    paste(m, [[0, 0], [29, 39], [-5, 3], [10, 100]], sigma=2)  # last two: skipped
    g = gaussian_kernel(2).numpy()  # 15x15, centre 7
    np.testing.assert_array_equal(m[:8, :8], g[7:, 7:])
    np.testing.assert_array_equal(m[22:, 32:], g[:8, :8])
    assert m[0, 0] == 1 and m[29, 39] == 1
    assert m[10:20, 10:30].max() == 0  # nothing from the skipped points
    # max-merge, not sum
    m2 = np.zeros((20, 20), np.float32)
    paste(m2, [[10, 10], [10, 11]], sigma=2)
    assert m2.max() == 1.0
    np.testing.assert_allclose(m2[10, 10:12], [1, 1])


def _blob_map():
    """Class 0 (value 1): a 10x10 square A at rows 5..14, cols 5..14 and a 10x10 square B at rows
    5..14, cols 30..39; class 1 (value 2): an 8x10 block D at rows 25..32, cols 5..14;
    class 0: a small 5x5 square S (25 px) at rows 40..44, cols 40..44."""
    sem = np.zeros((50, 60), np.uint8)
    sem[5:15, 5:15] = 1
    sem[5:15, 30:40] = 1
    sem[25:33, 5:15] = 2
    sem[40:45, 40:45] = 1
    return sem


def test_one_cue_accepted_with_centroid_gaussian_and_offsets():
    sem = _blob_map()
    sem[14, 14] = 0  # make A asymmetric: centroid float, truncated
    t = _targets(sem, [[6, 6, 0]], _label(0))
    assert t["center"].shape == (C, 50, 60) and t["center"].dtype == np.float32
    assert t["offset"].shape == (2, 50, 60) and t["offset"].dtype == np.float32
    assert t["weight"].shape == (50, 60) and t["weight"].dtype == np.float32
    ys, xs = np.nonzero(sem == 1)
    a = (ys < 15) & (xs < 15)
    cy, cx = int(ys[a].mean()), int(xs[a].mean())  # int-truncated float centroid
    assert (cy, cx) == (9, 9)
    w = t["weight"]
    assert w[5:15, 5:15].sum() == 99 and w.sum() == 99  # only A is labelled
    assert set(np.unique(w)) == {0.0, 1.0}
    # Gaussian peak at the centroid in the class channel, not at the cue
    assert t["center"][0, cy, cx] == 1.0
    assert np.unravel_index(t["center"][0].argmax(), (50, 60)) == (cy, cx)
    assert t["center"][0, 6, 6] < 1.0
    assert t["center"][1:].max() == 0
    # zero offset at the centroid, offsets elsewhere point to it
    assert t["offset"][0, cy, cx] == 0 and t["offset"][1, cy, cx] == 0
    yy, xx = np.nonzero(w)
    np.testing.assert_array_equal(yy + t["offset"][0, yy, xx], cy)
    np.testing.assert_array_equal(xx + t["offset"][1, yy, xx], cx)
    assert np.all(t["offset"][:, w == 0] == 0)


def test_zero_or_two_cues_rejected_and_small_dropped():
    sem = _blob_map()
    # A: two cues; B: none; S (25 px): one cue but under min_area
    t = _targets(sem, [[6, 6, 0], [12, 12, 0], [42, 42, 0]], _label(0))
    assert t["weight"].sum() == 0 and t["offset"].any() == False  # noqa: E712
    assert t["center"].max() == 0
    # the small component is accepted when min_area allows it
    t = _targets(sem, [[42, 42, 0]], _label(0), min_area=25)
    assert t["weight"].sum() == 25 and t["center"][0, 42, 42] == 1
    # duplicate cue on the same pixel counts twice
    t = _targets(sem, [[6, 6, 0], [6, 6, 0]], _label(0))
    assert t["weight"].sum() == 0


def test_other_class_cues_and_unlabelled_classes_ignored():
    sem = _blob_map()
    # B holds a class-0 cue and a class-1 cue: exactly one of its own class -> accepted.
    # D (class 1) holds only a class-0 cue -> no class-1 cue -> rejected.
    pts = [[8, 33, 0], [9, 35, 1], [27, 8, 0]]
    t = _targets(sem, pts, _label(0, 1))
    assert t["weight"][5:15, 30:40].sum() == 100
    assert t["weight"].sum() == 100
    # class 1 not in the image label: its component is never labelled even with its own cue
    t = _targets(sem, [[27, 8, 1]], _label(0))
    assert t["weight"].sum() == 0 and t["center"].max() == 0
    t = _targets(sem, [[27, 8, 1]], _label(1))
    assert t["weight"].sum() == 80 and t["center"][1].max() == 1 and t["center"][0].max() == 0


def test_eight_connectivity_and_two_accepted_components():
    sem = np.zeros((40, 40), np.uint8)
    sem[2:12, 2:12] = 1
    sem[12:22, 12:22] = 1  # touches the first only diagonally: one 8-connected component
    sem[28:38, 28:38] = 1
    t = _targets(sem, [[3, 3, 0], [30, 30, 0]], _label(0))
    assert t["weight"].sum() == 300
    c = t["center"][0]
    assert c[11, 11] == 1 and c[32, 32] == 1  # centroids (11.5 -> 11) and (32.5 -> 32)


def test_point_route_gaussians_at_points_offsets_to_centroid():
    sem = _blob_map()
    # cue in A (accepted), two in B (rejected: Gaussians still pasted), one in S (small),
    # one in background; one of class 2 which is not in the label (ignored)
    pts = [[6, 6, 0], [6, 31, 0], [13, 38, 0], [42, 42, 0], [45, 5, 0], [20, 20, 2]]
    t = _targets(sem, pts, _label(0), supervision="point")
    c = t["center"][0]
    for y, x, _ in pts[:5]:
        assert c[y, x] == 1.0
    assert t["center"][2].max() == 0
    assert c[9, 9] < 1.0  # no Gaussian at the centroid
    w = t["weight"]
    assert w.sum() == 100 and w[5:15, 5:15].all()
    yy, xx = np.nonzero(w)
    np.testing.assert_array_equal(yy + t["offset"][0, yy, xx], 9)  # centroid (9.5 -> 9)
    np.testing.assert_array_equal(xx + t["offset"][1, yy, xx], 9)


def test_border_gaussian_and_invalid_points():
    sem = np.zeros((30, 30), np.uint8)
    sem[0:10, 0:10] = 1
    # out-of-image and out-of-range-class points are ignored
    t = _targets(sem, [[0, 0, 0], [-1, 5, 0], [5, 40, 0], [3, 3, 7]], _label(0), sigma=2)
    assert t["weight"].sum() == 100
    g = gaussian_patch(2)
    np.testing.assert_array_equal(t["center"][0][:12, :12], g[3:, 3:])  # centroid (4.5 -> 4)
    t = _targets(sem, [[0, 0, 0]], _label(0), supervision="point", sigma=2)
    np.testing.assert_array_equal(t["center"][0][:8, :8], g[7:, 7:])


def test_ignore_value_empty_inputs_and_errors():
    sem = np.full((20, 20), 255, np.uint8)
    t = _targets(sem, np.zeros((0, 3)), _label(0, 1, 2))
    assert t["weight"].sum() == 0 and t["center"].max() == 0
    t = _targets(np.zeros((20, 20), np.int64), [], np.zeros(C, bool))
    assert t["weight"].sum() == 0
    with pytest.raises(ValueError):
        _targets(sem, [], _label(0), supervision="cls")
    with pytest.raises(ValueError):
        make_pseudo_targets(sem, [], np.ones(2), num_classes=C, supervision="image")


def _reference(sem, points, label, supervision, sigma=2, min_area=20):
    """Direct transcription of docs/method.md §2 (scipy labelling, loops over components)."""
    from scipy import ndimage

    H, W = sem.shape
    center = np.zeros((C, H, W), np.float32)
    offset = np.zeros((2, H, W), np.float32)
    weight = np.zeros((H, W), np.float32)
    if supervision == "point":
        for c in np.flatnonzero(label):
            paste_gaussians(center[c], [(y, x) for y, x, k in points if k == c], sigma)
    for c in np.flatnonzero(label):
        lab, n = ndimage.label(sem == c + 1, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            comp = lab == k
            if comp.sum() < min_area:
                continue
            if sum(1 for y, x, cc in points if cc == c and comp[y, x]) != 1:
                continue
            ys, xs = np.nonzero(comp)
            cy, cx = int(ys.mean()), int(xs.mean())
            if supervision == "image":
                paste_gaussians(center[c], [(cy, cx)], sigma)
            weight[comp] = 1
            offset[0][comp] = cy - ys
            offset[1][comp] = cx - xs
    return center, offset, weight


@pytest.mark.parametrize("supervision", ["image", "point"])
def test_matches_reference_on_random_maps(supervision):
    rng = np.random.default_rng(0)
    accepted = 0
    for _ in range(12):
        sem = np.zeros((48, 64), np.uint8)
        for _ in range(8):
            y, x = rng.integers(0, 48), rng.integers(0, 64)
            sem[y : y + rng.integers(2, 14), x : x + rng.integers(2, 14)] = rng.integers(0, C + 1)
        pts = np.stack([rng.integers(0, 48, 12), rng.integers(0, 64, 12),
                        rng.integers(0, C, 12)], axis=1)
        label = (rng.random(C) < 0.7).astype(np.float32)
        t = _targets(sem, pts, label, supervision, sigma=2, min_area=20)
        ref = _reference(sem, pts.tolist(), label, supervision)
        np.testing.assert_allclose(t["center"], ref[0], atol=1e-6)
        np.testing.assert_array_equal(t["offset"], ref[1])
        np.testing.assert_array_equal(t["weight"], ref[2])
        accepted += t["weight"].sum() > 0
    assert accepted >= 3


def test_component_filling_its_bounding_box_gives_no_cast_warning():
    """Issue 16: a class mask that fills its bounding box has an empty label 0 in the components
    of that box (NaN centroid); casting it warned on every such sample."""
    import warnings

    sem = np.zeros((20, 20), np.uint8)
    sem[4:14, 5:15] = 1  # a rectangle: its bounding box is all foreground
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = _targets(sem, [[8, 8, 0]], _label(0), min_area=1)
    assert t["weight"].sum() == 100 and t["center"][0, 8, 9] == 1.0

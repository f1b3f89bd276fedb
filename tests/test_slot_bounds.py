"""The grouping's size bounds read with the torch labelling (``components.SlotBounds``, issue 15):
they bound the real sizes, and results with them are bit-identical to the exact-size path
(OpenCV labelling, which reads the sizes in the grouping) — also on heatmaps full of ties.
"""
import pytest
import torch

import bestie_d2  # noqa: F401
from bestie_d2.component_engine import ClusterParams, group_components
from bestie_d2.component_engine import label_class_maps
from bestie_d2.component_engine.ops import take
from bestie_d2.component_engine.peaks import component_peaks, peak_count_bound
from bestie_d2.modeling.post_processing import decode_instances
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def maps(seed, B=2, C=3, H=40, W=48, levels=None):
    """Class maps of blobs, heatmaps (quantised to ``levels`` values for ties), offsets."""
    g = torch.Generator().manual_seed(seed)
    cm = torch.zeros((B, H, W), dtype=torch.uint8)
    for b in range(B):
        for _ in range(6):
            y, x = int(torch.randint(0, H - 8, (1,), generator=g)), int(torch.randint(0, W - 8, (1,), generator=g))
            h, w = (int(v) for v in torch.randint(4, 16, (2,), generator=g))
            cm[b, y:y + h, x:x + w] = int(torch.randint(1, C + 1, (1,), generator=g))
    center = torch.rand((B, C, H, W), generator=g)
    if levels:
        center = (center * levels).floor() / levels
    offset = torch.randn((B, 2, H, W), generator=g) * 3
    return cm, center, offset


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [1, 3, 7, 41])
def test_peak_bound_holds(seed, k):
    cm, center, _ = maps(seed, levels=4 if seed % 2 else None)
    cb = label_class_maps(cm, 3, backend="torch")
    if cb.M == 0:
        pytest.skip("no component")
    thr = 0.3
    peak_flat = component_peaks(cb, center, thr, k)
    is_pk = peak_flat >= 0
    comp = take(cb.lab.reshape(-1), peak_flat.clamp(min=0))
    exact = torch.zeros(cb.M + 1, dtype=torch.long).index_add_(0, comp, is_pk.long())
    heat_p = center.gather(1, (cm.long() - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    bound = peak_count_bound(cb.lab, heat_p, thr, k, cb.M + 1)
    assert (bound >= exact).all()
    assert exact.sum() > 0
    if k == 1:  # every pixel above the threshold is a peak: the bound is exact
        assert torch.equal(bound, exact)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("cluster", [None, ClusterParams(area=2, area_eps=1, offset_threshold=2.0)], ids=["plain", "cluster"])
def test_refine_and_decode_identical_with_bounds(seed, cluster):
    """Torch labelling (bounds, one sync) vs OpenCV labelling (exact sizes): identical targets,
    stats and decoded instances, on plain and on tie-heavy heatmaps."""
    cm, center, offset = maps(seed, levels=3 if seed % 2 else None)
    B, C, H, W = center.shape
    logits = torch.randn((B, C + 1, H, W), generator=torch.Generator().manual_seed(seed))
    label = torch.zeros((B, C))
    for b in range(B):
        for c in cm[b].unique().tolist():
            if c:
                label[b, c - 1] = 1
    outs = {}
    for be in ("opencv", "torch"):
        params = RefineParams(min_area=3, components_backend=be)
        outs[be] = refine_image_label(logits, center, offset, label, cm.long(), params, cluster)
    (ta, sa), (tb, sb) = outs["opencv"], outs["torch"]
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    for key in ("refined_instances_per_image", "mean_confidence", "skipped_component_fraction"):
        assert float(sa[key]) == float(sb[key]), key
    if seed % 2 == 0:  # (tie-heavy maps may leave every component skipped: too many centers)
        assert float(sa["refined_instances_per_image"]) > 0
    prob = torch.softmax(logits[0], 0)
    dec = [decode_instances(prob, center[0], offset[0], center_threshold=0.1, nms_kernel=7, min_area=3,
                            cluster=cluster, backend=be) for be in ("opencv", "torch")]
    for a, b in zip(*dec):
        assert torch.equal(a, b)


def test_bounds_used_only_for_their_heatmap():
    """Bounds made for one heatmap / threshold are not used with another: the grouping reads the
    exact sizes instead, so results stay right."""
    cm, center, offset = maps(3)
    cb = label_class_maps(cm, 3, backend="torch", peaks_for=(center, 0.3, 7))
    assert cb.slot_bounds is not None and cb.slot_bounds.fits(center, 0.3, 7)
    other = center.clone() * 1.5
    assert not cb.slot_bounds.fits(other, 0.3, 7) and not cb.slot_bounds.fits(center, 0.2, 7)
    ref = label_class_maps(cm, 3, backend="opencv")
    assert ref.slot_bounds is None
    ga = group_components(cb, other, offset, threshold=0.3, nms_kernel=7)
    gb = group_components(ref, other, offset, threshold=0.3, nms_kernel=7)
    keep_a, keep_b = ga["count"] > 0, gb["count"] > 0
    assert torch.equal(ga["count"][keep_a], gb["count"][keep_b])
    assert torch.equal(ga["hmax"][keep_a], gb["hmax"][keep_b])
    assert ga["T"] == gb["T"]  # exact sizes on both sides
    g = group_components(cb, center, offset, threshold=0.3, nms_kernel=7)
    assert g["T"] == cb.slot_bounds.T >= group_components(ref, center, offset, threshold=0.3, nms_kernel=7)["T"]
    assert torch.isfinite(g["hmax"][g["count"] > 0]).all()

"""Center clustering (supplement §1, docs/method.md §5.1): candidates from the offset map and the merge rule,
in the package (``region_candidates``) and in the per-region reference of ``benchmarks/reference_decode.py``."""
import os
import sys

import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.component_engine.clustering import ClusterParams, offset_magnitude_mask, region_candidates

from repo_paths import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from reference_decode import cluster_centers, merge_centers  # noqa: E402  (the per-region reference)

H, W = 96, 112


def radial_field(centers, radius=14, shape=(H, W)):
    """Perfect offsets (center - p) inside discs around each center; big elsewhere."""
    h, w = shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    off = torch.full((2, h, w), 50.0)
    region = torch.zeros(h, w, dtype=torch.bool)
    for cy, cx in centers:
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        off[0][m] = (cy - yy[m]).float()
        off[1][m] = (cx - xx[m]).float()
        region |= m
    return off, region


def field_from_mask(mask):
    """Offsets that are 0 on ``mask`` and large elsewhere (magnitude mask == ``mask``)."""
    off = torch.full((2,) + mask.shape, 10.0)
    off[:, mask] = 0.0
    return off


def test_radial_field_gives_exactly_k_centers():
    centers = [(20, 25), (60, 30), (45, 85)]
    off, region = radial_field(centers)
    # a perfect radial field has exactly 21 pixels with |offset| < 2.5 around each center
    assert int((offset_magnitude_mask(off, 2.5) & region).sum()) == 21 * len(centers)
    heat = region.float()
    got = cluster_centers(off, region, heat, ClusterParams())
    assert got.dtype == torch.long and got.shape == (3, 2)
    assert sorted(map(tuple, got.tolist())) == sorted(centers)


def test_region_restricts_candidates():
    off, region = radial_field([(20, 25), (60, 30)])
    only_first = region.clone()
    only_first[40:] = False
    got = cluster_centers(off, only_first, only_first.float(), ClusterParams())
    assert got.tolist() == [[20, 25]]


@pytest.mark.parametrize("area,expected", [(18, 0), (19, 1), (21, 1), (23, 1), (24, 0), (5, 0), (60, 0)])
def test_area_check_is_strict(area, expected):
    mask = torch.zeros(H, W, dtype=torch.bool)
    idx = torch.arange(area)
    mask[30 + idx // 8, 40 + idx % 8] = True  # a compact blob of `area` pixels
    region = torch.ones(H, W, dtype=torch.bool)
    got = cluster_centers(field_from_mask(mask), region, region.float(), ClusterParams())
    assert got.shape[0] == expected


def test_spurious_blobs_fail_area_check():
    off, region = radial_field([(30, 30)])
    # a long "valley" of small offsets (area >> 24) and a tiny one (area < 19)
    off[:, 70:72, 10:60] = 0.5
    off[:, 80:82, 80:83] = 0.5
    region[:] = True
    got = cluster_centers(off, region, region.float(), ClusterParams())
    assert got.tolist() == [[30, 30]]


def test_empty_field_gives_no_center():
    region = torch.ones(H, W, dtype=torch.bool)
    off = torch.full((2, H, W), 7.0)
    assert cluster_centers(off, region, region.float(), ClusterParams()).shape == (0, 2)
    off0, reg0 = radial_field([(30, 30)])
    assert cluster_centers(off0, torch.zeros_like(reg0), reg0.float(), ClusterParams()).shape == (0, 2)


def test_four_connectivity():
    # two 3x7 blocks (21 px each) touching only at a corner: two 4-connected regions (an
    # 8-connected labelling would merge them into one region of 42 px and fail the area check)
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[10:13, 10:17] = True
    mask[13:16, 17:24] = True
    region = torch.ones(H, W, dtype=torch.bool)
    got = cluster_centers(field_from_mask(mask), region, region.float(), ClusterParams())
    assert sorted(map(tuple, got.tolist())) == [(11, 13), (14, 20)]


def test_centroid_is_int_truncated():
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[10:13, 10:17] = True  # 21 px, centroid (11, 13)
    mask[13, 10] = True  # 22 px, centroid y = (3*7*11 + 13) / 22 = 11.09, x = (21*13 + 10) / 22 = 12.86
    region = torch.ones(H, W, dtype=torch.bool)
    got = cluster_centers(field_from_mask(mask), region, region.float(), ClusterParams())
    assert got.tolist() == [[11, 12]]


def test_heatmap_check():
    off, region = radial_field([(20, 25), (60, 30)])
    heat = region.float() * 0.5
    heat[60, 30] = 0.05  # not > 0.05
    got = cluster_centers(off, region, heat, ClusterParams())
    assert got.tolist() == [[20, 25]]


def test_merge_without_peaks_adds_all_and_marks():
    heat = torch.full((H, W), 0.2)
    cands = torch.tensor([[10, 10], [12, 14]])
    centers, heat2 = merge_centers(torch.zeros((0, 2), dtype=torch.long), cands, heat, ClusterParams())
    assert centers.tolist() == [[10, 10], [12, 14]]
    assert heat2 is heat and heat[10, 10] == 1.0 and heat[12, 14] == 1.0 and heat[0, 0] == pytest.approx(0.2)


def test_merge_distance_rule():
    heat = torch.full((300, 300), 0.2)
    peaks = torch.tensor([[0, 0]])
    cands = torch.tensor([[0, 100], [60, 80], [0, 101], [150, 150]])  # 100, 100, 101, 212 px away
    centers, _ = merge_centers(peaks, cands, heat, ClusterParams())
    assert centers.tolist() == [[0, 0], [0, 101], [150, 150]]
    assert heat[0, 101] == 1.0 and heat[150, 150] == 1.0
    assert heat[0, 100] == pytest.approx(0.2) and heat[60, 80] == pytest.approx(0.2)
    assert heat[0, 0] == pytest.approx(0.2)  # peaks are not marked


def test_region_candidates_matches_per_region():
    """The batched CPU helper gives the per-region answer for every component of a label map."""
    centers = [(20, 25), (60, 30), (45, 85), (80, 90)]
    off, region = radial_field(centers)
    comp = np.zeros((H, W), dtype=np.int32)
    comp[:40][region[:40].numpy()] = 1
    comp[40:][region[40:].numpy()] = 2
    mag = offset_magnitude_mask(off, 2.5).numpy()
    cc, cy, cx, key = region_candidates(mag, comp, ClusterParams())
    got = sorted(zip(cc.tolist(), cy.tolist(), cx.tolist()))
    assert got == [(1, 20, 25), (2, 45, 85), (2, 60, 30), (2, 80, 90)]
    # crop coordinates are shifted back to the image
    cc2, cy2, cx2, key2 = region_candidates(mag[30:, 20:], comp[30:, 20:], ClusterParams(), 30, 20, W)
    assert sorted(zip(cc2.tolist(), cy2.tolist(), cx2.tolist())) == [(2, 45, 85), (2, 60, 30), (2, 80, 90)]
    assert sorted(key2.tolist()) == sorted(key[cc == 2].tolist())


def test_from_config(bestie_cfg):
    cfg = bestie_cfg
    cfg.MODEL.BESTIE.CLUSTER.AREA_EPS = 4
    p = ClusterParams.from_config(cfg)
    assert p == ClusterParams(offset_threshold=2.5, area=21, area_eps=4, min_heatmap=0.05, merge_distance=100.0)


def test_region_filling_the_whole_map_gives_no_cast_warning():
    """Issue 16: a magnitude region covering the whole map left the background's NaN centroid to
    be cast to int ('invalid value encountered in cast' on every inference)."""
    import warnings

    off = torch.zeros(2, 12, 14)  # |offset| < threshold everywhere: one region, no background
    region = torch.ones(12, 14, dtype=torch.bool)
    params = ClusterParams(area=12 * 14, area_eps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cluster_centers(off, region, region.float(), params)
    assert got.tolist() == [[5, 6]]  # int-truncated centroid of the full map

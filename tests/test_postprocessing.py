"""Instance decoding (docs/method.md §6): the engine's small ops, the fast per-component decoder, and
its equality with the literal per-component reference (benchmarks/reference_decode.py)."""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.component_engine import ClusterParams
from bestie_d2.component_engine.ops import channel_argmax, sliding_max_pool
from bestie_d2.modeling.post_processing import decode_instances

from repo_paths import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from reference_decode import make_synthetic_outputs, reference_decode  # noqa: E402

C = 4


def gaussian_at(h, w, cy, cx, sigma=6.0):
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def perfect_outputs(instances, h=96, w=128, num_classes=C, prob=0.9):
    """Perfect outputs for instances given as (mask, class): one-hot-ish probs, Gaussians at the
    int centroids in the class channel, offsets to the centroid."""
    sem = torch.zeros(h, w, dtype=torch.long)
    center = torch.zeros(num_classes, h, w)
    offset = torch.zeros(2, h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for m, c in instances:
        sem[m] = c + 1
    for m, c in instances:
        cy, cx = int(yy[m].float().mean()), int(xx[m].float().mean())
        center[c] = torch.maximum(center[c], gaussian_at(h, w, cy, cx))
        offset[0][m] = (cy - yy[m]).float()
        offset[1][m] = (cx - xx[m]).float()
    sem_prob = torch.full((num_classes + 1, h, w), (1 - prob) / num_classes)
    sem_prob.scatter_(0, sem[None], prob)
    return sem_prob, center, offset


def disc(h, w, cy, cx, r):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def as_set(masks, classes):
    return {(int(c), m.numpy().tobytes()) for m, c in zip(masks, classes)}


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 7, 41])
@pytest.mark.parametrize("shape", [(1, 30, 50), (3, 17, 9), (2, 64, 64)])
def test_sliding_max_pool_equals_max_pool2d(k, shape):
    x = torch.randn(shape)
    x[x < 0] = -1.0
    assert torch.equal(sliding_max_pool(x, k), F.max_pool2d(x[:, None], k, 1, k // 2)[:, 0])


def test_even_kernel_rejected():
    with pytest.raises(ValueError):
        sliding_max_pool(torch.zeros(1, 5, 5), 4)


def test_channel_argmax_first_max():
    x = torch.rand(21, 33, 40)
    x[5, :3] = 2.0
    x[9, :3] = 2.0  # tie: the first index wins, as torch.argmax
    x[:, 10] = 0.5
    assert torch.equal(channel_argmax(x).long(), x.argmax(0))


def test_decode_perfect_outputs_recovers_instances():
    h, w = 96, 128
    a = disc(h, w, 30, 30, 14)
    b = disc(h, w, 30, 56, 14) & ~a  # touches a: one semantic component of class 1
    c = disc(h, w, 70, 90, 18)
    d = disc(h, w, 75, 30, 10)
    inst = [(a, 1), (b, 1), (c, 2), (d, 1)]
    sem_prob, center, offset = perfect_outputs(inst, h, w)
    for cluster in (None, ClusterParams()):
        masks, classes, scores = decode_instances(sem_prob, center, offset, cluster=cluster)
        assert masks.dtype == torch.bool and classes.dtype == torch.long
        assert as_set(masks, classes) == as_set([m for m, _ in inst], [k for _, k in inst])
        assert classes.tolist() == sorted(classes.tolist())  # ordered by class
        # Gaussian peak 1.0 at the centroid -> s_ctr >= 1 -> s_ctr = s_seg -> score = 0.9^2
        assert torch.allclose(scores, torch.full_like(scores, 0.81), atol=1e-5)


def test_decode_score_is_center_times_semantic():
    h, w = 64, 64
    a = disc(h, w, 30, 30, 15)
    sem_prob, center, offset = perfect_outputs([(a, 0)], h, w, prob=0.8)
    center *= 0.6
    masks, classes, scores = decode_instances(sem_prob, center, offset)
    assert masks.shape == (1, h, w) and classes.tolist() == [0]
    assert scores.item() == pytest.approx(0.6 * 0.8, abs=1e-5)


def test_component_without_center_is_one_instance():
    h, w = 64, 64
    a = disc(h, w, 30, 30, 15)
    sem_prob, center, offset = perfect_outputs([(a, 2)], h, w, prob=0.7)
    center *= 0.05  # below the 0.1 threshold everywhere
    offset[:] = 9.0  # and no clustering candidate
    masks, classes, scores = decode_instances(sem_prob, center, offset, cluster=ClusterParams())
    assert masks.shape == (1, h, w) and torch.equal(masks[0], a) and classes.tolist() == [2]
    assert scores.item() == pytest.approx(0.05 * 0.7, abs=1e-5)


def test_marked_cluster_center_scores_s_seg_squared():
    h, w = 64, 64
    a = disc(h, w, 30, 30, 15)
    sem_prob, center, offset = perfect_outputs([(a, 0)], h, w, prob=0.7)
    center *= 0.08  # no heatmap peak (<= 0.1) but > 0.05 at the clustering candidate
    masks, classes, scores = decode_instances(sem_prob, center, offset, cluster=ClusterParams())
    assert masks.shape == (1, h, w) and scores.item() == pytest.approx(0.7 * 0.7, abs=1e-5)
    _, _, s0 = decode_instances(sem_prob, center, offset, cluster=None)
    assert s0.item() == pytest.approx(0.08 * 0.7, abs=1e-5)


def test_min_area_and_empty():
    h, w = 64, 64
    small = disc(h, w, 10, 10, 3)  # 29 px < 50
    big = disc(h, w, 40, 40, 10)
    sem_prob, center, offset = perfect_outputs([(small, 0), (big, 1)], h, w)
    masks, classes, _ = decode_instances(sem_prob, center, offset)
    assert classes.tolist() == [1] and torch.equal(masks[0], big)
    masks, classes, scores = decode_instances(sem_prob, center, offset, min_area=1000)
    assert masks.shape == (0, h, w) and classes.shape == (0,) and scores.shape == (0,)
    bg = torch.zeros(C + 1, h, w)
    bg[0] = 1
    assert decode_instances(bg, center, offset)[0].shape == (0, h, w)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("cluster", [None, ClusterParams(), ClusterParams(merge_distance=12.0)])
def test_decode_equals_reference_on_random_outputs(seed, cluster):
    sem_prob, center, offset, _, _ = make_synthetic_outputs(
        96, 112, num_classes=6, num_instances=7, num_present=3, seed=seed, radius=(8, 26), noise=0.4
    )
    m1, c1, s1 = decode_instances(sem_prob, center, offset, nms_kernel=15, cluster=cluster)
    m2, c2, s2 = reference_decode(sem_prob, center, offset, nms_kernel=15, cluster=cluster)
    assert m1.shape == m2.shape and m1.shape[0] > 0
    assert torch.equal(m1, m2) and torch.equal(c1, c2)
    assert torch.allclose(s1, s2, atol=1e-5)


def test_decode_equals_reference_with_clustering_candidates():
    """Offsets with exact radial fields (clustering candidates) and a flat, weak heatmap: the
    instances come from the clustering merge (marked centers) in both decoders."""
    sem_prob, center, offset, inst, _ = make_synthetic_outputs(
        96, 112, num_classes=6, num_instances=6, num_present=2, seed=5, radius=(10, 24), noise=0.0
    )
    center = center * 0.0 + 0.06  # no peak above 0.1; > 0.05 everywhere
    m1, c1, s1 = decode_instances(sem_prob, center, offset, cluster=ClusterParams())
    m2, c2, s2 = reference_decode(sem_prob, center, offset, cluster=ClusterParams())
    assert torch.equal(m1, m2) and torch.equal(c1, c2) and torch.allclose(s1, s2, atol=1e-5)
    assert m1.shape[0] >= 4  # split by the clustering centers, not one instance per component

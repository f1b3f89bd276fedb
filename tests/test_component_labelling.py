"""component_labelling: the torch (device) labelling of class maps builds the same ComponentBatch
as the OpenCV one, tensor for tensor (ids in OpenCV's order, table, pixels, NMS crop batches,
clustering candidates), on random class maps with touching classes, diagonal contacts, small
components, full and empty maps."""
import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.component_engine import ClusterParams
from bestie_d2.component_engine import label_class_maps
from bestie_d2.component_engine.connected_components import label_components


def random_batch(rng):
    B = int(rng.integers(1, 4))
    H, W = (int(v) for v in rng.integers(1, 48, 2))
    kind = rng.integers(4)
    if kind == 0:  # noise of a few classes (many tiny components, diagonal contacts)
        cm = rng.integers(0, 4, (B, H, W)) * (rng.random((B, H, W)) < rng.uniform(0.2, 1.0))
    elif kind == 1:  # blocky regions: large components of touching classes
        cm = np.kron(rng.integers(0, 5, (B, H // 4 + 1, W // 4 + 1)), np.ones((1, 4, 4), dtype=np.int64))
        cm = cm[:, :H, :W]
    elif kind == 2:  # one class everywhere / nothing
        cm = np.full((B, H, W), int(rng.integers(0, 3)))
    else:  # checkerboard of one class: one 8-connected component (blocks of 2x2 matter)
        cm = ((np.add.outer(np.arange(H), np.arange(W)) % 2) * int(rng.integers(1, 9)))[None].repeat(B, 0)
    mag = rng.random((B, H, W)) < rng.uniform(0.3, 0.9)
    return torch.from_numpy(cm.astype(np.uint8)), torch.from_numpy(mag)


def assert_same_batch(a, b):
    assert (a.B, a.H, a.W, a.M) == (b.B, b.H, b.W, b.M)
    for name in ("lab", "pix", "table", "bucket_ids", "cand", "comp_p", "col"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.buckets == b.buckets


@pytest.mark.parametrize("seed", range(4))
def test_torch_labelling_equals_opencv(seed):
    rng = np.random.default_rng(seed)
    n_comp = n_cand = 0
    for _ in range(40):
        cm, mag = random_batch(rng)
        min_area = int(rng.choice([0, 1, 3, 10]))
        cluster = ClusterParams(area=int(rng.integers(2, 8)), area_eps=int(rng.integers(1, 4)))
        for cl in (None, cluster):
            m = None if cl is None else mag
            a = label_class_maps(cm, min_area, m, cl, backend="opencv")
            b = label_class_maps(cm, min_area, m, cl, backend="torch")
            assert_same_batch(a, b)
            n_comp, n_cand = n_comp + a.M, n_cand + a.cand.shape[0]
    assert n_comp > 300 and n_cand > 30  # the cases are not trivial


def test_opencv_numbers_8_connected_components_by_2x2_blocks():
    """Why the torch path orders by blocks: OpenCV's block-based 8-connected labelling numbers a
    component by the first 2x2 block it touches, not by its first pixel."""
    m = np.zeros((2, 6), dtype=np.uint8)
    m[1, 0] = 1  # first block, second row
    m[0, 4] = 1  # earlier pixel in raster order, later block
    _, lab, _, _ = label_components(m, 8)
    assert lab[1, 0] == 1 and lab[0, 4] == 2
    _, lab4, _, _ = label_components(m, 4)
    assert lab4[0, 4] == 1 and lab4[1, 0] == 2
    cm = torch.from_numpy(m)[None]
    for backend in ("opencv", "torch"):
        cb = label_class_maps(cm, 1, backend=backend)
        assert cb.lab[0, 1, 0] == 1 and cb.lab[0, 0, 4] == 2, backend


def test_torch_labelling_reruns_until_converged():
    """A 300x300 1-px spiral needs 9 rounds, more than the first 8: the rerun (16) gives OpenCV's batch."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    from bench_connected_components import spiral_mask
    from bestie_d2.component_engine.connected_components import connected_components_torch

    s = spiral_mask(300, 300)
    assert connected_components_torch(torch.from_numpy(s)[None], 8, first_check=1, check_every=1).rounds > 8
    cm = torch.from_numpy(s.astype(np.uint8) * 3)[None]
    mag = torch.from_numpy(np.random.default_rng(0).random((1, 300, 300)) < 0.6)
    cl = ClusterParams(area=3, area_eps=2)
    a, b = (label_class_maps(cm, 5, mag, cl, backend=be) for be in ("opencv", "torch"))
    assert a.M == 1 and a.cand.shape[0] > 0
    assert_same_batch(a, b)

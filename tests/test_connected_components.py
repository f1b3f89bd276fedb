"""bestie_d2.component_engine.connected_components: the torch labelling gives OpenCV's partition.

Every case is compared image by image with ``cv2.connectedComponents`` (same connectivity): the
pairs (torch id, OpenCV id) over the foreground pixels must form a bijection, the background must
be the same pixels, and the areas must match. 240 seeded cases per connectivity (noise at several
densities, spirals, touching blobs with diagonal-only contacts, isolated pixels, checkerboards,
full / empty images, 1xW and Hx1 images), plus batches mixing them.
"""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401
from bestie_d2.component_engine.connected_components import (
    Components,
    connected_components,
    connected_components_opencv,
    connected_components_torch,
    pick_backend,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from bench_connected_components import spiral_mask  # noqa: E402

CASES_PER_KIND = 24  # x 10 kinds = 240 seeded cases per connectivity


def assert_same_partition(labels, mask, connectivity):
    """``labels`` (H, W) int64 tensor == OpenCV's labelling of ``mask`` (H, W) bool up to ids."""
    lab = labels.cpu().numpy()
    n, ref = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    assert lab.shape == mask.shape
    np.testing.assert_array_equal(lab == 0, ~mask)
    a, b = lab[mask], ref[mask]
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    assert len(pairs) == n - 1, "a component split or merged"
    assert len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1])), "ids are not one-to-one"
    # ids 1..n-1 per image, in the raster order of each component's first pixel
    ids = lab.reshape(-1)[lab.reshape(-1) > 0]
    _, first = np.unique(ids, return_index=True)
    np.testing.assert_array_equal(np.unique(ids), np.arange(1, n))
    assert np.all(np.diff(first) > 0)
    area = np.bincount(lab.reshape(-1), minlength=n)[1:]
    area_ref = np.bincount(ref.reshape(-1), minlength=n)[1:]
    np.testing.assert_array_equal(area[pairs[:, 0] - 1], area_ref[pairs[:, 1] - 1])
    return n - 1


def blobs(rng, h, w):
    """Random rectangles and discs, some overlapping, plus diagonal-only touching pairs."""
    m = np.zeros((h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(1, 6)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 3)
        if rng.random() < 0.5:
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            m |= (abs(yy - cy) <= r) & (abs(xx - cx) <= r / 2)
    for _ in range(rng.integers(0, 4)):  # two squares meeting at one corner only
        s = int(rng.integers(1, 4))
        y, x = int(rng.integers(0, max(h - 2 * s, 1))), int(rng.integers(0, max(w - 2 * s, 1)))
        m[y : y + s, x : x + s] = True
        m[y + s : y + 2 * s, x + s : x + 2 * s] = True
    return m


def spiral(rng, h, w):
    s = spiral_mask(h, w)
    s = [s, s[::-1], s[:, ::-1], s[::-1, ::-1]][rng.integers(4)]
    return np.ascontiguousarray(s)


def make_case(kind, rng):
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    if kind == "noise":
        return rng.random((h, w)) < rng.choice([0.05, 0.2, 0.4, 0.5, 0.6, 0.8, 0.95])
    if kind == "spiral":
        return spiral(rng, *(int(v) for v in rng.integers(3, 48, 2)))
    if kind == "blobs":
        return blobs(rng, h, w)
    if kind == "pixels":  # isolated single pixels (some diagonal neighbours)
        m = np.zeros((h, w), dtype=bool)
        m[rng.integers(0, h, 8), rng.integers(0, w, 8)] = True
        return m
    if kind == "checker":  # diagonal-only contacts everywhere: 1 component (8) vs many (4)
        return ((np.add.outer(np.arange(h), np.arange(w)) + rng.integers(2)) % 2).astype(bool)
    if kind == "full":
        return np.ones((h, w), dtype=bool)
    if kind == "empty":
        return np.zeros((h, w), dtype=bool)
    if kind == "row":  # 1 x W
        return rng.random((1, int(rng.integers(1, 80)))) < 0.6
    if kind == "column":  # H x 1
        return rng.random((int(rng.integers(1, 80)), 1)) < 0.6
    if kind == "one_pixel":  # 1x1 to 2x2 images
        return rng.random((int(rng.integers(1, 3)), int(rng.integers(1, 3)))) < 0.5
    raise ValueError(kind)


KINDS = ["noise", "spiral", "blobs", "pixels", "checker", "full", "empty", "row", "column", "one_pixel"]


@pytest.mark.parametrize("connectivity", [8, 4])
def test_torch_labels_equal_opencv_partition(connectivity):
    rng = np.random.default_rng(connectivity)
    n_cases, n_comps = 0, 0
    for kind in KINDS:
        for _ in range(CASES_PER_KIND):
            m = make_case(kind, rng)
            out = connected_components_torch(torch.from_numpy(m)[None], connectivity)
            n = assert_same_partition(out.labels[0], m, connectivity)
            assert out.counts.tolist() == [n]
            n_cases, n_comps = n_cases + 1, n_comps + n
    assert n_cases >= 200 and n_comps > 500  # not a set of trivial cases


def pad_to(m, h, w, rng):
    """``m`` placed at a random offset in an (h, w) background."""
    out = np.zeros((h, w), dtype=bool)
    y, x = int(rng.integers(0, h - m.shape[0] + 1)), int(rng.integers(0, w - m.shape[1] + 1))
    out[y : y + m.shape[0], x : x + m.shape[1]] = m
    return out


@pytest.mark.parametrize("connectivity", [8, 4])
def test_batches_mixing_kinds(connectivity):
    """Images of a batch never join: components touching the image borders stay per image."""
    rng = np.random.default_rng(10 + connectivity)
    for _ in range(8):
        batch = [make_case(str(rng.choice(KINDS[:5])), rng) for _ in range(int(rng.integers(2, 7)))]
        h, w = max(b.shape[0] for b in batch), max(b.shape[1] for b in batch)
        arr = np.stack([pad_to(b, h, w, rng) for b in batch])
        arr[0] = True  # a full image next to the others
        arr[-1] = False
        out = connected_components_torch(torch.from_numpy(arr), connectivity)
        counts = [assert_same_partition(out.labels[i], arr[i], connectivity) for i in range(len(arr))]
        assert out.counts.tolist() == counts


def test_four_and_eight_connectivity_differ_on_diagonal_contacts():
    m = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)[None]
    assert connected_components_torch(m, 8).counts.tolist() == [1]
    assert connected_components_torch(m, 4).counts.tolist() == [3]
    assert connected_components_torch(m, 4).labels[0].tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 3]]


@pytest.mark.parametrize("connectivity", [8, 4])
def test_long_spiral_converges_in_few_rounds(connectivity):
    """One 1-pixel-wide path of ~2,400 pixels: plain min-propagation needs a round per pixel of
    the path; hooking + pointer jumping needs a handful (the check schedule does not change ids)."""
    s = spiral_mask(70, 70)
    for view in (s, s[::-1, ::-1].copy(), s.T.copy()):
        t = torch.from_numpy(view)[None]
        every = connected_components_torch(t, connectivity, first_check=1, check_every=1)
        assert every.counts.tolist() == [1] and every.labels[0][torch.from_numpy(view)].eq(1).all()
        assert every.rounds <= 12, every.rounds
        late = connected_components_torch(t, connectivity, first_check=20, check_every=3)
        assert late.rounds == 20 and torch.equal(late.labels, every.labels)


def test_input_dtypes_and_shapes():
    m = np.random.default_rng(0).random((3, 9, 7)) < 0.5
    ref = connected_components_torch(torch.from_numpy(m), 8)
    t = torch.from_numpy(m)
    for t in (t.to(torch.uint8), t.float(), torch.from_numpy(m.T.copy()).transpose(0, 2)):
        out = connected_components_torch(t, 8)
        assert out.labels.dtype == torch.int64 and out.counts.dtype == torch.int64
        assert torch.equal(out.labels, ref.labels) and torch.equal(out.counts, ref.counts)
    for shape in [(0, 5, 5), (2, 0, 5), (2, 5, 0)]:
        for backend in ("torch", "opencv"):
            out = connected_components(torch.zeros(shape, dtype=torch.bool), 4, backend=backend)
            assert out.labels.shape == shape and out.counts.tolist() == [0] * shape[0]
    with pytest.raises(ValueError, match="connectivity"):
        connected_components_torch(torch.zeros(1, 3, 3, dtype=torch.bool), 6)
    with pytest.raises(ValueError, match="N, H, W"):
        connected_components_torch(torch.zeros(3, 3, dtype=torch.bool), 8)
    with pytest.raises(ValueError, match="first_check"):
        connected_components_torch(torch.zeros(1, 3, 3, dtype=torch.bool), 8, check_every=0)


def test_backends_and_dispatch(monkeypatch):
    from bestie_d2.component_engine import kernels

    assert pick_backend("cpu") == "opencv"
    assert pick_backend(torch.device("cuda", 0)) == ("triton" if kernels.AVAILABLE else "torch")
    assert pick_backend("cpu", "torch") == "torch" and pick_backend("cuda", "opencv") == "opencv"
    with pytest.raises(ValueError, match="backend"):
        pick_backend("cpu", "scipy")
    monkeypatch.setattr(kernels, "AVAILABLE", False)  # no Triton: the torch fallback on CUDA
    assert pick_backend(torch.device("cuda", 0)) == "torch"
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        pick_backend("cuda", "triton")
    monkeypatch.undo()
    if not kernels.INTERPRETED:
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            pick_backend("cpu", "triton")
    rng = np.random.default_rng(3)
    m = np.stack([blobs(rng, 33, 21) for _ in range(4)])
    t = torch.from_numpy(m)
    for conn in (8, 4):
        cv = connected_components_opencv(t, conn)
        for i in range(4):
            n, ref = cv2.connectedComponents(m[i].astype(np.uint8), connectivity=conn, ltype=cv2.CV_32S)
            np.testing.assert_array_equal(cv.labels[i].numpy(), ref)  # OpenCV's own ids
            assert cv.counts[i] == n - 1
        auto = connected_components(t, conn)
        assert isinstance(auto, Components) and auto.rounds == 0 and torch.equal(auto.labels, cv.labels)
        forced = connected_components(t, conn, backend="torch")
        assert torch.equal(forced.labels, connected_components_torch(t, conn).labels)
        for i in range(4):
            assert_same_partition(forced.labels[i], m[i], conn)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(5)
    m = np.concatenate([rng.random((2, 40, 40)) < 0.5, np.stack([spiral_mask(40, 40), blobs(rng, 40, 40)])])
    m = torch.from_numpy(m)
    for conn in (8, 4):
        cpu = connected_components_torch(m, conn)
        gpu = connected_components(m.cuda(), conn)
        assert gpu.labels.is_cuda and torch.equal(gpu.labels.cpu(), cpu.labels)
        assert torch.equal(gpu.counts.cpu(), cpu.counts)

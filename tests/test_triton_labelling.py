"""The Triton union-find labelling (``component_engine.kernels.union_find``) against OpenCV.

``label_regions`` on 220 seeded cases per connectivity (noise of several values, binary blobs,
1-px spirals, touching regions of different values, isolated pixels, full and empty images, many
values, checkerboards, thin diagonal lines, mazes; 1-3 images of 1-40 px a side): every region is
exactly one of OpenCV's components of its value's mask, its root is its first pixel in raster
order, and its statistics (area, coordinate sums, extent, smallest column of the row below the
first) and the per-(image, value) bounding-box origins are exact. Then the binary-mask API
(``connected_components(..., backend="triton")``) and the class-map labelling
(``label_class_maps``) against the OpenCV and torch backends, tensor for tensor.
"""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from bestie_d2.component_engine import ClusterParams, label_class_maps
from bestie_d2.component_engine.connected_components import connected_components, connected_components_torch

from repo_paths import REPO
from triton_device import DEVICE, TRITON_OK, needs_triton

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_connected_components import spiral_mask as spiral  # noqa: E402

pytestmark = [needs_triton, pytest.mark.triton]
if TRITON_OK:
    from bestie_d2.component_engine.kernels.union_find import (
        BIG32, ST_AREA, ST_SX, ST_SY, ST_X2MIN, ST_XMAX, ST_XMIN, ST_YMAX, label_regions,
    )

KINDS = ("noise", "blobs", "spiral", "touching", "singles", "full", "empty", "many", "checker", "lines", "maze")


def value_map(rng, kind, b, h, w):
    if kind == "noise":
        return rng.integers(0, int(rng.integers(2, 6)), (b, h, w))
    if kind == "blobs":
        return (rng.random((b, h, w)) < rng.uniform(0.3, 0.7)).astype(np.int64)
    if kind == "spiral":
        return np.stack([spiral(h, w) for _ in range(b)]).astype(np.int64) * int(rng.integers(1, 9))
    if kind == "touching":
        k = int(rng.integers(2, 6))
        v = np.kron(rng.integers(1, 5, (b, h // k + 1, w // k + 1)), np.ones((1, k, k), dtype=np.int64))
        return v[:, :h, :w]
    if kind == "singles":
        v = np.zeros((b, h, w), dtype=np.int64)
        v[:, ::2, ::2] = rng.integers(1, 4, v[:, ::2, ::2].shape)
        return v
    if kind == "full":
        return np.full((b, h, w), int(rng.integers(1, 255)))
    if kind == "empty":
        return np.zeros((b, h, w), dtype=np.int64)
    if kind == "many":
        return rng.integers(0, 250, (b, h, w)) * (rng.random((b, h, w)) < 0.9)
    if kind == "checker":
        c = (np.add.outer(np.arange(h), np.arange(w)) % 2)[None].repeat(b, 0)
        return c * int(rng.integers(1, 9)) + (1 - c) * int(rng.integers(0, 2)) * 9
    if kind == "lines":
        v = np.zeros((b, h, w), dtype=np.int64)
        for d in range(-h, w, 3):
            ys = np.arange(h)
            xs = ys + d
            ok = (xs >= 0) & (xs < w)
            v[:, ys[ok], xs[ok]] = 1 + (d % 2)
        return v
    # maze: walls on a grid with random openings
    v = np.ones((b, h, w), dtype=np.int64)
    v[:, 1::2, 1::2] = 0
    v[rng.random((b, h, w)) < 0.25] = 0
    return v


def case(seed):
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    b, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 41)), int(rng.integers(1, 41))
    return kind, value_map(rng, kind, b, h, w).astype(np.int32)


def check_regions(v, conn, root, stats, origin):
    """Every check of the module docstring for one labelled batch ``v`` (numpy)."""
    B, H, W = v.shape
    root = root.cpu().numpy().reshape(B, H, W)
    stats = stats.cpu().numpy()
    origin = origin.cpu().numpy() if origin.numel() else None
    assert (root[v == 0] == -1).all()
    for b in range(B):
        for val in np.unique(v[b]):
            if val == 0:
                continue
            mask = (v[b] == val).astype(np.uint8)
            n, lab = cv2.connectedComponents(mask, connectivity=conn, ltype=cv2.CV_32S)
            for c in range(1, n):
                ys, xs = np.nonzero(lab == c)
                roots = np.unique(root[b][ys, xs])
                first = b * H * W + ys[0] * W + xs[0]
                assert roots.tolist() == [first], (b, val, c, roots[:5], first)
                s = stats[first]
                assert s[ST_AREA] == ys.size and s[ST_SY] == ys.sum() and s[ST_SX] == xs.sum()
                assert s[ST_YMAX] == ys.max() and s[ST_XMIN] == xs.min() and s[ST_XMAX] == xs.max()
                below = xs[ys == ys[0] + 1]
                assert s[ST_X2MIN] == (below.min() if below.size else BIG32)
            if origin is not None:
                ys, xs = np.nonzero(mask)
                assert origin[b * 256 + val].tolist() == [ys.min(), xs.min()], (b, val)


@pytest.mark.parametrize("conn", [8, 4])
def test_label_regions_equals_opencv(conn):
    """220 seeded cases per connectivity (module docstring); the failing seed is in the message."""
    for seed in range(220):
        kind, v = case(seed)
        try:
            root, stats, origin = label_regions(torch.from_numpy(v).to(DEVICE), conn, conn == 8 and v.max() < 256)
            check_regions(v, conn, root, stats, origin)
        except AssertionError as e:
            raise AssertionError(f"seed {seed} ({kind}, shape {v.shape}, connectivity {conn}): {e}") from e


def test_long_spiral_and_wide_rows():
    """A 1-px spiral on a 160 x 150 map (a path of thousands of pixels) and 1-row / 1-column maps."""
    for v in (spiral(160, 150)[None].astype(np.int32) * 3, np.ones((2, 1, 300), np.int32),
              np.ones((1, 300, 1), np.int32), (np.arange(301) % 3 == 0).astype(np.int32)[None, None]):
        for conn in (8, 4):
            check_regions(v, conn, *label_regions(torch.from_numpy(v).to(DEVICE), conn, conn == 8))


def test_label_regions_refuses_bad_input():
    with pytest.raises(ValueError, match="int32"):
        label_regions(torch.zeros(1, 4, 4, dtype=torch.int64, device=DEVICE), 8, False)
    with pytest.raises(ValueError, match="connectivity"):
        label_regions(torch.zeros(1, 4, 4, dtype=torch.int32, device=DEVICE), 6, False)
    with pytest.raises(ValueError, match="rows up to"):
        label_regions(torch.zeros(1, 1, 9000, dtype=torch.int32, device=DEVICE), 8, False)


@pytest.mark.parametrize("conn", [8, 4])
def test_binary_api_equals_torch_backend(conn):
    """``connected_components(backend="triton")``: OpenCV's partition, ids in first-pixel raster order
    per image (as the torch backend numbers them), counts per image."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        m = torch.from_numpy(rng.random((3, 23, 31)) < rng.uniform(0.2, 0.8))
        tri = connected_components(m.to(DEVICE), conn, backend="triton")
        ref = connected_components_torch(m, conn)
        assert torch.equal(tri.labels.cpu(), ref.labels) and torch.equal(tri.counts.cpu(), ref.counts)


def random_class_batch(rng):
    B = int(rng.integers(1, 4))
    H, W = (int(v) for v in rng.integers(4, 48, 2))
    kind = int(rng.integers(4))
    if kind == 0:
        cm = rng.integers(0, 4, (B, H, W)) * (rng.random((B, H, W)) < rng.uniform(0.2, 1.0))
    elif kind == 1:
        cm = np.kron(rng.integers(0, 5, (B, H // 4 + 1, W // 4 + 1)), np.ones((1, 4, 4), dtype=np.int64))[:, :H, :W]
    elif kind == 2:
        cm = np.full((B, H, W), int(rng.integers(0, 3)))
    else:
        cm = ((np.add.outer(np.arange(H), np.arange(W)) % 2) * int(rng.integers(1, 9)))[None].repeat(B, 0)
    C = 8
    mag = rng.random((B, H, W)) < rng.uniform(0.3, 0.9)
    heat = torch.from_numpy(rng.random((B, C, H, W)).astype(np.float32))
    if rng.random() < 0.5:  # quantised: ties everywhere
        heat = (heat * 4).floor() / 4
    return torch.from_numpy(cm.astype(np.uint8)), torch.from_numpy(mag), heat


@pytest.mark.parametrize("seed", range(24))
def test_class_map_labelling_equals_opencv_and_torch(seed):
    """``label_class_maps(backend="triton")``: the OpenCV batch's ids (OpenCV's order), table, pixels
    and clustering candidates; the torch backend's grouping bounds (``SlotBounds``)."""
    rng = np.random.default_rng(1000 + seed)
    cm, mag, heat = random_class_batch(rng)
    cluster = ClusterParams(area=int(rng.integers(2, 8)), area_eps=int(rng.integers(1, 4)))
    min_area = int(rng.integers(1, 12))
    k = int(rng.choice([1, 3, 5, 9]))
    thr = float(rng.choice([0.0, 0.3, 0.6]))
    ref = label_class_maps(cm, min_area, mag, cluster, backend="opencv")
    tor = label_class_maps(cm, min_area, mag, cluster, backend="torch", peaks_for=(heat, thr, k))
    dh = heat.to(DEVICE)
    tri = label_class_maps(cm.to(DEVICE), min_area, mag.to(DEVICE), cluster, backend="triton", peaks_for=(dh, thr, k))
    assert (tri.B, tri.H, tri.W, tri.M) == (ref.B, ref.H, ref.W, ref.M)
    for name in ("lab", "pix", "table", "cand", "comp_p", "col"):
        x, y = getattr(ref, name), getattr(tri, name).cpu()
        assert x.dtype == y.dtype and torch.equal(x, y), name
    a, b = tor.slot_bounds, tri.slot_bounds
    assert (a.K, a.kmax, a.T) == (b.K, b.kmax, b.T) and torch.equal(a.n_slots, b.n_slots.cpu())
    assert tri.peak_candidates.numel() == b.K and b.fits(dh, thr, k) and not b.fits(heat.clone().to(DEVICE), thr, k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile traces the compiled kernels (CUDA); the "
                    "interpreter's kernels are plain Python to it")
def test_label_regions_traces_under_torch_compile():
    """The kernels are ``triton_op``s: ``torch.compile(fullgraph=True)`` traces a call (fake tensors)
    and gives the eager result."""
    v = torch.from_numpy((np.random.default_rng(0).random((2, 33, 47)) < 0.5).astype(np.int32)).to(DEVICE)

    def f(x):
        root, stats, _ = label_regions(x, 8, True)
        return (root >= 0).sum() + stats[:, ST_AREA].sum()

    assert int(torch.compile(f, fullgraph=True)(v)) == int(f(v))

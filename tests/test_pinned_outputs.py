"""Decoding and refinement reproduce the outputs pinned on the pre-refactor commit d5086d3.

The inputs and expected outputs live in ``tests/data/pinned/*.npz`` (made by ``tests/make_pinned.py``;
its docstring lists the cases). Decoding is compared exactly (masks, classes and scores: the inputs
are on dyadic grids, so every sum is exact on any CPU). Refinement goes through a softmax and
``exp`` Gaussians, whose last bit may differ between CPUs / libm builds: its ``center`` and
``weight`` maps and the confidence statistic are compared with ``atol = 1e-6`` (about 8 float32 ulps
at 1.0); its offsets (integer differences), which pixels got a weight and the instance counts are
compared exactly. Every case runs with every component-engine backend ("opencv", the CPU default;
"torch", the fallback; "triton", the CUDA default: on CUDA when there is a GPU, else under Triton's
interpreter) and must give these same outputs.
"""
import dataclasses
import os

import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.component_engine import ClusterParams
from bestie_d2.modeling.post_processing import decode_instances
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label, refine_point

from triton_device import DEVICE, TRITON_OK

PINNED = os.path.join(os.path.dirname(__file__), "data", "pinned")
ATOL = 1e-6
BACKENDS = ["opencv", "torch"] + (["triton"] if TRITON_OK else [])


def on(backend, *tensors):
    """The tensors on the device the backend runs on (the Triton kernels: ``DEVICE``)."""
    dev = DEVICE if backend == "triton" else "cpu"
    return [t.to(dev) for t in tensors]


def load(name):
    with np.load(os.path.join(PINNED, name)) as f:
        return {k: torch.from_numpy(f[k]) for k in f.files}


DECODE = load("decode.npz")
REFINE = load("refine.npz")
DECODE_CASES = sorted({k.split("/")[0] for k in DECODE if k.endswith("/masks")})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", DECODE_CASES)
def test_decode_is_pinned(case, backend):
    img = case.split("_")[0]
    thr, k, min_area, use_cluster, md = DECODE[f"{case}/params"].tolist()
    cluster = ClusterParams(merge_distance=md) if use_cluster else None
    masks, classes, scores = decode_instances(
        *on(backend, DECODE[f"{img}/sem_prob"], DECODE[f"{img}/center"], DECODE[f"{img}/offset"]),
        center_threshold=thr, nms_kernel=int(k), min_area=int(min_area), cluster=cluster, backend=backend)
    assert torch.equal(masks.cpu(), DECODE[f"{case}/masks"])
    assert torch.equal(classes.cpu(), DECODE[f"{case}/classes"])
    assert torch.equal(scores.cpu(), DECODE[f"{case}/scores"])


def test_pinned_cases_cover_clustering_and_filtering():
    """The cases exercise the paths they are meant to (else a pin would prove little)."""
    assert DECODE["b_cluster/masks"].shape[0] > DECODE["b_nocluster/masks"].shape[0]  # clustering adds
    assert not torch.equal(DECODE["a_cluster/scores"], DECODE["a_nocluster/scores"])  # marked centers
    assert DECODE["a_small/masks"].shape[0] > DECODE["a_cluster/masks"].shape[0]  # min_area 20 vs 50
    assert len(set(DECODE["a_cluster/classes"].tolist())) >= 3
    assert not torch.equal(REFINE["default_cluster/weight"], REFINE["default_nocluster/weight"])
    assert float(REFINE["tight_cluster/stat_skipped_component_fraction"]) > 0


def refine_inputs():
    keys = ("logits", "center", "offset", "image_label", "wsss")
    points = [REFINE[f"points/{b}"] for b in range(REFINE["wsss"].shape[0])]
    return [REFINE[k] for k in keys], points


def check_refined(name, targets, stats):
    targets = {k: v.cpu() for k, v in targets.items()}
    for k, v in targets.items():
        want = REFINE[f"{name}/{k}"]
        if k == "offset":
            assert torch.equal(v, want), k
        else:
            torch.testing.assert_close(v, want, rtol=0, atol=ATOL)
        if k == "weight":
            assert torch.equal(v > 0, want > 0)
    n = float(REFINE[f"{name}/stat_refined_instances_per_image"])
    assert float(stats["refined_instances_per_image"]) == pytest.approx(n, abs=1e-12)
    assert float(stats["skipped_component_fraction"]) == pytest.approx(
        float(REFINE[f"{name}/stat_skipped_component_fraction"]), abs=1e-12)
    assert float(stats["mean_confidence"]) == pytest.approx(float(REFINE[f"{name}/stat_mean_confidence"]), abs=ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,params,cluster", [
    ("default_cluster", RefineParams(), ClusterParams()),
    ("default_nocluster", RefineParams(), None),
    ("tight_cluster", RefineParams(center_threshold=0.5, nms_kernel=9, max_instances=1, min_area=200, sigma=3.0),
     ClusterParams(merge_distance=8.0)),
])
def test_refine_image_label_is_pinned(name, params, cluster, backend):
    (logits, center, offset, label, wsss), _ = refine_inputs()
    params = dataclasses.replace(params, components_backend=backend)
    targets, stats = refine_image_label(*on(backend, logits, center, offset, label, wsss), params, cluster)
    check_refined(name, targets, stats)


def test_refine_point_is_pinned():
    (_, _, offset, label, wsss), points = refine_inputs()
    targets, stats = refine_point(offset, points, label, wsss)
    check_refined("point", targets, stats)

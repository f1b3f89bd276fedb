"""The Triton path of the component engine end to end: refinement and decoding give the reference
path's outputs, bit for bit. The reference is the OpenCV path on the CPU when the kernels run under
Triton's interpreter, and the torch path on the same GPU when they run on CUDA (the softmax's
``exp`` differs in the last bit between a CPU and a GPU, so only same-device outputs are compared).

* the benchmark inputs (``benchmarks/compare_outputs.make_inputs``: decoding at 416² and 512² with
  and without center clustering, image-label refinement of a batch of 4 at 416²);
* 16 random small cases with ties everywhere (heatmaps quantised to 4 levels, offsets on a 0.5 px
  grid, so that peaks, distances and maxima tie), several NMS windows / thresholds / skip limits;
* the worst cases of iterative labelling through refinement (a 1-px spiral, an isolated pixel
  every 2 px);
* half-precision maps (AMP): the targets of fp16 / bf16 maps equal those of the same values in
  float32, on both paths.

On CUDA (when there is a GPU) or under Triton's interpreter on the CPU (``triton_device``).
"""
import dataclasses
import os
import sys

import numpy as np
import pytest
import torch

from bestie_d2.component_engine import ClusterParams
from bestie_d2.modeling.post_processing import decode_instances
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label

from repo_paths import REPO
from triton_device import DEVICE, needs_triton

pytestmark = [needs_triton, pytest.mark.triton]
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_refine import synthetic_batch, worst_case_outputs  # noqa: E402
from compare_outputs import make_inputs  # noqa: E402


REFERENCE = "opencv" if DEVICE == "cpu" else "torch"


def refine_both(inputs, params, cluster):
    """``refine_image_label`` on the reference path and the Triton path (both on ``DEVICE``)."""
    inputs = [t.to(DEVICE) for t in inputs]
    a = refine_image_label(*inputs, dataclasses.replace(params, components_backend=REFERENCE), cluster)
    b = refine_image_label(*inputs, dataclasses.replace(params, components_backend="triton"), cluster)
    return a, b


def assert_same_refinement(a, b):
    (ta, sa), (tb, sb) = a, b
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    for k in sa:
        if k != "refine_time_s":
            assert float(sa[k]) == float(sb[k]), k


def decode_both(sem_prob, center, offset, **kw):
    sem_prob, center, offset = sem_prob.to(DEVICE), center.to(DEVICE), offset.to(DEVICE)
    a = decode_instances(sem_prob, center, offset, backend=REFERENCE, **kw)
    b = decode_instances(sem_prob, center, offset, backend="triton", **kw)
    return a, b


def assert_same_instances(a, b):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.fixture(scope="module")
def bench_inputs():
    return {k: torch.from_numpy(v) for k, v in make_inputs([416, 512]).items()}


@pytest.mark.parametrize("size", [416, 512])
@pytest.mark.parametrize("cluster", [ClusterParams(), None], ids=["cluster", "nocluster"])
def test_decoding_on_benchmark_inputs(bench_inputs, size, cluster):
    x = bench_inputs
    a, b = decode_both(x[f"decode{size}/sem_prob"], x[f"decode{size}/center"], x[f"decode{size}/offset"],
                       center_threshold=0.1, nms_kernel=41, min_area=50, cluster=cluster)
    assert a[0].shape[0] >= 10  # a real case: the ten instances (and some noise) are found
    assert_same_instances(a, b)


@pytest.mark.parametrize("cluster", [ClusterParams(), None], ids=["cluster", "nocluster"])
def test_refinement_on_benchmark_inputs(bench_inputs, cluster):
    inputs = [bench_inputs[f"refine/{k}"] for k in ("logits", "center", "offset", "label", "wsss")]
    a, b = refine_both(inputs, RefineParams(), cluster)
    assert float(a[1]["refined_instances_per_image"]) > 1
    assert_same_refinement(a, b)


def tie_case(seed):
    """Small outputs with ties everywhere, and the parameters to run them with."""
    rng = np.random.default_rng(seed)
    (logits, center, offset, label, wsss), _ = synthetic_batch(int(rng.integers(1, 4)), 64, 6, seed=seed)
    center = (center.clamp(0, 1) * 4).round() / 4
    offset = (offset * 2).round() / 2
    params = RefineParams(center_threshold=float(rng.choice([0.1, 0.3, 0.5])),
                          nms_kernel=int(rng.choice([1, 3, 7, 41])), max_instances=int(rng.integers(1, 6)),
                          min_area=int(rng.choice([1, 10, 50])))
    cluster = ClusterParams(merge_distance=float(rng.choice([-1.0, 4.0, 100.0]))) if seed % 2 else None
    return (logits, center, offset, label, wsss), params, cluster


@pytest.mark.parametrize("seed", range(16))
def test_refinement_and_decoding_with_ties(seed):
    inputs, params, cluster = tie_case(seed)
    assert_same_refinement(*refine_both(inputs, params, cluster))
    logits, center, offset = inputs[:3]
    a, b = decode_both(logits[0].softmax(0), center[0], offset[0], center_threshold=params.center_threshold,
                       nms_kernel=params.nms_kernel, min_area=params.min_area, cluster=cluster)
    assert_same_instances(a, b)


@pytest.mark.parametrize("kind", ["spiral", "tiny"])
def test_worst_cases_through_refinement(kind):
    inputs = worst_case_outputs(kind, 2, 96, 6)
    assert_same_refinement(*refine_both(inputs, RefineParams(min_area=1), ClusterParams()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", [REFERENCE, "triton"])
def test_half_precision_maps_give_the_float32_targets(dtype, backend):
    """AMP: maps in fp16 / bf16 are refined and decoded as their float32 values (same targets)."""
    logits, center, offset, label, wsss = (t.to(DEVICE) for t in synthetic_batch(2, 128, 6, seed=5)[0])
    half = [t.to(dtype) for t in (logits, center, offset)]
    params = RefineParams(components_backend=backend)
    th, sh = refine_image_label(*half, label, wsss, params, ClusterParams())
    tf, sf = refine_image_label(*(t.float() for t in half), label, wsss, params, ClusterParams())
    assert float(sh["refined_instances_per_image"]) > 0
    for k in tf:
        assert th[k].dtype == torch.float32 and torch.equal(th[k], tf[k]), k
    prob = half[0][0].float().softmax(0).to(dtype)
    a = decode_instances(prob, half[1][0], half[2][0], cluster=ClusterParams(), backend=backend)
    b = decode_instances(prob.float(), half[1][0].float(), half[2][0].float(), cluster=ClusterParams(), backend=backend)
    assert a[0].shape[0] > 0
    assert_same_instances(a, b)

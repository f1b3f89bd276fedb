"""Learned-quality gates: a tiny BESTIE overfits a few toy images, in both supervision routes.

The case (``tests/overfit_case.py``): 8 toy images (31 instances, 5 classes), ground-truth
semantic maps as the WSSS maps, ground-truth points as the cues, no self-refinement, no scale
jitter, 300 iterations at batch 4 with the LR decaying to zero; VOC mAP50 on the same images.

Spread measured before choosing the threshold (``benchmarks/quality_spread.py``; idle-ish 2-core
Intel Xeon, torch 2.14.1 CPU; seeds x torch threads {1, 2} x {detectron2 0.6 Python files,
detectron2 main 02b5c4e2 built from source} as listed; min / median / max mAP50):

    point route
    detectron2 0.6               1 thread :  80.6 /  85.9 /  90.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 0.6               2 threads:  80.1 /  83.7 /  95.2  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     1 thread :  80.2 /  87.1 /  95.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     2 threads:  76.4 /  84.8 /  89.7  (seeds 1,2,3,4,5,6,7,8)
    all 32 runs:                          76.4 /  85.6 /  95.2
    image route
    detectron2 0.6               1 thread :  82.3 /  86.9 /  88.3  (seeds 1,2,3,4,5,6,7,8)
    detectron2 0.6               2 threads:  85.5 /  88.3 /  91.7  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     1 thread :  85.1 /  88.3 /  95.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     2 threads:  81.5 /  88.3 /  95.0  (seeds 1,2,3,4,5,6,7,8)
    all 32 runs:                          81.5 /  88.3 /  95.0

An untrained model scores mAP50 0.0 (point) and 0.0 (image) on the same images (``test_untrained_model_fails_gate``).
The threshold (65) sits 11.4 (point) and 16.5 (image) points under the worst measured run. The gate runs with
one torch thread (the suite's, ``tests/conftest.py``; both thread counts are in the spread above): with two
CPU-bound neighbours on 2 cores, 2 threads took 16.6 s per iteration against 1.7 s with one thread
(``benchmarks/threads_under_load.py``, BENCHMARKS.md). The time is printed, not asserted; the timeout (1800 s)
covers the loaded case. ``BESTIE_OVERFIT_SEED=N`` tries another seed.
"""
import os

import pytest

from conftest import TEST_THREADS
from overfit_case import run_overfit

# at least 10 points under the worst run measured over seeds, threads and detectron2 versions
MIN_MAP50 = {"point": 65.0, "image": 65.0}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("route", ["point", "image"])
def test_tiny_bestie_overfits_toy_images(tmp_path, route):
    seed = int(os.environ.get("BESTIE_OVERFIT_SEED", "1"))
    res = run_overfit(route, str(tmp_path), seed=seed, threads=TEST_THREADS)
    print(f"overfit ({route}, seed {seed}): mAP50 {res['mAP50']:.1f} in {res['seconds']:.0f}s")
    assert res["mAP50"] > MIN_MAP50[route], res


@pytest.mark.parametrize("route", ["point", "image"])
def test_untrained_model_fails_gate(tmp_path, route):
    """The gate is meaningful: the same case without training fails it."""
    res = run_overfit(route, str(tmp_path), seed=1, threads=TEST_THREADS, iterations=0)
    assert res["mAP50"] < MIN_MAP50[route], res

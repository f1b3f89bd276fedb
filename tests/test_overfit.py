"""A tiny BESTIE overfits a few toy images (issue 3 acceptance).

Semantic maps and points come from ground truth (GT class maps as simulated WSSS maps, GT points
as cues), training and evaluation use the same 6 images; VOC mAP50 must exceed 0.8.
Measured on the 2-core development machine (idle), 220 iterations at batch 4: mAP50 90.0 in 110 s
of training + evaluation with seed 4 (the test's), 81.7 in 121 s with seed 3; with 4 images,
160 iterations: 81.7 in 77 s. The few instances per class make AP jump in steps of 17-33 points,
so the seed (all RNGs) and the thread count are fixed. Part of `make test`; the time is printed,
not asserted (it depends on the machine). `BESTIE_OVERFIT_SEED=N` tries another seed.
"""
import os
import time

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("route", ["point"])
def test_tiny_bestie_overfits_toy_images(tmp_path, route):
    import bestie_d2  # noqa: F401

    # a fixed thread count (2, the CI machine's cores): the float reduction order, hence the
    # training trajectory, depends on it; and whatever earlier tests left set does not matter
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _overfit(tmp_path, route)
    finally:
        torch.set_num_threads(threads)


def _overfit(tmp_path, route):
    from bestie_d2 import add_bestie_config
    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.data.toy import generate_toy_dataset
    from bestie_d2.engine.trainer import Trainer
    from detectron2.config import get_cfg

    from detectron2.utils.env import seed_all_rng

    # Trainer(cfg) does not seed (default_setup does): seed python/numpy/torch here so the
    # augmentations do not depend on what earlier tests left in the global RNGs.
    seed = int(os.environ.get("BESTIE_OVERFIT_SEED", "4"))
    seed_all_rng(seed)
    root = str(tmp_path / "toy")
    kw = dict(seed=11, num_train=6, num_val=1)
    generate_toy_dataset(root, **kw)
    register_toy_dataset("overfit_toy", root, **kw)
    cfg = get_cfg()
    add_bestie_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, f"configs/toy/bestie_{route}_label.yaml"))
    cfg.merge_from_list([
        "BESTIE.DATA.WSSS_DIR", os.path.join(root, "SegmentationClass"),
        "BESTIE.DATA.PEAK_POINTS_DIR", os.path.join(root, "Center_points"),
        "DATASETS.TRAIN", "('overfit_toy_train',)", "DATASETS.TEST", "('overfit_toy_train',)",
        "SOLVER.MAX_ITER", "220", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "20",
        "MODEL.BESTIE.REFINE.START_ITER", "140", "MODEL.BESTIE.TEST.FLIP", "False",
        "BESTIE.INPUT.SCALES", "[0.9, 1.0, 1.1]",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path / "out"), "SEED", str(seed),
    ])
    cfg.freeze()
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    res = Trainer.test(cfg, trainer.model)
    elapsed = time.perf_counter() - t0
    print(f"overfit ({route}): {res['voc_instance']} in {elapsed:.0f}s")
    assert res["voc_instance"]["mAP50"] > 80.0

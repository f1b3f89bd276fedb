"""The BESTIE quality-gate case shared by ``tests/test_overfit.py`` and
``benchmarks/quality_spread.py`` (which measures its spread over seeds, thread counts and
detectron2 versions).

A tiny BESTIE (the toy config's ResNet-18 model) is trained on a few toy images with ground-truth
semantic maps as the WSSS maps and ground-truth points as the cues, without self-refinement, and
evaluated on the same images (VOC mAP). Scale jitter is off and the LR decays to zero (poly), so
training ends on a plateau instead of wherever the last step left it.
"""
import os
import time

from repo_paths import REPO

# Toy set of the case: 8 images, 5 classes, seed 11 (31 instances)
TOY_KWARGS = dict(seed=11, num_train=8, num_val=1)
ITERATIONS = 300


def overfit_config(route: str, root: str, dataset: str, output_dir: str, seed: int, iterations: int = ITERATIONS,
                   opts=()):
    """The case's config: ``configs/toy/bestie_<route>_label.yaml`` + GT inputs, no refinement,
    then ``opts`` (further ``KEY VALUE`` pairs, e.g. a setting whose effect is measured)."""
    from bestie_d2.config import load_config

    return load_config(os.path.join(REPO, "configs", "toy", f"bestie_{route}_label.yaml"), [
        "BESTIE.DATA.WSSS_DIR", os.path.join(root, "SegmentationClass"),
        "BESTIE.DATA.PEAK_POINTS_DIR", os.path.join(root, "Center_points"),
        "BESTIE.DATA.CENTER_POINTS_DIR", os.path.join(root, "Center_points"),
        "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", f"('{dataset}',)",
        "SOLVER.MAX_ITER", str(iterations), "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "20",
        "SOLVER.BASE_LR", "0.002",
        "MODEL.BESTIE.REFINE.ENABLED", "False", "MODEL.BESTIE.TEST.FLIP", "False",
        "BESTIE.INPUT.SCALES", "[1.0]",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", output_dir, "SEED", str(seed),
    ] + list(opts))


def run_overfit(route: str, workdir: str, seed: int, threads: int, iterations: int = ITERATIONS, opts=()) -> dict:
    """Train and evaluate the case; returns the VOC metrics plus ``seconds``.

    ``iterations=0`` evaluates the untrained (randomly initialised) model; ``opts`` are extra
    ``KEY VALUE`` config pairs (:func:`overfit_config`).
    """
    import torch

    import bestie_d2  # noqa: F401
    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.data.toy import generate_toy_dataset
    from bestie_d2.engine.trainer import Trainer
    from detectron2.data import DatasetCatalog
    from detectron2.utils.env import seed_all_rng

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # Trainer(cfg) does not seed (default_setup does): seed python/numpy/torch here so the
        # augmentations do not depend on what earlier code left in the global RNGs.
        seed_all_rng(seed)
        root = os.path.join(workdir, "toy")
        generate_toy_dataset(root, **TOY_KWARGS)
        name = f"overfit_toy_{len(DatasetCatalog.list())}"  # a fresh name per call (one per root)
        register_toy_dataset(name, root, **TOY_KWARGS)
        cfg = overfit_config(route, root, f"{name}_train", os.path.join(workdir, f"out_{route}_{seed}"), seed,
                             max(iterations, 1), opts)
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        if iterations > 0:
            trainer.train()
        res = dict(Trainer.test(cfg, trainer.model)["voc_instance"])
        res["seconds"] = time.perf_counter() - t0
        return res
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------
# PAM classifier gate: a tiny PAM classifier learns the image labels of a synthetic set
# ------------------------------------------------------------------------------------------------
PAM_ITERATIONS = 200


def synthetic_squares(n=12, size=64, num_classes=3, seed=0):
    """Noise images with solid squares whose colour encodes the class: (images, multi-hot labels)."""
    import numpy as np
    import torch

    from bestie_d2.data.pam_mapper import labels_to_multi_hot

    rng = np.random.RandomState(seed)
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]])
    images, labels = [], []
    for i in range(n):
        img = rng.randint(60, 120, (size, size, 3)).astype(np.uint8)
        lab = [c for c in range(num_classes) if rng.rand() < 0.5] or [i % num_classes]
        for c in lab:
            for _ in range(rng.randint(1, 3)):
                r = rng.randint(5, 10)
                y, x = rng.randint(r, size - r, 2)
                img[y - r : y + r, x - r : x + r] = colours[c]
        images.append(torch.as_tensor(img.transpose(2, 0, 1).copy()))
        labels.append(labels_to_multi_hot(lab, num_classes))
    return images, labels


def run_pam_overfit(seed: int, threads: int, iterations: int = PAM_ITERATIONS) -> dict:
    """Train a tiny PAM classifier (VGG-16 D1 at 1/8 width) for ``iterations`` Adam steps on 10
    synthetic 48 px images and return the multi-label classification metrics on them (+ ``seconds``).
    ``seed`` seeds torch (the initialisation); the images are fixed."""
    import torch

    from bestie_d2.evaluation.multilabel import MultiLabelClassificationEvaluator
    from bestie_d2.modeling.backbone.vgg import VGG16D1
    from bestie_d2.modeling.pam import PAMClassifier

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        images, labels = synthetic_squares(n=10, size=48)
        model = PAMClassifier(
            backbone=VGG16D1(0.125), in_feature="conv5", num_classes=3, extra_channels=32, pam_layers=(2,),
            alpha=0.7, pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = [{"image": im, "image_label": lb} for im, lb in zip(images, labels)]
        t0 = time.perf_counter()
        for _ in range(iterations):
            model.train()
            loss = model(batch)["loss_cls"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        ev = MultiLabelClassificationEvaluator("pam_overfit_unregistered", distributed=False)
        ev.reset()
        with torch.no_grad():
            ev.process(batch, model(batch))
        res = dict(ev.evaluate()["classification"])
        res["seconds"] = time.perf_counter() - t0
        return res
    finally:
        torch.set_num_threads(before)

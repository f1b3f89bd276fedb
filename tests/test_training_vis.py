"""Training pictures in TensorBoard (issue 14, item 5): ``VIS_PERIOD > 0`` -> ``EventStorage.put_image``.

Two 3-iteration runs of the toy BESTIE config (batch 2, refinement from iteration 2): with
``VIS_PERIOD 2`` a picture (3, H, W) uint8 lands in the storage at iterations 0 and 2 (the second
with refined labels) and in the TensorBoard event file; with ``VIS_PERIOD 0`` there is no hook, no
capture and no picture, and the trained weights are bit-identical to the ``VIS_PERIOD 2`` run's.
"""
import glob
import os

import numpy as np
import pytest
import torch

from repo_paths import REPO


def _cfg(toy_root, out, vis_period):
    from bestie_d2.tools import train_net

    argv = [
        "--config-file", os.path.join(REPO, "configs/toy/bestie_image_label.yaml"),
        "DATASETS.TRAIN", "('test_toy_train',)", "DATASETS.TEST", "()",
        "BESTIE.DATA.WSSS_DIR", os.path.join(toy_root, "SegmentationClass"),
        "BESTIE.DATA.PEAK_POINTS_DIR", os.path.join(toy_root, "Center_points"),
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "2",
        "MODEL.BESTIE.REFINE.START_ITER", "2", "DATALOADER.NUM_WORKERS", "0",
        "VIS_PERIOD", str(vis_period), "OUTPUT_DIR", str(out),
    ]
    return train_net.setup(train_net.default_argument_parser().parse_args(argv))


def _trainer_class():
    from detectron2.engine import HookBase

    from bestie_d2.engine.trainer import Trainer

    class Probe(HookBase):
        """Records the storage's pictures after every step, before the writer may clear them."""

        def __init__(self):
            self.seen = []

        def after_step(self):
            for name, img, it in self.trainer.storage._vis_data:
                if it == self.trainer.iter:  # put in this step (older ones wait for the writer)
                    self.seen.append((name, it, tuple(img.shape), img.dtype, np.asarray(img).copy()))

    class ProbedTrainer(Trainer):
        def build_hooks(self):
            hooks = super().build_hooks()
            self.probe = Probe()
            hooks.insert(-1, self.probe)  # after the vis hook, before the PeriodicWriter
            return hooks

    return ProbedTrainer


def _train(toy_root, out, vis_period, monkeypatch=None, snapshots=None):
    cfg = _cfg(toy_root, out, vis_period)
    if snapshots is not None:
        from bestie_d2.engine import training_vis

        render = training_vis.render_training_vis

        def spy(snap, *a, **k):
            snapshots.append(snap)
            return render(snap, *a, **k)

        monkeypatch.setattr(training_vis, "render_training_vis", spy)
    trainer = _trainer_class()(cfg)
    trainer.train()
    return trainer


@pytest.mark.timeout(300)
def test_vis_period_puts_pictures_and_keeps_training_identical(toy_root, tmp_path, monkeypatch, one_torch_thread):
    from bestie_d2.engine.training_vis import TAG, TrainingVisHook

    snaps = []
    vis = _train(toy_root, tmp_path / "vis", 2, monkeypatch, snaps)
    assert sum(isinstance(h, TrainingVisHook) for h in vis._hooks) == 1
    seen = vis.probe.seen
    assert [(name, it) for name, it, *_ in seen] == [(TAG, 0), (TAG, 2)]
    for _, _, shape, dtype, img in seen:
        assert dtype == np.uint8 and len(shape) == 3 and shape[0] == 3
        assert shape[1] >= 2 * 128 and shape[2] >= 4 * 2 * 128  # four panels of the doubled 128 crop
        assert img.std() > 5  # not a blank picture
    assert seen[0][2] == seen[1][2]  # one layout whether refinement is on or not
    assert [s["refined"] is not None for s in snaps] == [False, True]  # refinement starts at iteration 2
    assert snaps[0]["pseudo"]["weight"].sum() > 0 and snaps[0]["pred"]["center"].shape[0] == 5
    model = vis.model
    assert model.vis_capture is False and model.last_vis is None
    assert vis.storage._vis_data == []  # the TensorBoard writer wrote and cleared them
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = glob.glob(str(tmp_path / "vis" / "events.out.tfevents.*"))
    acc = EventAccumulator(events, size_guidance={"images": 0})
    acc.Reload()
    imgs = acc.Images(TAG)
    assert [e.step for e in imgs] == [0, 2] and (imgs[0].height, imgs[0].width) == seen[0][2][1:]

    plain = _train(toy_root, tmp_path / "plain", 0)
    assert not any(isinstance(h, TrainingVisHook) for h in plain._hooks)
    assert plain.probe.seen == [] and plain.storage._vis_data == []
    assert plain.model.vis_capture is False and plain.model.last_vis is None
    a, b = vis.model.state_dict(), plain.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "training pictures changed the training"
    la, lb = (t.storage.history("total_loss").values() for t in (vis, plain))
    assert la == lb


def test_instances_from_targets_groups_by_center():
    from bestie_d2.engine.training_vis import instances_from_targets

    H, W = 20, 30
    sem = np.zeros((H, W), np.int64)
    off = np.zeros((2, H, W), np.float32)
    weight = np.zeros((H, W), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    for (y0, y1, x0, x1, c, cy, cx) in ((2, 8, 2, 10, 1, 5, 6), (2, 8, 10, 20, 1, 5, 15), (10, 18, 5, 25, 3, 14, 15)):
        m = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        sem[m] = c + 1
        weight[m] = 0.5
        off[0][m] = cy - yy[m]
        off[1][m] = cx - xx[m]
    masks, classes, centers = instances_from_targets(off, weight, sem)
    assert len(masks) == 3 and sorted(classes.tolist()) == [1, 1, 3]
    assert sorted(map(tuple, centers.tolist())) == [(5, 6), (5, 15), (14, 15)]
    assert masks.sum() == int((weight > 0).sum()) and (masks.sum(0) <= 1).all()
    m0, c0, _ = instances_from_targets(off, np.zeros_like(weight), sem)
    assert m0.shape == (0, H, W) and c0.size == 0

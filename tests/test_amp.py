"""Mixed-precision training (``SOLVER.AMP.ENABLED``, ``SOLVER.AMP.PRECISION``): detectron2's
``AMPTrainer`` with float16 or bfloat16 autocast (``engine.train_loop.PrecisionAMPTrainer``)
trains BESTIE with self-refinement, losses finite; a non-finite loss stops it before the update.

On the CPU, autocast runs in bfloat16 and float16 alike (torch's CPU autocast), so the whole step
(network under autocast, refinement on the half-precision maps, losses, scaled backward) is
exercised here; the GPU timings are in ``benchmarks/bench_refine.py --amp``.
"""
import os
import sys

import pytest
import torch

from bestie_d2.engine.train_loop import NonFiniteLossError, PrecisionAMPTrainer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from repo_paths import REPO
from test_engine import _cfg, _Trainer

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_train_step import synthetic_batch  # noqa: E402


def loader(batch):
    while True:
        yield batch


@pytest.mark.parametrize("precision", [torch.bfloat16, torch.float16])
def test_bestie_trains_with_refinement_under_autocast(tiny_bestie_cfg, precision, one_torch_thread):
    cfg = tiny_bestie_cfg
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    model.refine_active = True
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = synthetic_batch(2, 64, cfg.BESTIE.NUM_CLASSES)
    trainer = PrecisionAMPTrainer(model, loader(batch), opt, precision)
    assert trainer.grad_scaler.is_enabled() == (precision == torch.float16)
    if precision == torch.float16:  # a small initial scale: fewer skipped steps before the first update
        trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 6)
    before = [p.detach().clone() for p in model.parameters()]
    changed = False
    with EventStorage(0) as storage:
        for it in range(20):  # float16: the scaler skips the first steps while it lowers its scale
            trainer.iter = it
            storage.iter = it
            trainer.run_step()
            losses = {k: v.latest() for k, v in storage.histories().items() if k.startswith("loss")}
            assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), (it, losses)
            changed = any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
            if changed and it >= 2:
                break
    assert {"loss_sem_seg", "loss_center", "loss_offset", "loss_offset_refined"} <= set(losses), sorted(losses)
    assert model.last_refine_stats is not None
    assert changed, "no optimizer step was taken"


def test_trainer_builds_the_precision_from_the_config(tmp_path):
    cfg = _cfg(tmp_path, max_iter=3)
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    trainer = _Trainer(cfg)
    assert isinstance(trainer._trainer, PrecisionAMPTrainer) and trainer._trainer.precision == torch.bfloat16
    trainer.train()
    cfg = _cfg(tmp_path / "bad", max_iter=3)
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.PRECISION = "fp8"
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION must be one of"):
        _Trainer(cfg)


def test_non_finite_loss_stops_amp_training_before_the_update(tmp_path):
    _Trainer.nan_at = 2
    try:
        cfg = _cfg(tmp_path, max_iter=6)
        cfg.SOLVER.AMP.ENABLED = True
        cfg.SOLVER.AMP.PRECISION = "bfloat16"
        trainer = _Trainer(cfg)
        trainer.resume_or_load(resume=False)
        with pytest.raises(NonFiniteLossError, match="iteration 2"):
            trainer.train()
        assert torch.isfinite(trainer.model.lin.weight).all()
    finally:
        _Trainer.nan_at = None

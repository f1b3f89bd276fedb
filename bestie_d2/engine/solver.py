"""Optimizers and LR schedules used by BESTIE / PAM training.

``SOLVER.LR_SCHEDULER_NAME "WarmupPolyLR"`` reproduces the authors' schedule exactly
(docs/method.md §1.3): ``lr(t) = base_lr · m(t)`` with ``m(t) = w(t) · (1 − t/T)^power``,
``w(t) = f + (1 − f)·t/W`` for ``t < W`` (``f = SOLVER.WARMUP_FACTOR``, ``W = SOLVER.WARMUP_ITERS``)
and 1 afterwards; ``T = SOLVER.MAX_ITER``, ``power = SOLVER.POLY_LR_POWER``. The multiplier runs
in detectron2's own ``LRMultiplier`` (the scheduler detectron2 builds for its other schedules);
the warm-up is always linear (``SOLVER.WARMUP_METHOD`` is not read).

Why not ``detectron2.projects.deeplab``'s ``WarmupPolyLR`` (same keys, same formula on paper):
it computes ``base_lr · (f·(1 − t/W) + t/W) · (1 − t/T)^power`` in another order, which differs
from this schedule by up to 1 ulp during the warm-up (measured: 1052 of the 2000 warm-up
iterations of ``configs/Base-BESTIE.yaml``, relative difference ≤ 5e-16; identical afterwards).
Training outputs are kept bit-identical, so this schedule stays; ``tests/test_engine.py`` pins
its values and compares it with detectron2's.
"""
import logging

import torch
from fvcore.common.param_scheduler import ParamScheduler
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.solver.lr_scheduler import LRMultiplier

__all__ = ["WarmupPolyParamScheduler", "build_lr_scheduler", "build_optimizer"]

logger = logging.getLogger(__name__)


class WarmupPolyParamScheduler(ParamScheduler):
    """Multiplier ``w(t)·(1 − t/T)^power`` as a function of ``where = t/T`` in [0, 1] (module doc).

    ``max_iter`` ``T`` and ``warmup_iters`` ``W`` in iterations; ``warmup_factor`` ``f`` the
    multiplier at ``t = 0``; the result is 0 from ``t = T`` on.
    """

    def __init__(self, max_iter: int, warmup_iters: int, warmup_factor: float, power: float):
        self.max_iter = max(int(max_iter), 1)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.power = float(power)

    def __call__(self, where: float) -> float:
        t = where * self.max_iter
        warm = 1.0
        if t < self.warmup_iters:
            warm = self.warmup_factor + (1.0 - self.warmup_factor) * t / self.warmup_iters
        return warm * max(1.0 - where, 0.0) ** self.power


def build_lr_scheduler(cfg, optimizer):
    """``WarmupPolyLR`` here; every other name goes to detectron2's builder."""
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR":
        sched = WarmupPolyParamScheduler(
            cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR, cfg.SOLVER.POLY_LR_POWER
        )
        return LRMultiplier(optimizer, multiplier=sched, max_iter=cfg.SOLVER.MAX_ITER)
    return d2_build_lr_scheduler(cfg, optimizer)


def build_optimizer(cfg, model):
    """Adam (BESTIE), the PAM four-group SGD, or detectron2's SGD, by config."""
    if cfg.MODEL.META_ARCHITECTURE == "PAMClassifier":
        from ..modeling.pam import build_pam_optimizer

        return build_pam_optimizer(cfg, model)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return d2_build_optimizer(cfg, model)
    if name in ("ADAM", "ADAMW"):
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        cls = torch.optim.Adam if name == "ADAM" else torch.optim.AdamW
        return maybe_add_gradient_clipping(cfg, cls)(params, lr=cfg.SOLVER.BASE_LR)
    raise ValueError(f"SOLVER.OPTIMIZER must be 'ADAM', 'ADAMW' or 'SGD', got {cfg.SOLVER.OPTIMIZER!r}")

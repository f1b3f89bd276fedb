"""Optimizers and LR schedules used by BESTIE / PAM training.

``WarmupPolyLR`` reproduces the authors' schedule exactly (docs/method.md §1.3):
``lr(t) = base_lr · w(t) · (1 − t/T)^power`` with ``w(t) = f + (1 − f)·t/W`` for ``t < W``
(``f = SOLVER.WARMUP_FACTOR``, ``W = SOLVER.WARMUP_ITERS``) and 1 afterwards.
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
    """Multiplier ``w(t)·(1 − t/T)^power`` as a function of ``where = t/T`` in [0, 1)."""

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

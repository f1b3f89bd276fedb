"""The training stages (``pam``, ``bestie``, ``refine``): Detectron2 training with bestie_d2's Trainer.

Runs in every process of the stage (see :mod:`.launching`). ``resume_or_load(resume=True)``:
a stage that was killed continues from ``OUTPUT_DIR/last_checkpoint`` (iteration, optimizer,
LR schedule, refinement schedule); a fresh stage has an empty folder and starts from
``MODEL.WEIGHTS``. Evaluation on ``DATASETS.TEST`` runs at the end (``TEST.EVAL_PERIOD`` as set).
"""
import os

from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from ...engine.trainer import Trainer
from ...maskrcnn_refinement import register_pseudo_coco_from_config, unregister_pseudo_coco
from .launching import to_json

__all__ = ["train_stage"]


def train_stage(cfg) -> dict:
    """Train ``cfg`` (frozen) in ``cfg.OUTPUT_DIR``; returns ``{"weights", "eval"}``.

    A refinement config's pseudo-label json (``BESTIE.PSEUDO_COCO``) is registered (again) as a
    data set; then every global RNG is seeded with ``cfg.SEED + rank`` (a negative SEED: a fresh
    random seed), as Detectron2's ``default_setup`` does.
    """
    if cfg.BESTIE.PSEUDO_COCO.NAME:  # this run's json, even if the name was registered before
        unregister_pseudo_coco(cfg.BESTIE.PSEUDO_COCO.NAME)
        register_pseudo_coco_from_config(cfg)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + comm.get_rank())
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    return {"weights": os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "eval": to_json(trainer.last_eval_results)}

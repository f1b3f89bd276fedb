"""The work of each pipeline stage, as functions of a frozen config (no bookkeeping here: see
:mod:`bestie_d2.pipeline.ledger`). Training and inference stages run under Detectron2's
``launch`` (:mod:`.launching`)."""
from .cam import cam_stage
from .export import export_stage, load_trained_model
from .grid import grid_stage
from .launching import ProcessLayout, run_launched
from .training import train_stage

__all__ = ["ProcessLayout", "cam_stage", "export_stage", "grid_stage", "load_trained_model", "run_launched",
           "train_stage"]

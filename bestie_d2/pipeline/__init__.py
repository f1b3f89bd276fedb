"""bestie-pipeline: the whole BESTIE pipeline as one resumable command, on any registered data set.

Stages ``pam → cues → maps → bestie → export → refine → grid`` (:mod:`.plan`), each with its config
(:mod:`.presets`, :mod:`.stage_configs`), its work (:mod:`.stages`, run under Detectron2's
``launch``) and its record (:mod:`.ledger`: skip when done, resume when killed, rerun when its
config or inputs changed); :mod:`.report` prints and writes the results. The command line is
:mod:`bestie_d2.tools.pipeline` (console script ``bestie-pipeline``); ``make demo`` is its ``toy`` preset.
"""
from .options import OptionsError, PipelineOptions, check_options
from .plan import STAGE_HELP, STAGES, stage_plan
from .presets import PRESETS, REFINERS
from .runner import dataset_summary, run_pipeline
from .stage_configs import ConfigError

__all__ = ["ConfigError", "OptionsError", "PRESETS", "PipelineOptions", "REFINERS", "STAGES", "STAGE_HELP", "check_options",
           "dataset_summary", "run_pipeline", "stage_plan"]

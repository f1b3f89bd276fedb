"""The config of every stage: its file, what the pipeline sets, then the user's ``KEY VALUE`` overrides.

What the pipeline sets (before the user's overrides, so a ``--<stage>-opts`` value wins):

* every stage: ``DATASETS`` = the run's train / test pair and the class counts
  (``BESTIE.NUM_CLASSES``, ``MODEL.PAM.NUM_CLASSES``, ``MODEL.ROI_HEADS.NUM_CLASSES``,
  ``MODEL.POINT_HEAD.NUM_CLASSES``) = the train set's ``thing_classes``;
* ``cues`` / ``maps``: the PAM config (+ ``--pam-opts``) with ``MODEL.WEIGHTS`` = the trained PAM;
* ``bestie``: ``BESTIE.DATA.PEAK_POINTS_DIR`` (image route), ``WSSS_DIR`` and, when given,
  ``CENTER_POINTS_DIR``;
* ``export``: the BESTIE config with ``MODEL.WEIGHTS`` = the trained BESTIE and
  ``MODEL.BESTIE.TEST.USE_POINTS`` on in the point route (one pseudo instance per point label);
* ``refine``: ``BESTIE.PSEUDO_COCO.*`` = the exported json, registered as ``<train>_pseudo_<route>``
  and used as ``DATASETS.TRAIN``;

and after the overrides ``OUTPUT_DIR`` = the stage's folder and ``SEED`` = ``--seed`` when given.
"""
import os
from typing import Dict, List, Optional

from ..config import load_config, merge_overrides
from .options import OptionsError, PipelineOptions
from .presets import PRESETS, preset_config_file

__all__ = ["ConfigError", "StagePaths", "StageConfigs", "stage_config_file"]


class ConfigError(OptionsError):
    """A stage config that does not load (file, key or value), named with its flag."""


def stage_config_file(o: PipelineOptions, stage: str) -> str:
    """The config file of ``stage`` ("pam", "bestie", "refine"): the flag's, else the preset's."""
    given = {"pam": o.pam_config, "bestie": o.bestie_config, "refine": o.refine_config}[stage]
    if given:
        if not os.path.isfile(given):
            raise ConfigError(f"--{stage}-config {given}: no such file")
        return os.path.abspath(given)
    try:
        return preset_config_file(o.preset, stage, supervision=o.supervision, backbone=o.backbone, refiner=o.refiner)
    except FileNotFoundError as e:
        raise ConfigError(f"{o.preset} preset, {stage} stage: {e}") from None


class StagePaths:
    """Where each stage writes, inside the run folder (see :data:`~.plan.STAGE_HELP`)."""

    def __init__(self, run_dir: str, refiner: str):
        self.run_dir = run_dir
        self.pam_weights = os.path.join(run_dir, "pam", "model_final.pth")
        self.cues_dir = os.path.join(run_dir, "cues", "Peak_points")
        self.maps_dir = os.path.join(run_dir, "maps", "WSSS_maps")
        self.bestie_weights = os.path.join(run_dir, "bestie", "model_final.pth")
        self.pseudo_json = os.path.join(run_dir, "export", "pseudo_instances_train.json")
        self.refine_stage_dir = f"refine_{refiner}"  # one folder per refiner: both can share an export
        self.refine_dir = os.path.join(run_dir, self.refine_stage_dir)
        self.refine_init = os.path.join(self.refine_dir, "init_from_bestie.pth")
        self.grid_png = os.path.join(run_dir, "grid.png")
        self.configs_dir = os.path.join(run_dir, "configs")


class StageConfigs:
    """Builds (and checks) the config of each stage of one run.

    ``train`` / ``test``: the registered data sets; ``num_classes``: the train set's class count.
    ``cues_dir`` / ``wsss_dir`` / ``pam_weights`` / ``bestie_weights``: where the inputs come
    from (a stage's output folder or the user's).
    """

    def __init__(self, opts: PipelineOptions, paths: StagePaths, train: str, test: str, num_classes: int, *,
                 cues_dir: str, wsss_dir: str, pam_weights: str, bestie_weights: str):
        self.o, self.paths = opts, paths
        self.train, self.test, self.num_classes = train, test, num_classes
        self.cues_dir, self.wsss_dir = cues_dir, wsss_dir
        self.pam_weights, self.bestie_weights = pam_weights, bestie_weights
        self.seed = opts.seed if opts.seed is not None else PRESETS[opts.preset].seed
        self.pseudo_name = f"{train}_pseudo_{opts.supervision}"

    def _load(self, stage: str, pipeline_opts: List[str], user: Dict[str, List[str]],
              output_dir: Optional[str], seed: bool):
        path = stage_config_file(self.o, stage)
        try:
            cfg = load_config(path, pipeline_opts, freeze=False)
        except (KeyError, AssertionError, ValueError, TypeError) as e:
            raise ConfigError(f"{stage} stage config {path} (with the pipeline's settings): {e}") from None
        for flag, values in user.items():
            try:
                merge_overrides(cfg, list(values))
            except (KeyError, AssertionError, ValueError, TypeError) as e:  # ConfigKeyError: the nearest keys
                raise ConfigError(f"{flag} {' '.join(map(str, values))}: {e}") from None
        if output_dir is not None:
            cfg.OUTPUT_DIR = output_dir
        if seed and self.seed is not None:
            cfg.SEED = int(self.seed)
        return cfg

    def _common(self, stage: str) -> List[str]:
        opts = ["DATASETS.TRAIN", f"('{self.train}',)", "DATASETS.TEST", f"('{self.test}',)",
                "BESTIE.NUM_CLASSES", str(self.num_classes)]
        if stage == "pam":
            opts += ["MODEL.PAM.NUM_CLASSES", str(self.num_classes)]
        if stage == "refine":
            opts = ["DATASETS.TRAIN", f"('{self.pseudo_name}',)", "DATASETS.TEST", f"('{self.test}',)",
                    "BESTIE.NUM_CLASSES", str(self.num_classes),
                    "MODEL.ROI_HEADS.NUM_CLASSES", str(self.num_classes),
                    "MODEL.POINT_HEAD.NUM_CLASSES", str(self.num_classes)]
        return opts

    # -- stages ---------------------------------------------------------------------------------
    def pam(self):
        """PAM classifier training (``--pam-config`` + ``--pam-opts``)."""
        cfg = self._load("pam", self._common("pam"), {"--pam-opts": self.o.pam_opts},
                         os.path.dirname(self.paths.pam_weights), seed=True)
        cfg.freeze()
        return cfg

    def cam(self, stage: str):
        """CAM inference of ``stage`` "cues" or "maps": the PAM config + ``--pam-opts`` +
        ``--<stage>-opts``, with the trained PAM's weights."""
        user = {"--pam-opts": self.o.pam_opts, f"--{stage}-opts": getattr(self.o, f"{stage}_opts")}
        cfg = self._load("pam", self._common("pam"), user, os.path.join(self.paths.run_dir, stage), seed=False)
        cfg.MODEL.WEIGHTS = self.pam_weights
        cfg.freeze()
        return cfg

    def bestie(self, *, frozen: bool = True):
        """BESTIE training (``--bestie-config`` + ``--bestie-opts``) on the run's cues and maps."""
        opts = self._common("bestie") + ["BESTIE.DATA.WSSS_DIR", self.wsss_dir]
        if self.o.supervision == "image":
            opts += ["BESTIE.DATA.PEAK_POINTS_DIR", self.cues_dir]
        if self.o.points_dir:
            opts += ["BESTIE.DATA.CENTER_POINTS_DIR", os.path.abspath(self.o.points_dir)]
        cfg = self._load("bestie", opts, {"--bestie-opts": self.o.bestie_opts},
                         os.path.dirname(self.paths.bestie_weights), seed=True)
        if frozen:
            cfg.freeze()
        return cfg

    def trained_bestie(self, *, frozen: bool = True):
        """The BESTIE config with the trained weights (``MODEL.WEIGHTS``), for the grid."""
        cfg = self.bestie(frozen=False)
        cfg.MODEL.WEIGHTS = self.bestie_weights
        if frozen:
            cfg.freeze()
        return cfg

    def export(self):
        """The trained BESTIE's config (+ ``--export-opts``) for the pseudo-label export."""
        cfg = self.trained_bestie(frozen=False)
        try:
            merge_overrides(cfg, list(self.o.export_opts))
        except (KeyError, AssertionError, ValueError, TypeError) as e:
            raise ConfigError(f"--export-opts {' '.join(map(str, self.o.export_opts))}: {e}") from None
        cfg.MODEL.BESTIE.TEST.USE_POINTS = self.o.supervision == "point"
        cfg.OUTPUT_DIR = os.path.dirname(self.paths.pseudo_json)
        cfg.freeze()
        return cfg

    def refine(self):
        """The refiner's training (``--refine-config`` + ``--refine-opts``) on the exported json."""
        opts = self._common("refine") + [
            "BESTIE.PSEUDO_COCO.NAME", self.pseudo_name,
            "BESTIE.PSEUDO_COCO.JSON", self.paths.pseudo_json,
            "BESTIE.PSEUDO_COCO.SOURCE_DATASET", self.train,
        ]
        cfg = self._load("refine", opts, {"--refine-opts": self.o.refine_opts}, self.paths.refine_dir, seed=True)
        if self.o.refine_init == "bestie":
            cfg.MODEL.WEIGHTS = self.paths.refine_init
        cfg.freeze()
        return cfg

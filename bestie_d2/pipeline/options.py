"""The settings of one pipeline run (the command line of ``bestie-pipeline``, as a dataclass)."""
import os
from dataclasses import dataclass, field, fields
from typing import List, Optional, Sequence

from .plan import STAGES
from .presets import PRESETS, REFINERS

__all__ = ["OptionsError", "PipelineOptions", "check_options"]


class OptionsError(ValueError):
    """A pipeline setting that cannot work; the message is one line naming the flag."""


@dataclass
class PipelineOptions:
    """Every setting of :func:`~bestie_d2.pipeline.run_pipeline`; the ``bestie-pipeline`` flags
    of the same names (``--pam-opts`` = ``pam_opts`` ...) document them."""

    preset: str = "voc"  # config family: voc | coco | toy
    supervision: str = "image"  # image | point
    backbone: Optional[str] = None  # R50 | HRNet48 (voc / coco); None = the preset's first
    dataset: Optional[Sequence[str]] = None  # (train, test) registered names; None = the BESTIE config's
    output: Optional[str] = None  # results root; the run folder is <output>/<supervision>
    seed: Optional[int] = None  # SEED of every training stage; None = the preset's, else each config's
    refiner: str = "maskrcnn"  # maskrcnn | pointrend
    refine_init: str = "config"  # config (its MODEL.WEIGHTS) | bestie (the trained BESTIE's ResNet)
    pam_config: Optional[str] = None
    bestie_config: Optional[str] = None
    refine_config: Optional[str] = None
    pam_opts: List[str] = field(default_factory=list)
    cues_opts: List[str] = field(default_factory=list)
    maps_opts: List[str] = field(default_factory=list)
    bestie_opts: List[str] = field(default_factory=list)
    export_opts: List[str] = field(default_factory=list)
    refine_opts: List[str] = field(default_factory=list)
    cues_dir: Optional[str] = None  # given cue files: the cues stage is left out
    wsss_dir: Optional[str] = None  # given WSSS maps: the maps stage is left out
    points_dir: Optional[str] = None  # point labels (point route); None = the records' Center_points
    pam_weights: Optional[str] = None  # a trained PAM classifier: the pam stage is left out
    bestie_weights: Optional[str] = None  # a trained BESTIE: pam, cues, maps and bestie are left out
    pseudo_score_threshold: float = 0.0
    pseudo_min_area: int = 0
    grid_images: int = 4
    force: bool = False
    force_from: Optional[str] = None
    stop_after: Optional[str] = None
    num_gpus: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"

    @classmethod
    def from_namespace(cls, ns) -> "PipelineOptions":
        """From parsed ``bestie-pipeline`` arguments (attributes of the same names)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


def check_options(o: PipelineOptions) -> None:
    """Refuse a setting that cannot work (:class:`OptionsError`, one line naming the flag)."""
    if o.preset not in PRESETS:
        raise OptionsError(f"--preset must be one of {', '.join(PRESETS)}, got {o.preset!r}")
    if o.supervision not in ("image", "point"):
        raise OptionsError(f"--supervision must be 'image' or 'point', got {o.supervision!r}")
    allowed = PRESETS[o.preset].backbones
    if o.backbone is not None and o.backbone not in allowed:
        raise OptionsError(f"--backbone {o.backbone} is not one of the {o.preset} preset's: {', '.join(allowed)}")
    if o.refiner not in REFINERS:
        raise OptionsError(f"--refiner must be one of {', '.join(REFINERS)}, got {o.refiner!r}")
    if o.refine_init not in ("config", "bestie"):
        raise OptionsError(f"--refine-init must be 'config' or 'bestie', got {o.refine_init!r}")
    if o.dataset is not None and len(o.dataset) != 2:
        raise OptionsError(f"--dataset takes two registered names, TRAIN TEST; got {list(o.dataset)}")
    for flag in ("force_from", "stop_after"):
        v = getattr(o, flag)
        if v is not None and v not in STAGES:
            raise OptionsError(f"--{flag.replace('_', '-')} must be one of {', '.join(STAGES)}, got {v!r}")
    for flag in ("pam_opts", "cues_opts", "maps_opts", "bestie_opts", "export_opts", "refine_opts"):
        v = list(getattr(o, flag) or [])
        if len(v) % 2:
            raise OptionsError(f"--{flag.replace('_', '-')} takes KEY VALUE pairs; got an odd number of items: {v}")
    for flag in ("cues_dir", "wsss_dir", "points_dir"):
        v = getattr(o, flag)
        if v is not None and not os.path.isdir(v):
            raise OptionsError(f"--{flag.replace('_', '-')} {v}: no such folder")
    for flag in ("pam_weights", "bestie_weights"):
        v = getattr(o, flag)
        if v is not None and not os.path.isfile(v):
            raise OptionsError(f"--{flag.replace('_', '-')} {v}: no such file")
    if o.cues_dir is not None and o.supervision == "point":
        raise OptionsError("--cues-dir is for the image route; the point route reads point labels (--points-dir)")
    if o.num_gpus < 1 or o.num_machines < 1 or not 0 <= o.machine_rank < o.num_machines:
        raise OptionsError(f"--num-gpus {o.num_gpus} / --num-machines {o.num_machines} / --machine-rank "
                         f"{o.machine_rank}: need num_gpus >= 1 and 0 <= machine_rank < num_machines")
    if o.grid_images < 0:
        raise OptionsError(f"--grid-images must be >= 0, got {o.grid_images}")

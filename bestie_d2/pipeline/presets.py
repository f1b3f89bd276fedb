"""Presets: the default config file of every stage, per data-set family (VOC, COCO, the toy set).

A preset names the files under ``configs/<folder>/`` the stages start from (``--pam-config``,
``--bestie-config`` and ``--refine-config`` replace them one by one), the default output folder
and the default seed. ``toy`` is the demo (``make demo``): the embedded toy set, tiny CPU models.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, Optional

__all__ = ["Preset", "PRESETS", "REFINERS", "BACKBONES", "find_config", "preset_config_file"]

#: The refinement networks of the ``refine`` stage (both Detectron2 models, trained on the pseudo labels).
REFINERS = ("maskrcnn", "pointrend")
#: The BESTIE backbones of the VOC / COCO configs.
BACKBONES = ("R50", "HRNet48")

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Preset:
    """Config files (relative to ``configs/<folder>/``; ``{supervision}`` / ``{backbone}`` filled in)."""

    folder: str
    pam: str
    bestie: str
    refiners: Dict[str, str] = field(default_factory=dict)
    output: str = "output/pipeline"  # default --output
    seed: Optional[int] = None  # default --seed (None: each config's SEED)
    backbones: tuple = BACKBONES  # allowed --backbone values; the first is the default


PRESETS: Dict[str, Preset] = {
    "voc": Preset("VOC", "pam_vgg16.yaml", "bestie_{backbone}_{supervision}_label.yaml",
                  {"maskrcnn": "mask_rcnn_R50_FPN_refine.yaml", "pointrend": "pointrend_R50_FPN_refine.yaml"},
                  output="output/pipeline/voc"),
    "coco": Preset("COCO", "pam_vgg16.yaml", "bestie_{backbone}_{supervision}_label.yaml",
                   {"maskrcnn": "mask_rcnn_R50_FPN_refine.yaml", "pointrend": "pointrend_R50_FPN_refine.yaml"},
                   output="output/pipeline/coco"),
    # the demo: ResNet-18 BESTIE, quarter-width VGG PAM, R-18 refiners, seed 1
    "toy": Preset("toy", "pam.yaml", "bestie_{supervision}_label.yaml",
                  {"maskrcnn": "mask_rcnn_refine.yaml", "pointrend": "pointrend_refine.yaml"},
                  output="output/demo", seed=1, backbones=("R18",)),
}


def find_config(path: str) -> str:
    """``path`` if it is a file; else ``configs/<path>`` under the working directory, then under
    this repository. Raises ``FileNotFoundError`` naming the places looked in."""
    if os.path.isfile(path):
        return os.path.abspath(path)
    tried = [os.path.join(base, "configs", path) for base in (os.getcwd(), _REPO)]
    for p in tried:
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"config file {path!r} not found (also looked for {' and '.join(tried)})")


def preset_config_file(preset: str, stage: str, *, supervision: str, backbone: Optional[str] = None,
                       refiner: str = "maskrcnn") -> str:
    """The default config file of ``stage`` ("pam", "bestie" or "refine") in ``preset``."""
    p = PRESETS[preset]
    backbone = backbone or p.backbones[0]
    if stage == "pam":
        name = p.pam
    elif stage == "bestie":
        name = p.bestie.format(supervision=supervision, backbone=backbone)
    elif stage == "refine":
        name = p.refiners[refiner]
    else:
        raise ValueError(f"no config file of its own for stage {stage!r}")
    return find_config(os.path.join(p.folder, name))

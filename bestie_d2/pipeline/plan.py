"""The stages of the pipeline, what each one uses, and which of them a run needs.

Order: ``pam → cues → maps → bestie → export → refine → grid``. A stage is left out when its
output is not needed or is given by the user:

* ``cues`` only serves the image-label route (the point route's cues are its point labels) and is
  left out when a cue folder is given (``--cues-dir``);
* ``maps`` is left out when WSSS maps are given (``--wsss-dir``, e.g. an external WSSS method);
* ``pam`` runs only when ``cues`` or ``maps`` run, unless trained weights are given (``--pam-weights``);
* with trained BESTIE weights (``--bestie-weights``) neither BESTIE nor its inputs are made.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

__all__ = ["STAGES", "STAGE_HELP", "DEPENDENCIES", "PlannedStage", "stage_plan"]

#: Every stage, in the order they run.
STAGES: Tuple[str, ...] = ("pam", "cues", "maps", "bestie", "export", "refine", "grid")

#: One line per stage: what it does and what it writes (``--help`` and the README show these).
STAGE_HELP: Dict[str, str] = {
    "pam": "train the PAM classifier on the image labels -> pam/model_final.pth; classification mAP on the test split",
    "cues": "instance cues (image route): PAM CAM peaks of every training image -> cues/Peak_points/<id>.txt; "
            "cue statistics against the GT instances, where the training split has them",
    "maps": "CAM semantic maps of every training image (the PAM_CUES.SEMANTIC_REFINE of the PAM config) -> "
            "maps/WSSS_maps/<id>.png; mIoU against the GT, where the training split has it",
    "bestie": "train BESTIE with self-refinement on the cues (or point labels) and the maps -> "
              "bestie/model_final.pth; mAP25/50/70/75 (VOC) or AP (COCO) on the test split",
    "export": "BESTIE's predictions on the training split as pseudo labels (one per point label in the "
              "point route) -> export/pseudo_instances_train.json (COCO format)",
    "refine": "train the refinement network (--refiner maskrcnn | pointrend) on the pseudo labels -> "
              "refine_<refiner>/model_final.pth; evaluated on the test split",
    "grid": "a picture of a few training images (pseudo labels) and test images (predictions) -> grid.png",
}

#: The stages whose outputs a stage reads (when they run; otherwise the user's folder or file).
DEPENDENCIES: Dict[str, Tuple[str, ...]] = {
    "pam": (),
    "cues": ("pam",),
    "maps": ("pam",),
    "bestie": ("cues", "maps"),
    "export": ("bestie",),
    "refine": ("export", "bestie"),
    "grid": ("bestie", "cues", "maps"),
}


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a run: ``run`` False means it is left out, ``reason`` says why."""

    name: str
    run: bool
    reason: str = ""


def stage_plan(supervision: str, *, cues_given: bool = False, maps_given: bool = False,
               pam_given: bool = False, bestie_given: bool = False) -> List[PlannedStage]:
    """The stages of a run, in :data:`STAGES` order, each marked run / left out (with the reason).

    ``supervision``: "image" or "point"; ``*_given``: the user gave that stage's output
    (``--cues-dir``, ``--wsss-dir``, ``--pam-weights``, ``--bestie-weights``).
    """
    if supervision not in ("image", "point"):
        raise ValueError(f"supervision must be 'image' or 'point', got {supervision!r}")
    plan: Dict[str, PlannedStage] = {}
    if bestie_given:
        plan["bestie"] = PlannedStage("bestie", False, "trained BESTIE weights given (--bestie-weights)")
        for s in ("pam", "cues", "maps"):
            plan[s] = PlannedStage(s, False, "not needed: BESTIE is not trained (--bestie-weights)")
    else:
        plan["bestie"] = PlannedStage("bestie", True)
        if supervision == "point":
            plan["cues"] = PlannedStage("cues", False, "point route: the point labels are the cues")
        elif cues_given:
            plan["cues"] = PlannedStage("cues", False, "cues given (--cues-dir)")
        else:
            plan["cues"] = PlannedStage("cues", True)
        plan["maps"] = (PlannedStage("maps", False, "WSSS maps given (--wsss-dir)") if maps_given
                        else PlannedStage("maps", True))
        if not (plan["cues"].run or plan["maps"].run):
            plan["pam"] = PlannedStage("pam", False, "not needed: neither cues nor maps are made")
        elif pam_given:
            plan["pam"] = PlannedStage("pam", False, "trained PAM weights given (--pam-weights)")
        else:
            plan["pam"] = PlannedStage("pam", True)
    for s in ("export", "refine", "grid"):
        plan[s] = PlannedStage(s, True)
    return [plan[s] for s in STAGES]

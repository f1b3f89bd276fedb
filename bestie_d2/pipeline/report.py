"""The end of a run: one results table (text) and ``results.json``.

Table rows: every evaluated stage (BESTIE, each refiner trained on this run's pseudo labels) with
VOC mAP25/50/70/75 (``voc_instance`` evaluator) or COCO mask AP/AP50/AP75 (``segm``); then the
PAM classifier's mAP, the cue statistics, the maps' mIoU, the pseudo-label counts, the time per
stage and the environment.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

from ..evaluation.cue_stats import format_cue_statistics
from ..utils.env import format_environment
from ..utils.io import atomic_write

__all__ = ["REFINER_NAMES", "eval_columns", "results_table", "write_results"]

#: Row names of the refiners.
REFINER_NAMES = {"maskrcnn": "Mask R-CNN", "pointrend": "PointRend"}

_COLUMNS = {"voc_instance": ("mAP25", "mAP50", "mAP70", "mAP75"), "segm": ("AP", "AP50", "AP75")}


def eval_columns(results: Optional[dict]) -> Optional[Tuple[str, Tuple[str, ...], List[Optional[float]]]]:
    """``(task, column names, values)`` of an evaluation result dict (``voc_instance`` first,
    else COCO ``segm``); None when it has neither."""
    for task, cols in _COLUMNS.items():
        res = (results or {}).get(task)
        if res:
            return task, cols, [res.get(c) for c in cols]
    return None


def _fmt(v) -> str:
    return "      -" if v is None or v != v else f"{v:7.1f}"


def results_table(title: str, rows: List[Tuple[str, Optional[dict]]], results: Dict[str, dict],
                  seconds: Dict[str, float], environment: dict, run_dir: str) -> Tuple[str, list]:
    """The text table and its rows ``[name, *values]``.

    ``rows``: ``(row name, evaluation results)`` per evaluated stage; ``results``: every stage's
    result (``pam`` / ``cues`` / ``maps`` / ``export`` / ``refine`` lines are added when present).
    """
    lines, table, last_cols = ["", title, ""], [], None
    for name, ev in rows:
        cols = eval_columns(ev)
        if cols is None:
            continue
        _, names, values = cols
        if names != last_cols:
            lines.append(f"{'stage':<40} " + " ".join(f"{c:>7}" for c in names))
            lines.append("-" * (41 + 8 * len(names)))
            last_cols = names
        lines.append(f"{name:<40} " + " ".join(_fmt(v) for v in values))
        table.append([name, *values])
    refine = results.get("refine") or {}
    if refine.get("skipped"):
        lines.append(f"{REFINER_NAMES.get(refine.get('refiner'), 'refinement')} on BESTIE pseudo labels: "
                     f"skipped: {refine['skipped']}")
    if refine.get("init"):
        lines.append(f"(refinement backbone init: {refine['init']})")
    pam = ((results.get("pam") or {}).get("eval") or {}).get("classification") or {}
    if pam:
        lines.append(f"\nPAM classifier multi-label mAP on the test split: {pam.get('mAP', float('nan')):.1f}")
    cues = results.get("cues") or {}
    if cues.get("pam_cues"):
        lines.append("PAM cues (train, after the confidence filter): " + format_cue_statistics(cues["pam_cues"]))
    miou = (results.get("maps") or {}).get("semantic_miou")
    if miou is not None:
        lines.append(f"CAM semantic maps (train) mIoU vs GT: {100 * miou:.1f}")
    ex = (results.get("export") or {}).get("summary") or {}
    if ex:
        lines.append(f"Pseudo labels: {ex.get('instances', '?')} instances on {ex.get('images', '?')} train images"
                     f" ({ex.get('images_without_instances', 0)} without any)")
    lines.append("\ntime per stage: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
                 + f"; total {sum(seconds.values()):.0f}s")
    lines.append("environment: " + format_environment(environment))
    lines.append(f"results: {run_dir}")
    return "\n".join(lines), table


def write_results(run_dir: str, text: str, summary: dict) -> None:
    """``results.json`` (``summary``) and ``results.txt`` (``text``) in ``run_dir``."""
    atomic_write(os.path.join(run_dir, "results.json"), json.dumps(summary, indent=2, default=float))
    atomic_write(os.path.join(run_dir, "results.txt"), text + "\n")

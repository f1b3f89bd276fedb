"""Up-front check of every training record's input files, before any DataLoader worker starts.

A missing image, WSSS map or cue file would otherwise surface as an error deep inside a worker,
possibly hours into training. ``BESTIE.DATA.MISSING_INPUT`` chooses what happens instead:
``"error"`` (default) raises one clear error that counts the problem records and names the
first ones; ``"skip"`` drops them and logs how many were skipped and why.
"""
import logging
import os
from typing import Callable, List, Tuple

from .errors import MissingDataError

__all__ = ["check_training_inputs", "MISSING_INPUT_POLICIES"]

logger = logging.getLogger(__name__)
MISSING_INPUT_POLICIES = ("error", "skip")


def _missing_paths(record, path_fns) -> List[Tuple[str, str]]:
    out = []
    for what, fn in path_fns:
        try:
            p = fn(record)
        except Exception as e:  # e.g. the record has no path and the config gives no folder
            out.append((what, str(e)))
            continue
        if not os.path.isfile(p):
            out.append((what, p))
    return out


def check_training_inputs(records: List[dict], mapper, policy: str = "error", dataset_names=()) -> List[dict]:
    """Return the records whose image, WSSS map and cue file all exist (see module doc).

    Args:
        records: training data set dicts.
        mapper: a :class:`~bestie_d2.data.mappers.BestieDatasetMapper` (its ``wsss_path`` and
            ``points_path`` resolve each record's files from the record or the configured folders).
        policy: "error" or "skip".
    """
    if policy not in MISSING_INPUT_POLICIES:
        raise ValueError(f"BESTIE.DATA.MISSING_INPUT must be one of {MISSING_INPUT_POLICIES}, got {policy!r}")
    path_fns: List[Tuple[str, Callable]] = [
        ("image", lambda r: r["file_name"]),
        ("WSSS map", mapper.wsss_path),
        ("cue file" if mapper.supervision == "image" else "point file", mapper.points_path),
    ]
    keep, problems = [], []
    for r in records:
        miss = _missing_paths(r, path_fns)
        if miss:
            problems.append((r.get("image_id", "?"), miss))
        else:
            keep.append(r)
    if not problems:
        return keep
    names = ", ".join(dataset_names) or "the training set"
    examples = "; ".join(f"{iid}: {what} {p}" for iid, miss in problems[:5] for what, p in miss[:1])
    msg = f"{len(problems)} of {len(records)} training images in {names} have missing inputs (e.g. {examples})"
    if policy == "error":
        raise MissingDataError(
            msg + ". Create them (extract_cues / cam_to_semantic), point BESTIE.DATA.PEAK_POINTS_DIR / "
            "CENTER_POINTS_DIR / WSSS_DIR at them, or set BESTIE.DATA.MISSING_INPUT skip."
        )
    if not keep:
        raise MissingDataError(msg + ": nothing left to train on")
    logger.warning(f"Skipped {len(problems)} training images (BESTIE.DATA.MISSING_INPUT=skip): {msg}")
    return keep

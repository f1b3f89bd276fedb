"""The data check: an up-front check of every training record's inputs, before any worker starts.

Run by the trainer at the start of every BESTIE training (``Trainer.build_train_loader``), by
``bestie-check-data`` / ``python -m bestie_d2.tools.check_data`` on its own (one record:
:func:`bestie_d2.data.datasets.record_inputs.validate_record_inputs`). A bad input would otherwise surface deep inside a data-loader
worker hours into training — or, worse, train silently on nothing.

Per record (``BESTIE.DATA.CHECK_INPUTS``: "full", the default, or "exists" for the first point only):

1. the image, cue/point file and WSSS map exist. ``BESTIE.DATA.MISSING_INPUT`` chooses what a
   missing one does: "error" (default) or "skip" (the record is dropped; the count is logged);
2. the cue/point file parses (:func:`~bestie_d2.data.points.read_points`: 4 fields, class
   ``0..C-1``, confidence in [0, 1], inside the image) and the WSSS map passes the one WSSS
   reader (:func:`~bestie_d2.data.wsss.read_wsss_map`: mode, size, values in ``{0..C, 255}``).
   Every bad file is collected (file and line) and reported in one error, whatever the policy;
3. the class conventions (:func:`label_convention_flags`), counted per data set:

   * ``cue_class``: most of an image's cues have classes absent from its image label (1-based
     class ids in the cue files?);
   * ``cue_shift``: most of an image's kept cues lie in the WSSS region of the class one *below*
     theirs, and more of them than in their own class's region: 1-based class ids, tested
     directly, which also catches them when the shifted class is in the image too (bus, bus, car
     written 6 6 7: the label test sees only one absent class);
   * ``wsss_class``: most of a WSSS map's foreground has classes absent from the image label
     (0-based class values, no background shift?);
   * ``cues_outside``: none of an image's kept cues lies in its class's WSSS region (coordinates
     swapped or of a resized image? maps and cues of different images?).

   Above ``BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION`` (the class kinds, 0.05) or
   ``MAX_CUES_OUTSIDE_FRACTION`` (0.3: weak WSSS maps legitimately miss some objects) of a data
   set's images this is an error naming the likely cause and example files; below, a warning. Such runs otherwise train with
   ``loss_center 0`` / ``loss_offset_pseudo 0``: no pseudo instance is ever made.

Speed: files are read by a thread pool (PNG decoding releases the GIL); images are only checked
to exist (the mapper decodes them). See ``docs/DEVELOPING.md`` for measured rates.
"""
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from .errors import (
    BestieDataError,
    DataCheckError,
    LabelConventionError,
    MissingDataError,
)
from ..utils.io import atomic_write
from .points import read_points
from .wsss import label_histogram, read_wsss_map_with_mode

__all__ = [
    "check_training_inputs",
    "check_images",
    "label_convention_flags",
    "CONVENTION_CHECKS",
    "MISSING_INPUT_POLICIES",
    "CHECK_MODES",
]

logger = logging.getLogger(__name__)
MISSING_INPUT_POLICIES = ("error", "skip")
CHECK_MODES = ("full", "exists")
MAX_LISTED = 20  # bad files listed in an error message (all of them go to the report file)

#: kind -> (what was found, likely cause), for :func:`label_convention_flags`' flags.
CONVENTION_CHECKS = {
    "cue_class": (
        "most cues have classes absent from the image label",
        "1-based class ids in the cue/point files? Classes are 0..C-1 (c = VOC id - 1), like the image labels",
    ),
    "wsss_class": (
        "most of the WSSS foreground has classes absent from the image label",
        "0-based class values in the WSSS maps (no background shift)? Maps hold c+1 for class c, 0 = background",
    ),
    "cue_shift": (
        "most kept cues lie in the WSSS region of the class one below theirs (c - 1), not of their own",
        "1-based class ids? Shifted down by one, the cues fall into their classes' WSSS regions. Classes "
        "are 0..C-1 (c = VOC id - 1), like the image labels",
    ),
    "cues_outside": (
        "no kept cue lies in the WSSS region of its class",
        "cue coordinates not in original-image pixels (x/y swapped, from a resized image?), or cue "
        "files and WSSS maps of different images",
    ),
}


# ------------------------------------------------------------------------------------------------
# Class-convention signals of one image
# ------------------------------------------------------------------------------------------------
def label_convention_flags(points, sem, image_label, cue_threshold: Optional[float] = None) -> Dict[str, dict]:
    """Signs that one image's cues / WSSS map follow another class convention than its image label.

    Args:
        points: ``(N, 4)`` ``[x, y, c, conf]`` (all confidences; inside the image) or None.
        sem: ``(H, W)`` WSSS map with values in ``{0..C, 255}``, or None.
        image_label: the image's class ids ``0..C-1``.
        cue_threshold: only cues with ``conf > cue_threshold`` count for ``cues_outside`` (those
            are the ones that train); None = all.

    Returns:
        ``{kind: details}`` for the kinds of :data:`CONVENTION_CHECKS` that apply (empty when the
        image looks consistent, or has no label). ``cue_class``/``wsss_class`` details hold the
        absent classes and ``shift``, the fraction of them explained by the suspected off-by-one
        (1-based cues: ``c - 1`` is labelled; 0-based maps: ``v`` is labelled); ``cue_shift``
        details hold ``cues`` (kept), ``in_shifted_region`` and ``in_own_region``.
    """
    label = np.asarray(sorted({int(c) for c in image_label}), dtype=np.int64)
    flags: Dict[str, dict] = {}
    if label.size == 0:
        return flags
    pts = None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 4)
    if pts is not None and len(pts):
        cls = pts[:, 2].astype(np.int64)
        absent = ~np.isin(cls, label)
        if absent.sum() * 2 > len(cls):
            shifted = np.isin(cls[absent] - 1, label)
            flags["cue_class"] = {"classes": sorted({int(c) for c in cls[absent]}),
                                  "shift": float(shifted.mean())}
    if sem is not None:
        counts = label_histogram(sem)
        vals = np.flatnonzero(counts[1:255]) + 1
        n_fg = int(counts[vals].sum())
        bad = vals[~np.isin(vals - 1, label)]
        n_bad = int(counts[bad].sum())
        if n_fg and n_bad * 2 > n_fg:
            n_shift = int(counts[bad[np.isin(bad, label)]].sum())
            flags["wsss_class"] = {"values": [int(v) for v in bad], "shift": n_shift / n_bad}
    if pts is not None and sem is not None and not flags:
        kept = pts if cue_threshold is None else pts[pts[:, 3] > np.float32(cue_threshold)]
        shift = _shifted_region_evidence(kept, sem, label)
        if shift is not None:
            flags["cue_shift"] = shift
            return flags
        kept = kept[np.isin(kept[:, 2].astype(np.int64), label)]
        if len(kept):
            if not (_region_values(kept, sem) == kept[:, 2].astype(np.int64) + 1).any():
                flags["cues_outside"] = {"cues": int(len(kept))}
    return flags


def _region_values(pts, sem) -> np.ndarray:
    """The WSSS value under each cue ``[x, y, ...]`` (coordinates clipped into the map)."""
    H, W = sem.shape
    x = np.clip(pts[:, 0].astype(np.int64), 0, W - 1)
    y = np.clip(pts[:, 1].astype(np.int64), 0, H - 1)
    return sem[y, x].astype(np.int64)


def _shifted_region_evidence(kept, sem, label) -> Optional[dict]:
    """The 1-based hypothesis tested directly: shifted down by one (class ``c`` read as ``c - 1``,
    which must be labelled), do most kept cues fall into their class's WSSS region, and more than
    unshifted? Returns the ``cue_shift`` details, or None."""
    if not len(kept):
        return None
    c = kept[:, 2].astype(np.int64)
    v = _region_values(kept, sem)
    own = int((v == c + 1).sum())
    shifted = int(((v == c) & (c >= 1) & np.isin(c - 1, label)).sum())
    if shifted * 2 > len(kept) and shifted > own:
        return {"cues": int(len(kept)), "in_shifted_region": shifted, "in_own_region": own}
    return None


def _likely_cause(kind: str, details: List[dict]) -> str:
    cause = CONVENTION_CHECKS[kind][1]
    if kind in ("cue_class", "wsss_class") and details:
        shift = float(np.mean([d["shift"] for d in details]))
        if shift < 0.5:  # the off-by-one does not explain them
            cause = ("a different class order or class set than the image labels, or inputs of other "
                     f"images? ({cause.split('?')[0]}: only {100 * shift:.0f}% fit that)")
    return cause


# ------------------------------------------------------------------------------------------------
# Per-record check
# ------------------------------------------------------------------------------------------------
class _Result(NamedTuple):
    missing: List[Tuple[str, str]]  # (what, path or reason)
    errors: List[str]  # "file[, line N]: reason"
    checked: bool  # cue file and WSSS map were read
    rgb: bool
    flags: Dict[str, dict]
    paths: Dict[str, str]


def _image_size(record) -> Optional[Tuple[int, int]]:
    if "height" in record and "width" in record:
        return int(record["height"]), int(record["width"])
    return None


def _inspect(record, path_fns, num_classes, cue_threshold, full) -> _Result:
    missing, errors, paths = [], [], {}
    for what, fn in path_fns:
        try:
            p = fn(record)
        except Exception as e:  # e.g. the record has no path and the config gives no folder
            missing.append((what, str(e)))
            continue
        paths[what] = p
        if not os.path.isfile(p):
            missing.append((what, p))
    rgb, flags, checked = False, {}, False
    if not full:
        return _Result(missing, errors, checked, rgb, flags, paths)
    size = _image_size(record)
    pts = sem = None
    pf, wf = paths.get("cues"), paths.get("wsss")
    if pf is not None and os.path.isfile(pf):
        try:
            pts = read_points(pf, num_classes, image_size=size)
        except BestieDataError as e:
            errors.append(str(e))
    if wf is not None and os.path.isfile(wf):
        try:
            sem, mode = read_wsss_map_with_mode(wf, num_classes, size, image_path=record.get("file_name"))
            rgb = mode in ("RGB", "RGBA")
        except BestieDataError as e:
            errors.append(str(e))
    if "image_label" not in record:
        errors.append(f"record {record.get('image_id')!r} ({record.get('file_name')}): no 'image_label'")
    elif pts is not None and sem is not None:
        checked = True
        flags = label_convention_flags(pts, sem, record["image_label"], cue_threshold)
    return _Result(missing, errors, checked, rgb, flags, paths)


def _normalise(records, dataset_names) -> Dict[str, List[dict]]:
    if isinstance(records, Mapping):
        return {str(k): list(v) for k, v in records.items()}
    name = ", ".join(dataset_names) if dataset_names else "the training set"
    return {name: list(records)}


def _listing(lines: Sequence[str], report_file: Optional[str]) -> str:
    shown = "\n".join("  " + s for s in lines[:MAX_LISTED])
    if len(lines) > MAX_LISTED:
        where = f"all of them in {report_file}" if report_file else "all of them in the exception's .problems"
        shown += f"\n  ... and {len(lines) - MAX_LISTED} more ({where})"
    return shown


def check_training_inputs(
    records: Union[List[dict], Mapping[str, List[dict]]],
    mapper,
    policy: str = "error",
    dataset_names: Sequence[str] = (),
    *,
    check: str = "full",
    max_mismatch_fraction: float = 0.05,
    max_outside_fraction: float = 0.3,
    report_file: Optional[str] = None,
    num_threads: Optional[int] = None,
) -> List[dict]:
    """Check the training records' inputs (module doc); return the records to train on.

    Args:
        records: the training records: a list (one data set, named by ``dataset_names``), or
            ``{data set name: records}`` so the class conventions are counted per data set.
        mapper: a :class:`~bestie_d2.data.mappers.BestieDatasetMapper` (``wsss_path`` /
            ``points_path`` resolve each record's files; ``num_classes``, ``supervision``,
            ``cue_threshold``), or None to check only that the images exist (the PAM classifier,
            the CAM tools, the export and evaluation read nothing else: :func:`check_images`).
        policy: ``BESTIE.DATA.MISSING_INPUT``, "error" or "skip" (missing files only).
        check: ``BESTIE.DATA.CHECK_INPUTS``, "full" or "exists".
        max_mismatch_fraction: ``BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION`` (``cue_class``, ``cue_shift``,
            ``wsss_class``: near 0 on consistent data).
        max_outside_fraction: ``BESTIE.DATA.MAX_CUES_OUTSIDE_FRACTION`` (``cues_outside``: weak
            WSSS maps legitimately miss some objects; swapped or rescaled coordinates hit most images).
        report_file: if given and problems are found, every problem line is written there.
        num_threads: reader threads (default ``min(8, cpu count)``).

    Raises:
        MissingDataError: only missing files (policy "error"), or nothing left after skipping.
        LabelConventionError: only class-convention mismatches above the threshold.
        DataCheckError: bad files (listed with file and line), possibly with the above.
    """
    if policy not in MISSING_INPUT_POLICIES:
        raise ValueError(f"BESTIE.DATA.MISSING_INPUT must be one of {MISSING_INPUT_POLICIES}, got {policy!r}")
    if check not in CHECK_MODES:
        raise ValueError(f"BESTIE.DATA.CHECK_INPUTS must be one of {CHECK_MODES}, got {check!r}")
    t0 = time.perf_counter()
    groups = _normalise(records, dataset_names)
    flat = [r for recs in groups.values() for r in recs]
    if mapper is None:
        check = "exists"
    results = _inspect_all(flat, mapper, check == "full", num_threads)
    cues_what = "cue file" if getattr(mapper, "supervision", "image") == "image" else "point file"
    what_name = {"image": "image", "wsss": "WSSS map", "cues": cues_what}
    limits = {"cues_outside": (max_outside_fraction, "MAX_CUES_OUTSIDE_FRACTION"),
              "cue_class": (max_mismatch_fraction, "MAX_LABEL_MISMATCH_FRACTION"),
              "cue_shift": (max_mismatch_fraction, "MAX_LABEL_MISMATCH_FRACTION"),
              "wsss_class": (max_mismatch_fraction, "MAX_LABEL_MISMATCH_FRACTION")}
    tally = _Tally()
    i = 0
    for name, recs in groups.items():
        _tally_group(tally, name, recs, results[i:i + len(recs)], what_name, limits)
        i += len(recs)
    _raise_on_failure(tally, policy, ", ".join(groups), len(flat), report_file)
    logger.info(
        f"Data check ({check}) of {len(flat)} training images in {', '.join(groups)}: "
        f"{len(tally.keep)} to train on, {time.perf_counter() - t0:.1f}s"
    )
    return tally.keep


def _inspect_all(flat: List[dict], mapper, full: bool, num_threads: Optional[int]) -> List[_Result]:
    """:func:`_inspect` every record, in a thread pool for large full checks (``mapper`` None:
    the images only)."""
    path_fns: List[Tuple[str, Callable]] = [("image", lambda r: r["file_name"])]
    if mapper is not None:
        path_fns += [("wsss", mapper.wsss_path), ("cues", mapper.points_path)]
    C = int(getattr(mapper, "num_classes", 0))
    thr = float(getattr(mapper, "cue_threshold", 0.0))

    def inspect(r):
        return _inspect(r, path_fns, C, thr, full)

    n_threads = num_threads or min(8, os.cpu_count() or 1)
    if full and n_threads > 1 and len(flat) >= 64:
        with ThreadPoolExecutor(max_workers=n_threads) as ex:
            # a progress bar for real data sets (VOC train_aug: 10,582 images in ~15 s on 2 cores)
            return list(tqdm(ex.map(inspect, flat, chunksize=32), total=len(flat), desc="data check",
                             unit="image", mininterval=2.0, disable=len(flat) < 1000))
    return [inspect(r) for r in flat]


class _Tally:
    """What the per-record results of all data sets add up to (problem lines, records kept)."""

    def __init__(self):
        self.keep: List[dict] = []
        self.missing_lines: List[str] = []
        self.bad_lines: List[str] = []
        self.conv_lines: List[str] = []
        self.conv_error_lines: List[str] = []
        self.n_missing_records = 0
        self.missing_kinds = set()  # "image", "wsss", "cues"


def _tally_group(tally: _Tally, name: str, recs: List[dict], res: List[_Result], what_name, limits) -> None:
    """Add one data set's results to ``tally``; class conventions are judged per data set
    (error above the kind's limit, warning below)."""
    flagged: Dict[str, List[Tuple[dict, dict, _Result]]] = {k: [] for k in CONVENTION_CHECKS}
    n_checked = n_rgb = 0
    for r, x in zip(recs, res):
        if x.missing:
            tally.n_missing_records += 1
            iid = r.get("image_id", "?")
            tally.missing_lines += [f"{iid}: {what_name[w]} {p}" for w, p in x.missing]
            tally.missing_kinds.update(w for w, _ in x.missing)
        else:
            tally.keep.append(r)
        tally.bad_lines += x.errors
        n_checked += x.checked
        n_rgb += x.rgb
        for k, d in x.flags.items():
            flagged[k].append((r, d, x))
    if n_rgb:
        logger.warning(
            f"{n_rgb} of {len(recs)} WSSS maps of {name} are RGB images: their colours are mapped back "
            "to label values through the VOC palette (save palette or grey PNGs to avoid this)"
        )
    for kind, items in flagged.items():
        if not items:
            continue
        frac = len(items) / max(n_checked, 1)
        limit, cfg_key = limits[kind]
        found = CONVENTION_CHECKS[kind][0]
        cause = _likely_cause(kind, [d for _, d, _ in items])
        key = "cues" if kind != "wsss_class" else "wsss"
        examples = [x.paths.get(key, r.get("image_id", "?")) for r, _, x in items]
        head = (f"{name}: {len(items)} of {n_checked} images ({100 * frac:.1f}%): {found}. "
                f"Likely cause: {cause}")
        if frac > limit:
            tally.conv_error_lines.append(head + f" (above BESTIE.DATA.{cfg_key}={limit:g})\n    e.g. "
                                          + "\n    e.g. ".join(examples[:5]))
            tally.conv_lines += [f"{p}: {found}" for p in examples]
        else:
            logger.warning(head + f" (below BESTIE.DATA.{cfg_key}={limit:g}; e.g. {', '.join(examples[:3])})")


def _write_report(tally: _Tally, fatal: bool, report_file: Optional[str]) -> Optional[str]:
    """Write every problem line to ``report_file`` when the check fails; returns the report's
    path, or None (no failure, no file, or it could not be written)."""
    if not (fatal and report_file):
        return None
    try:
        atomic_write(report_file, "".join(s + "\n" for s in tally.missing_lines + tally.bad_lines + tally.conv_lines))
    except OSError as e:
        logger.warning(f"could not write the data-check report {report_file}: {e}")
        return None
    return report_file


def _raise_on_failure(tally: _Tally, policy: str, all_names: str, n_total: int, report_file: Optional[str]) -> None:
    """Raise the check's error (module doc) when anything is fatal; log skipped records."""
    missing_fatal = bool(tally.missing_lines) and policy == "error"
    report_file = _write_report(tally, missing_fatal or bool(tally.bad_lines or tally.conv_error_lines), report_file)
    sections = []
    if tally.missing_lines:
        msg = (f"{tally.n_missing_records} of {n_total} images in {all_names} have missing inputs:\n"
               + _listing(tally.missing_lines, report_file))
        if missing_fatal:
            todo = []
            if "image" in tally.missing_kinds:
                todo.append("restore the missing images (or remove their ids from the image list)")
            if tally.missing_kinds - {"image"}:
                todo.append("create the missing cue files / WSSS maps (extract_cues / cam_to_semantic) or point "
                            "BESTIE.DATA.PEAK_POINTS_DIR / CENTER_POINTS_DIR / WSSS_DIR at them")
            todo = "; ".join(todo)
            sections.append(msg + "\n" + todo[0].upper() + todo[1:]
                            + ", or set BESTIE.DATA.MISSING_INPUT skip to drop those images.")
        elif not tally.keep:
            raise MissingDataError(msg + "\nnothing left to train on (BESTIE.DATA.MISSING_INPUT=skip)")
        else:
            logger.warning(f"Skipped {tally.n_missing_records} of {n_total} images (BESTIE.DATA.MISSING_INPUT=skip): {msg}")
    if tally.bad_lines:
        sections.append(f"{len(tally.bad_lines)} input files of {all_names} are invalid:\n"
                        + _listing(tally.bad_lines, report_file))
    if tally.conv_error_lines:
        sections.append(
            "The cues / WSSS maps disagree with the image labels (classes are 0..C-1; WSSS maps hold "
            "0 = background, c+1 = class c, 255 = ignore):\n  " + "\n  ".join(tally.conv_error_lines)
            + "\n(training on such inputs makes no pseudo instance; raise the BESTIE.DATA key named "
            "above if the images are right)"
        )
    if not sections:
        return
    text = "Data check failed.\n" + "\n".join(sections)
    if report_file:
        text += f"\nFull list: {report_file}"
    problems = (tally.missing_lines if missing_fatal else []) + tally.bad_lines + tally.conv_lines
    if missing_fatal and not tally.bad_lines and not tally.conv_error_lines:
        raise MissingDataError(text)
    if tally.conv_error_lines and not tally.bad_lines and not missing_fatal:
        raise LabelConventionError(text, problems=problems, report_file=report_file)
    raise DataCheckError(text, problems=problems, report_file=report_file)


def check_images(records: Union[List[dict], Mapping[str, List[dict]]], policy: str = "error",
                 dataset_names: Sequence[str] = ()) -> List[dict]:
    """Every record's image exists: all missing ones listed in one ``MissingDataError``
    (``policy`` "error"), or dropped with a logged count ("skip"); returns the records kept. For
    the steps that read only the images (the PAM classifier's training, ``extract_cues`` /
    ``cam_to_semantic``, the pseudo-label export; evaluation with "error")."""
    return check_training_inputs(records, None, policy, dataset_names, check="exists")

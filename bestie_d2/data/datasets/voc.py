"""Loader for data sets in the PASCAL VOC 2012 on-disk layout (VOC2012 itself, SBD train_aug, the toy set).

Layout under ``root`` (``datasets/README.md``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png     palette PNG: 0 bg, c+1 class c, 255 boundary / ignore
    SegmentationObject/<id>.png    palette PNG: 0 bg, 1..N instance index, 255 boundary / ignore
    ImageSets/Segmentation/<split>.txt   one id per line
    cls_labels/<split>_cls.txt     optional image labels, "<id> c1 c2 ..." (c in 0..C-1)
    Peak_points/<id>.txt, Center_points/<id>.txt, WSSS_maps/<id>.png   optional per-image inputs

Instances (``SegmentationObject`` + ``SegmentationClass`` -> masks, classes, record annotations):
:mod:`.voc_instances`.

A listed image that is missing does not stop the loading: its record keeps the expected
``file_name`` (and no ``height`` / ``width`` unless its GT maps give them), and the data check
(:func:`bestie_d2.data.input_check.check_training_inputs`, run by training, ``bestie-check-data``
and the tools that read the images) lists it with every other problem and applies
``BESTIE.DATA.MISSING_INPUT`` (``skip`` drops it, counted). Other bad files of the listed images
(an unreadable image, bad GT maps) are all collected and raised together at the end.
"""
import logging
import os
import re
from typing import Dict, List, Sequence, Tuple

from PIL import Image

from ..errors import (
    AnnotationError,
    BestieDataError,
    ClassIdError,
    DataCheckError,
    DuplicateIdError,
    ListFileError,
    MissingDataError,
)
from .voc_instances import read_voc_instances

__all__ = [
    "VOC_CLASSES",
    "IMAGE_EXTENSIONS",
    "load_voc_instances",
    "read_id_list",
    "read_image_labels",
    "image_size",
    "register_voc_layout",
]

logger = logging.getLogger(__name__)

VOC_CLASSES: Tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
#: Extensions tried, in order, when ``JPEGImages/<id><image_ext>`` does not exist.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".tif", ".tiff", ".webp")


def _resolve(root: str, p: str) -> str:
    p = os.fspath(p)
    return p if os.path.isabs(p) else os.path.join(root, p)


def _read_text_lines(path: str, what: str) -> List[Tuple[int, List[str]]]:
    """Non-blank lines of a text file as (1-based line number, tokens); errors name the file."""
    if not os.path.exists(path):
        raise MissingDataError(f"{what} does not exist", path=path)
    if os.path.isdir(path):
        raise ListFileError(f"expected a {what}, found a directory", path=path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ListFileError(f"{what} is not UTF-8/ASCII text ({e.reason})", path=path) from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        toks = line.split()
        if toks:
            out.append((lineno, toks))
    if not out:
        raise ListFileError(f"{what} is empty", path=path)
    return out


def _check_id(tok: str, path: str, lineno: int, seen: Dict[str, int]) -> None:
    if not _ID_RE.match(tok):
        raise ListFileError(f"invalid image id {tok!r} (letters, digits, '_', '.', '-' only)", path=path, line=lineno)
    stem, ext = os.path.splitext(tok)
    if ext.lower() in {e.lower() for e in IMAGE_EXTENSIONS}:
        raise ListFileError(
            f"image id {tok!r} ends with an image extension: write ids without it ({stem!r}), as in "
            "the official ImageSets files", path=path, line=lineno,
        )
    if tok in seen:
        raise DuplicateIdError(f"duplicate image id {tok!r} (first on line {seen[tok]})", path=path, line=lineno)
    seen[tok] = lineno


def read_id_list(path) -> List[str]:
    """Read an image-list file (one id per line, e.g. ``ImageSets/Segmentation/val.txt``).

    Raises ``MissingDataError``, ``ListFileError`` (empty file, malformed line) or
    ``DuplicateIdError``, naming the file and line.
    """
    path = os.fspath(path)
    ids: List[str] = []
    seen: Dict[str, int] = {}
    for lineno, toks in _read_text_lines(path, "image list file"):
        if len(toks) != 1:
            raise ListFileError(
                f"expected one image id per line, found {len(toks)} fields: {' '.join(toks)!r}",
                path=path, line=lineno,
            )
        _check_id(toks[0], path, lineno, seen)
        ids.append(toks[0])
    return ids


def read_image_labels(path, num_classes: int) -> Dict[str, List[int]]:
    """Read an image-label file, lines ``<id> c1 c2 ...`` with class indices in ``0..C-1``.

    Returns ``{id: sorted unique class list}`` (in file order). A line with only an id means no
    object class. Errors (``ListFileError``, ``ClassIdError``, ``DuplicateIdError``) name the file
    and line.
    """
    path = os.fspath(path)
    labels: Dict[str, List[int]] = {}
    seen: Dict[str, int] = {}
    for lineno, toks in _read_text_lines(path, "image-label file"):
        _check_id(toks[0], path, lineno, seen)
        cls = []
        for t in toks[1:]:
            try:
                c = int(t)
            except ValueError:
                raise ListFileError(f"class {t!r} is not an integer", path=path, line=lineno) from None
            if not 0 <= c < num_classes:
                hint = " (1-based class ids? classes are 0..C-1: c = 1-based id - 1)" if c == num_classes else ""
                raise ClassIdError(f"class {c} out of range 0..{num_classes - 1}{hint}", path=path, line=lineno)
            cls.append(c)
        labels[toks[0]] = sorted(set(cls))
    return labels


def image_size(path) -> Tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingDataError("image does not exist", path=path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:
        raise AnnotationError(f"cannot read image ({type(e).__name__}: {e})", path=path) from None
    return int(h), int(w)


def _find_image(img_dir: str, image_id: str, exts: List[str], state: dict) -> str:
    """``<img_dir>/<image_id><ext>`` for the first of ``exts`` that exists, trying the extension
    found last first (a folder of .png files costs one lookup per image); logs the first time an
    image is not ``exts[0]``."""
    order = [state["ext"]] + [e for e in exts if e != state["ext"]] if state.get("ext") else exts
    for ext in order:
        p = os.path.join(img_dir, image_id + ext)
        if os.path.isfile(p):
            if ext != exts[0] and not state.get("logged"):
                logger.info("%s: no %s, using %s (image_ext %s not found; other extensions are accepted)",
                            img_dir, image_id + exts[0], os.path.basename(p), exts[0])
                state["logged"] = True
            state["ext"] = ext
            return p
    raise MissingDataError(
        f"image {image_id!r} not found: no {image_id}{exts[0]} (also tried {', '.join(exts[1:4])}, ...) "
        "in the image folder", path=os.path.join(img_dir, image_id + exts[0]),
    )


def _labels_for(ids: List[str], split_path: str, labels_path: str, num_classes: int) -> Dict[str, List[int]]:
    """:func:`read_image_labels` of ``labels_path``; every id of the split must have a line."""
    labels = read_image_labels(labels_path, num_classes)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise ListFileError(
            f"{len(missing)} image id(s) of {split_path} have no line here, e.g. {missing[0]!r}",
            path=labels_path,
        )
    return labels


def _add_ground_truth(rec: dict, obj_dir: str, cls_dir: str, num_classes: int, require_gt: bool):
    """Add ``annotations`` to ``rec`` from its object and class maps when both exist; returns its
    GT classes, or None without GT. One map without the other (or none with ``require_gt``) is a
    ``MissingDataError``. A record without a size (its image is missing) takes the maps' size."""
    obj_path = os.path.join(obj_dir, rec["image_id"] + ".png")
    cls_path = os.path.join(cls_dir, rec["image_id"] + ".png")
    has_obj, has_cls = os.path.exists(obj_path), os.path.exists(cls_path)
    if has_obj != has_cls or (require_gt and not has_obj):
        raise MissingDataError("ground-truth label map does not exist", path=cls_path if has_obj else obj_path)
    if not has_obj:
        return None
    if "height" not in rec:
        rec["height"], rec["width"] = image_size(obj_path)
    rec["annotations"], gt_classes = read_voc_instances(
        obj_path, cls_path, num_classes, (rec["height"], rec["width"]), rec["file_name"])
    return gt_classes


def _set_image_label(rec: dict, listed, gt_classes, obj_path: str) -> bool:
    """``rec["image_label"]`` = the labels file's classes (``listed``), else the GT classes; returns
    whether GT classes are missing from the listed ones. Neither = ``MissingDataError``."""
    if listed is not None:
        rec["image_label"] = list(listed)
        return gt_classes is not None and not set(gt_classes) <= set(rec["image_label"])
    if gt_classes is None:
        raise MissingDataError(
            f"no image labels for {rec['image_id']!r}: no labels file was given and its ground truth "
            f"is missing", path=obj_path,
        )
    rec["image_label"] = gt_classes
    return False


#: Key order of a record (as before missing images were kept), for readable dumps.
_RECORD_ORDER = ("file_name", "image_id", "height", "width", "peak_points_file", "center_points_file", "wsss_file",
                 "annotations", "image_label")


def _raise_load_problems(problems: List[BestieDataError], missing: List[str], split_path: str) -> None:
    """One bad file: its own error. Several: one ``DataCheckError`` listing every one (and the
    missing images, which alone would go on to the data check)."""
    if not problems:
        return
    if len(problems) == 1 and not missing:
        raise problems[0]
    lines = [str(e) for e in problems] + missing
    shown = "\n".join("  " + ln for ln in lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
    raise DataCheckError(f"{len(lines)} files of the images listed in {split_path} are missing or invalid:\n{shown}",
                         problems=lines)


def load_voc_instances(
    root,
    split_file,
    labels_file=None,
    class_names: Sequence[str] = VOC_CLASSES,
    with_gt: bool = True,
    *,
    require_gt: bool = False,
    image_dir: str = "JPEGImages",
    object_dir: str = "SegmentationObject",
    class_dir: str = "SegmentationClass",
    peak_points_dir: str = "Peak_points",
    center_points_dir: str = "Center_points",
    wsss_dir: str = "WSSS_maps",
    image_ext: str = ".jpg",
) -> List[dict]:
    """Load the records of a VOC-layout data set (the record contract of ``docs/DEVELOPING.md``).

    Args:
        root: the folder holding ``JPEGImages`` etc. (e.g. ``datasets/VOC2012``).
        split_file: image-list file, relative to ``root`` or absolute.
        labels_file: optional ``<id> c1 c2 ...`` file (relative to ``root`` or absolute); every
            listed id must appear in it. Without it, image labels come from the ground truth.
        class_names: the thing classes (C = its length).
        with_gt: read ``SegmentationObject``/``SegmentationClass`` where both exist and add
            ``annotations``; images without them (SBD-only train_aug images) get no
            ``annotations`` key.
        require_gt: a missing ground-truth PNG is an error (evaluation splits).
        *_dir: sub-folders (relative to ``root`` or absolute).
        image_ext: the images' extension; when ``<id><image_ext>`` does not exist the common
            others (:data:`IMAGE_EXTENSIONS`: .jpeg, .png, ...) are tried, with a log line.

    Returns:
        list of records: ``file_name``, ``image_id`` (str), ``height``, ``width`` (absent when
        the image is missing and no GT map gives them: see the module doc),
        ``image_label`` (sorted unique class ids), ``peak_points_file``, ``center_points_file``,
        ``wsss_file`` (paths; these files may not exist) and, with GT, ``annotations``
        (XYWH_ABS ``bbox``, ``category_id`` 0..C-1, compressed-RLE ``segmentation`` with str
        counts, ``iscrowd`` 0).

    Raises ``BestieDataError`` subclasses naming the file (and line): missing root / folder /
    list, empty or malformed list or label file, duplicate ids, class ids out of range; unreadable
    images and unreadable or size-mismatched label maps of the listed images all in one
    ``DataCheckError`` (one alone: its own error). A missing image is not an error here (module doc).
    """
    root = os.path.abspath(os.fspath(root))
    C = len(class_names)
    if not os.path.isdir(root):
        raise MissingDataError("data set root folder does not exist (see datasets/README.md)", path=root)
    split_path = _resolve(root, split_file)
    ids = read_id_list(split_path)
    if labels_file is None and not with_gt:
        raise ValueError("load_voc_instances: give a labels_file, or with_gt=True to take labels from GT")
    labels = None if labels_file is None else _labels_for(ids, split_path, _resolve(root, labels_file), C)

    img_dir = _resolve(root, image_dir)
    if not os.path.isdir(img_dir):
        raise MissingDataError("image folder does not exist", path=img_dir)
    obj_dir, cls_dir = _resolve(root, object_dir), _resolve(root, class_dir)
    if require_gt:
        for d in (obj_dir, cls_dir):
            if not os.path.isdir(d):
                raise MissingDataError("ground-truth folder does not exist", path=d)
    pk_dir, ct_dir, ws_dir = (_resolve(root, d) for d in (peak_points_dir, center_points_dir, wsss_dir))
    gt_dirs_exist = os.path.isdir(obj_dir) and os.path.isdir(cls_dir)

    records = []
    n_gt = 0
    n_label_mismatch = 0
    exts = [image_ext] + [e for e in IMAGE_EXTENSIONS if e != image_ext]
    ext_state: dict = {}
    missing: List[str] = []  # images not found: kept for the data check
    problems: List[BestieDataError] = []  # other bad files: raised together at the end
    for image_id in ids:
        rec = {
            "file_name": os.path.join(img_dir, image_id + image_ext),
            "image_id": image_id,
            "peak_points_file": os.path.join(pk_dir, image_id + ".txt"),
            "center_points_file": os.path.join(ct_dir, image_id + ".txt"),
            "wsss_file": os.path.join(ws_dir, image_id + ".png"),
        }
        try:
            try:
                rec["file_name"] = _find_image(img_dir, image_id, exts, ext_state)
                rec["height"], rec["width"] = image_size(rec["file_name"])
            except MissingDataError as e:
                missing.append(str(e))
            gt_classes = None
            if with_gt and (gt_dirs_exist or require_gt):
                gt_classes = _add_ground_truth(rec, obj_dir, cls_dir, C, require_gt)
                n_gt += gt_classes is not None
            n_label_mismatch += _set_image_label(rec, None if labels is None else labels[image_id], gt_classes,
                                                 os.path.join(obj_dir, image_id + ".png"))
        except BestieDataError as e:
            problems.append(e)
            continue
        records.append({k: rec[k] for k in _RECORD_ORDER if k in rec})
    _raise_load_problems(problems, missing, split_path)
    if missing:
        logger.warning(
            "%d of %d images of %s are missing (e.g. %s); the data check lists them, "
            "BESTIE.DATA.MISSING_INPUT skip drops them", len(missing), len(ids), split_path, missing[0])
    if n_label_mismatch:
        logger.warning(
            "%d image(s) of %s have ground-truth instances of classes missing from their image labels",
            n_label_mismatch, split_path,
        )
    logger.info("Loaded %d images (%d with instance ground truth) from %s", len(records), n_gt, split_path)
    return records


def register_voc_layout(
    name: str,
    root,
    split_file,
    labels_file=None,
    class_names: Sequence[str] = VOC_CLASSES,
    evaluator_type: str = "voc_instance",
    *,
    json_file=None,
    overwrite: bool = False,
    replace_foreign: bool = False,
    **loader_kwargs,
) -> bool:
    """Register a VOC-layout data set (lazy: nothing is read until ``DatasetCatalog.get(name)``).

    Records come from :func:`load_voc_instances` (``loader_kwargs`` are passed on, e.g.
    ``with_gt``, ``require_gt``, ``wsss_dir``). Metadata: ``thing_classes``, ``evaluator_type``,
    ``dataset_root``, ``thing_dataset_id_to_contiguous_id`` = ``{c+1: c}`` (the label-map
    values), ``split_file``, and ``json_file`` when given. Registering the same name with the same
    parameters again is a no-op (see :func:`~.catalog.register_dataset`).
    """
    from .catalog import register_dataset

    root = os.path.abspath(os.fspath(root))
    class_names = list(class_names)
    meta = {
        "thing_classes": class_names,
        "evaluator_type": evaluator_type,
        "dataset_root": root,
        "thing_dataset_id_to_contiguous_id": {c + 1: c for c in range(len(class_names))},
        "split_file": _resolve(root, split_file),
    }
    if json_file is not None:
        meta["json_file"] = os.path.abspath(os.fspath(json_file))
    key = repr(("voc_layout", root, os.fspath(split_file), None if labels_file is None else os.fspath(labels_file),
                tuple(class_names), evaluator_type, sorted(loader_kwargs.items())))

    def _load():
        return load_voc_instances(root, split_file, labels_file, class_names, **loader_kwargs)

    return register_dataset(name, _load, meta, key, overwrite=overwrite, replace_foreign=replace_foreign)

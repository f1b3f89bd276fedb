"""PointSup-style COCO point annotations as point cues, and the COCO-json helpers they share.

Detectron2's ``projects/PointSup`` (Cheng et al., "Pointly-supervised instance segmentation",
CVPR 2022) stores point labels in a COCO instances json whose annotations carry, instead of (or
next to) ``segmentation``::

    "point_coords": [[x0, y0], [x1, y1], ...]   image pixels (column, row), e.g. 10 per instance
    "point_labels": [1, 0, ...]                  1 = the point lies on the object, 0 = it does not

(``tools/prepare_coco_point_annotations_without_masks.py`` there samples the points uniformly in
the box and floors them to integers.) BESTIE's point route needs **one** point per instance, so
:func:`pointsup_cues` keeps, per non-crowd annotation:

* the **first** point labelled 1 (``choice="first"``, default: the file's order), or
* a random one of its points labelled 1 (``choice="random"``, seeded per image with
  :func:`bestie_d2.data.points_from_masks.image_rng`);

with confidence **1.0** (a human label, like GT ``Center_points``) and class = the annotation's
``category_id`` mapped to ``0..C-1`` by :func:`coco_category_map`. Coordinates are floored to the
pixel that holds them. Annotations without a positive point are skipped and counted, as are crowd
annotations (``iscrowd`` 1). Negative points are not used.
"""
import json
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import AnnotationError, MissingDataError

__all__ = [
    "POINTSUP_CHOICES",
    "read_coco_json",
    "BACKGROUND_NAMES",
    "category_key",
    "background_categories",
    "coco_category_map",
    "num_object_classes",
    "coco_class_of",
    "group_annotations",
    "image_stem",
    "instance_points",
    "pointsup_cues",
]

POINTSUP_CHOICES = ("first", "random")


def read_coco_json(json_file) -> dict:
    """Load a COCO-format json and check its top-level structure; errors name the file."""
    json_file = os.fspath(json_file)
    if not os.path.isfile(json_file):
        raise MissingDataError("COCO json does not exist", path=json_file)
    try:
        with open(json_file, "r", encoding="utf-8") as f:
            coco = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"not a valid json file ({e})", path=json_file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"cannot read the json ({type(e).__name__}: {e})", path=json_file) from None
    if not isinstance(coco, dict):
        raise AnnotationError("not a COCO json (top level is not an object)", path=json_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise AnnotationError(f"not a COCO instances json (no '{key}' list)", path=json_file)
    return coco


#: Normalised names (:func:`category_key`) of categories that are background, not an object class.
#: labelme2coco writes ``{"id": 0, "name": "_background_"}`` first; detectron2 / mmdet use
#: ``__background__``.
BACKGROUND_NAMES = ("background", "bg")


def category_key(name) -> str:
    """A class name compared loosely: lower case, letters and digits only ("Dining Table",
    "dining_table" and "diningtable" are one name)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _categories(coco: dict, path) -> List[Tuple[int, str]]:
    try:
        cats = sorted((int(c["id"]), str(c.get("name", ""))) for c in coco["categories"])
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"malformed 'categories' entry ({type(e).__name__}: {e})", path=path) from None
    if not cats:
        raise AnnotationError("the json lists no categories", path=path)
    return cats


def background_categories(coco: dict, json_file=None) -> List[Tuple[int, str]]:
    """``[(id, name)]`` of the json's categories named as background (:data:`BACKGROUND_NAMES`,
    e.g. labelme2coco's ``_background_``); they are not object classes."""
    path = None if json_file is None else os.fspath(json_file)
    return [(i, n) for i, n in _categories(coco, path) if category_key(n) in BACKGROUND_NAMES]


def coco_category_map(coco: dict, dataset_name: Optional[str] = None, json_file=None) -> Dict[int, int]:
    """COCO ``category_id`` -> contiguous class ``0..C-1``; background categories
    (:func:`background_categories`) map to -1 (an annotation of one is refused by
    :func:`coco_class_of`).

    With ``dataset_name``: each category is matched **by name** (:func:`category_key`) to the
    registered data set's ``thing_classes``; a category that matches none is an
    ``AnnotationError`` listing them (the ids of two annotation tools rarely agree, names do).
    Otherwise the json's other categories in increasing id order become ``0, 1, ...``
    (detectron2's ``load_coco_json`` rule).
    """
    path = None if json_file is None else os.fspath(json_file)
    cats = _categories(coco, path)
    background = {i for i, _ in background_categories(coco, path)}
    objects = [(i, n) for i, n in cats if i not in background]
    mapping = {i: -1 for i in background}
    if dataset_name:
        from detectron2.data import MetadataCatalog

        classes = MetadataCatalog.get(dataset_name).get("thing_classes", None)
        if not classes:
            raise ValueError(
                f"data set {dataset_name!r} has no thing_classes metadata "
                "(is it registered? leave the data set out to use the json's category order)"
            )
        by_name = {category_key(c): k for k, c in enumerate(classes)}
        unknown = [(i, n) for i, n in objects if category_key(n) not in by_name]
        if unknown:
            listed = ", ".join(f"{n!r} (id {i})" for i, n in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise AnnotationError(
                f"{len(unknown)} categories match no class of data set {dataset_name!r} by name: {listed}; "
                f"its classes: {', '.join(classes)}. Rename them in the json, or leave --dataset out to "
                "number the json's categories in id order", path=path,
            )
        mapping.update({i: by_name[category_key(n)] for i, n in objects})
        return mapping
    if not objects:
        raise AnnotationError("the json lists only background categories", path=path)
    mapping.update({i: k for k, (i, _) in enumerate(objects)})
    return mapping


def num_object_classes(cat_map: Dict[int, int]) -> int:
    """The number of classes of a :func:`coco_category_map` (background left out)."""
    return len({c for c in cat_map.values() if c >= 0})


def image_stem(image: dict) -> str:
    """The points-file name of a COCO image: its ``file_name`` without folder and extension
    (``<cue_root>/Center_points/<stem>.txt``, as :func:`bestie_d2.data.datasets.load_bestie_coco`)."""
    return os.path.splitext(os.path.basename(str(image["file_name"])))[0]


def group_annotations(coco: dict, json_file=None) -> List[Tuple[dict, List[dict]]]:
    """``[(image, [annotations of the image, in file order]), ...]`` in the json's image order.

    Checks that every image has ``id``, ``file_name``, ``height``, ``width``, that ids and file
    stems are unique, and that every annotation refers to a listed image.
    """
    path = None if json_file is None else os.fspath(json_file)
    by_id: Dict = {}
    stems: Dict[str, object] = {}
    order = []
    for k, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or any(key not in im for key in ("id", "file_name", "height", "width")):
            raise AnnotationError(f"image entry {k} lacks id / file_name / height / width", path=path)
        iid = im["id"]
        if iid in by_id:
            raise AnnotationError(f"image id {iid!r} is listed twice", path=path)
        stem = image_stem(im)
        if stem in stems:
            raise AnnotationError(
                f"images {stems[stem]!r} and {iid!r} have the same file stem {stem!r} (one points file each)",
                path=path,
            )
        stems[stem] = iid
        by_id[iid] = []
        order.append(im)
    for k, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            raise AnnotationError(f"annotation entry {k} lacks image_id / category_id", path=path)
        if ann["image_id"] not in by_id:
            raise AnnotationError(
                f"annotation {ann.get('id', k)!r} refers to image id {ann['image_id']!r}, not in 'images'", path=path
            )
        by_id[ann["image_id"]].append(ann)
    return [(im, by_id[im["id"]]) for im in order]


def coco_class_of(ann: dict, cat_map: Dict[int, int], path=None) -> int:
    """The contiguous class of an annotation's ``category_id`` (``AnnotationError`` for an unknown
    id or a background category)."""
    path = None if path is None else os.fspath(path)
    try:
        c = cat_map[int(ann["category_id"])]
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(
            f"annotation {ann.get('id')!r}: category_id {ann.get('category_id')!r} is not a known category "
            f"(known: {sorted(cat_map)[:10]}{'...' if len(cat_map) > 10 else ''})",
            path=path,
        ) from None
    if c < 0:
        raise AnnotationError(f"annotation {ann.get('id')!r} has a background category (category_id "
                              f"{ann.get('category_id')!r}), not an object class", path=path)
    return c


def instance_points(groups, point_of: Callable, cat_map: Dict[int, int], json_file, stats: dict,
                    skipped_key: str, *, seed: int = 0, random: bool = False):
    """One point per non-crowd instance of each image of a COCO json (the loop that
    :func:`pointsup_cues` and ``prepare_points``' COCO-mask route share).

    Args:
        groups: :func:`group_annotations` output, ``[(image, [annotations])]``.
        point_of: ``point_of(ann, image, height, width, rng) -> (x, y)`` or None (no point: the
            instance is skipped and counted in ``stats[skipped_key]``).
        cat_map: :func:`coco_category_map`; the class of an annotation is looked up after its point
            (a skipped instance's class is not checked).
        stats: counters updated in place: ``crowd_skipped``, ``instances``, ``skipped_key``,
            ``images``, ``points``.
        seed, random: ``rng`` passed to ``point_of`` is :func:`~bestie_d2.data.points_from_masks.image_rng`
            ``(seed, stem)`` when ``random``, else None.

    Yields:
        ``(image, stem, points)`` with ``points`` ``(N, 4)`` float32 ``[x, y, c, 1.0]``.
    """
    from .points_from_masks import image_rng

    for im, anns in groups:
        h, w = int(im["height"]), int(im["width"])
        stem = image_stem(im)
        rng = image_rng(seed, stem) if random else None
        rows = []
        for ann in anns:
            if int(ann.get("iscrowd", 0)):
                stats["crowd_skipped"] += 1
                continue
            stats["instances"] += 1
            p = point_of(ann, im, h, w, rng)
            if p is None:
                stats[skipped_key] += 1
                continue
            rows.append((p[0], p[1], coco_class_of(ann, cat_map, json_file), 1.0))
        pts = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
        stats["images"] += 1
        stats["points"] += len(pts)
        yield im, stem, pts


def _positive_point(path: str) -> Callable:
    """``point_of`` of :func:`instance_points` for PointSup annotations: the first (``rng`` None)
    or a random positive point, floored; malformed or outside-the-image points raise
    ``AnnotationError`` naming ``path`` and the annotation id."""

    def point_of(ann, im, h, w, rng):
        aid = ann.get("id")
        if "point_coords" not in ann or "point_labels" not in ann:
            raise AnnotationError(
                f"annotation {aid!r} has no point_coords / point_labels (not a PointSup json?)", path=path
            )
        try:
            coords = np.asarray(ann["point_coords"], dtype=np.float64).reshape(-1, 2)
            labels = np.asarray(ann["point_labels"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise AnnotationError(f"annotation {aid!r}: malformed point_coords / point_labels ({e})",
                                  path=path) from None
        if coords.shape[0] != labels.shape[0]:
            raise AnnotationError(
                f"annotation {aid!r}: {coords.shape[0]} point_coords but {labels.shape[0]} point_labels",
                path=path,
            )
        pos = np.flatnonzero(labels == 1)
        if pos.size == 0:
            return None
        k = int(pos[0]) if rng is None else int(pos[int(rng.integers(pos.size))])
        x, y = np.floor(coords[k])
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
            raise AnnotationError(
                f"annotation {aid!r}: positive point (x={coords[k][0]}, y={coords[k][1]}) outside its "
                f"image {im['file_name']} of size H={h}, W={w}",
                path=path,
            )
        return x, y

    return point_of


def pointsup_cues(json_file, dataset_name: Optional[str] = None, choice: str = "first", seed: int = 0
                  ) -> Tuple[List[dict], dict]:
    """Read a PointSup json as one point cue per instance (rules in the module docstring).

    Args:
        json_file: the PointSup json (COCO instances json with ``point_coords``/``point_labels``).
        dataset_name: optional registered data set whose ``thing_classes`` the categories are
            matched to by name (default: the json's category order; :func:`coco_category_map`).
        choice: "first" or "random" positive point.
        seed: seed of ``choice="random"``.

    Returns:
        ``(records, stats)``: one record per image, in the json's order, ``{"image_id",
        "file_name", "stem", "height", "width", "points"}`` with ``points`` an ``(N, 4)`` float32
        ``[x, y, c, 1.0]`` array (the rows of its ``Center_points/<stem>.txt``); ``stats`` =
        ``images``, ``instances`` (non-crowd annotations), ``points``, ``crowd_skipped``,
        ``no_positive_skipped``, ``num_classes``, ``background_categories`` (``[(id, name)]``).

    Raises ``MissingDataError`` / ``AnnotationError`` naming the json (and the annotation id) for an
    unreadable file, an annotation without ``point_coords``/``point_labels``, lists of different
    lengths, or a point outside its image.
    """
    if choice not in POINTSUP_CHOICES:
        raise ValueError(f"unknown PointSup choice {choice!r}; choose one of {', '.join(POINTSUP_CHOICES)}")
    path = os.fspath(json_file)
    coco = read_coco_json(path)
    cat_map = coco_category_map(coco, dataset_name, path)
    stats = {"images": 0, "instances": 0, "points": 0, "crowd_skipped": 0, "no_positive_skipped": 0,
             "num_classes": num_object_classes(cat_map), "background_categories": background_categories(coco, path)}
    records = []
    for im, stem, pts in instance_points(group_annotations(coco, path), _positive_point(path), cat_map, path,
                                         stats, "no_positive_skipped", seed=seed, random=choice == "random"):
        records.append({"image_id": im["id"], "file_name": im["file_name"], "stem": stem,
                        "height": int(im["height"]), "width": int(im["width"]), "points": pts})
    return records, stats

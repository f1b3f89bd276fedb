"""Write point labels (``Center_points/``, one ``x y c conf`` file per image) from GT instance masks
or from PointSup point annotations, for BESTIE's point route (issue 14, item 4).

    bestie-prepare-points --voc-root datasets/VOC2012 --split train_aug [--sbd-root datasets/SBD/dataset]
    bestie-prepare-points --coco-json datasets/coco/annotations/instances_train2017.json \\
        --image-root datasets/coco/train2017
    bestie-prepare-points --pointsup-json datasets/coco/annotations/instances_train2017_n10_v1_without_masks.json

(also ``python -m bestie_d2.tools.prepare_points`` and ``python datasets/prepare_points.py``).

Sources:

* ``--voc-root DIR --split NAME``: the ids of ``ImageSets/Segmentation/<NAME>.txt``; instance ``k``
  = the pixels with value ``k`` in ``SegmentationObject/<id>.png``, its class = the majority value of
  ``SegmentationClass/<id>.png`` over them (0 and 255 not counted; the loader's rule,
  ``voc_instances_from_maps``); 255 pixels of either map are never chosen. Ids without a
  ``SegmentationObject`` PNG (the SBD-only ids of ``train_aug``) are read from
  ``--sbd-root``'s ``inst/<id>.mat`` (``GTinst.Segmentation``) and ``cls/<id>.mat``
  (``GTcls.Segmentation``) with the same rule; without ``--sbd-root`` they are skipped and counted.
  Files: ``<output>/<id>.txt``, default ``--output`` = ``<voc-root>/Center_points``.
* ``--coco-json FILE [--image-root DIR]``: the masks of a COCO instances json (polygons or RLE);
  crowd annotations (``iscrowd`` 1) are skipped and counted, so are annotations whose mask is
  empty. Files: ``<output>/<file stem>.txt`` (``load_bestie_coco``'s naming), default ``--output``
  = ``<parent of --image-root>/Center_points`` (else ``<parent of the json's folder>/Center_points``,
  i.e. ``coco/Center_points`` for ``coco/annotations/x.json``).
* ``--pointsup-json FILE``: a Detectron2 PointSup json (``point_coords`` / ``point_labels`` per
  annotation): per instance the first positive point (``--pointsup-choice random``: a seeded
  random positive), confidence 1.0 (:mod:`bestie_d2.data.pointsup`). Same file naming and
  default ``--output`` as ``--coco-json``.

``--rule`` (masks only; :mod:`bestie_d2.data.points_from_masks`): ``centroid`` (default: the mask's
centroid snapped to the nearest mask pixel), ``box-center`` (the tight box's center snapped to the
nearest mask pixel), ``random`` (a mask pixel drawn with ``--seed``, per image), ``interior`` (the
pixel farthest from the mask boundary: the toy set's GT rule). Every point lies inside its own
mask. Categories of a json map to ``0..C-1`` by name onto ``--dataset NAME``'s ``thing_classes``
(a category that matches no class is refused, naming it), else in increasing id order; a
background category (``_background_``, written by labelme2coco, ``__background__``, ...) is no
class and is left out, with a note in the summary (:func:`bestie_d2.data.pointsup.coco_category_map`). Every image of the source gets a file (empty when it has no instance);
existing files are replaced (atomic writes). A summary line ends the run (images, instances,
points written, crowd skipped, empty masks skipped, ...); an unreadable input stops it with an
error naming the file (exit 1).
"""
import argparse
import os
import sys
from typing import Dict, Optional

import numpy as np

__all__ = [
    "build_parser",
    "main",
    "cli",
    "prepare_voc_points",
    "prepare_coco_points",
    "prepare_pointsup_points",
    "coco_annotation_mask",
    "format_summary",
]

_VOC_DEFAULT_CLASSES = 20


def _progress(items, total, desc, progress: bool):
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)


def _new_summary(**extra) -> Dict:
    s = {"images": 0, "instances": 0, "points": 0, "crowd_skipped": 0, "empty_skipped": 0}
    s.update(extra)
    return s


# ------------------------------------------------------------------------------------------------
# VOC layout (+ SBD)
# ------------------------------------------------------------------------------------------------
def _default_num_classes(voc_root: str) -> int:
    from ..data.toy import STAMP_FILE, TOY_CLASSES

    return len(TOY_CLASSES) if os.path.exists(os.path.join(voc_root, STAMP_FILE)) else _VOC_DEFAULT_CLASSES


def _read_sbd_map(path: str, struct: str) -> np.ndarray:
    import scipy.io

    from ..data.errors import AnnotationError, MissingDataError

    if not os.path.exists(path):
        raise MissingDataError("SBD annotation does not exist", path=path)
    try:
        m = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        arr = np.asarray(getattr(m[struct], "Segmentation"))
    except Exception as e:
        raise AnnotationError(f"cannot read {struct}.Segmentation ({type(e).__name__}: {e})", path=path) from None
    if arr.ndim != 2:
        raise AnnotationError(f"{struct}.Segmentation is not a 2-D map (shape {arr.shape})", path=path)
    return arr


def _voc_maps(voc_root: str, image_id: str, sbd_root: Optional[str]):
    """``(obj, cls, obj_path, cls_path)`` of one id, or None when it has no instance annotation."""
    from ..data.datasets.label_maps import read_label_map

    obj_path = os.path.join(voc_root, "SegmentationObject", image_id + ".png")
    if os.path.exists(obj_path):
        cls_path = os.path.join(voc_root, "SegmentationClass", image_id + ".png")
        return read_label_map(obj_path), read_label_map(cls_path), obj_path, cls_path
    if sbd_root:
        inst_path = os.path.join(sbd_root, "inst", image_id + ".mat")
        if os.path.exists(inst_path):
            cls_path = os.path.join(sbd_root, "cls", image_id + ".mat")
            return _read_sbd_map(inst_path, "GTinst"), _read_sbd_map(cls_path, "GTcls"), inst_path, cls_path
    return None


def prepare_voc_points(voc_root, split: str, output=None, *, rule: str = "centroid", seed: int = 0,
                       num_classes: Optional[int] = None, sbd_root=None, progress: bool = True) -> Dict:
    """Write ``<output>/<id>.txt`` for the ids of ``ImageSets/Segmentation/<split>.txt``.

    Returns the summary: ``images`` (files written), ``instances``, ``points``, ``crowd_skipped``
    (always 0 here), ``empty_skipped`` (instances whose pixels are all 255 in the class map),
    ``no_masks`` (ids without any instance annotation: no file written), ``output``.
    """
    from ..data.datasets.voc import read_id_list
    from ..data.datasets.voc_instances import voc_instances_from_maps
    from ..data.errors import MissingDataError
    from ..data.points import write_points
    from ..data.points_from_masks import check_rule, image_rng, points_from_masks

    check_rule(rule)
    voc_root = os.fspath(voc_root)
    if not os.path.isdir(voc_root):
        raise MissingDataError("VOC root folder does not exist", path=voc_root)
    output = os.fspath(output) if output else os.path.join(voc_root, "Center_points")
    C = int(num_classes) if num_classes else _default_num_classes(voc_root)
    ids = read_id_list(os.path.join(voc_root, "ImageSets", "Segmentation", split + ".txt"))
    s = _new_summary(no_masks=0, output=output, num_classes=C)
    no_masks = []
    for image_id in _progress(ids, len(ids), "prepare_points (VOC)", progress):
        maps = _voc_maps(voc_root, image_id, sbd_root)
        if maps is None:
            no_masks.append(image_id)
            continue
        obj, cls, obj_path, cls_path = maps
        masks, classes = voc_instances_from_maps(obj, cls, C, obj_path, cls_path)
        rng = image_rng(seed, image_id) if rule == "random" else None
        pts, kept = points_from_masks(masks, classes, rule, ignore=(cls == 255), rng=rng)
        write_points(os.path.join(output, image_id + ".txt"), pts)
        s["images"] += 1
        s["instances"] += int(kept.size)
        s["points"] += int(len(pts))
        s["empty_skipped"] += int((~kept).sum())
    s["no_masks"] = len(no_masks)
    s["no_masks_examples"] = no_masks[:5]
    return s


# ------------------------------------------------------------------------------------------------
# COCO json (masks)
# ------------------------------------------------------------------------------------------------
def coco_annotation_mask(ann: dict, height: int, width: int, json_file=None) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO annotation's ``segmentation`` (polygons, RLE, uncompressed RLE).

    Polygons with fewer than 3 points are dropped (as detectron2's loader); nothing left = an empty
    mask. An annotation without ``segmentation`` raises ``AnnotationError`` naming ``json_file``.
    """
    import pycocotools.mask as mask_util

    from ..data.errors import AnnotationError

    path = None if json_file is None else os.fspath(json_file)
    aid = ann.get("id")
    if "segmentation" not in ann:
        raise AnnotationError(
            f"annotation {aid!r} has no 'segmentation' (a PointSup point json? use --pointsup-json)", path=path
        )
    segm = ann["segmentation"]
    try:
        if isinstance(segm, list):
            polys = [p for p in segm if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0]
            if not polys:
                return np.zeros((height, width), dtype=bool)
            rle = mask_util.merge(mask_util.frPyObjects([[float(v) for v in p] for p in polys], height, width))
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            rle = mask_util.frPyObjects(segm, height, width)
        elif isinstance(segm, dict) and "counts" in segm:
            rle = dict(segm)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            raise TypeError(f"unsupported segmentation of type {type(segm).__name__}")
        m = mask_util.decode(rle)
    except Exception as e:
        raise AnnotationError(f"annotation {aid!r}: cannot decode its segmentation ({type(e).__name__}: {e})",
                              path=path) from None
    if m.shape[:2] != (height, width):
        raise AnnotationError(
            f"annotation {aid!r}: mask size {m.shape[1]}x{m.shape[0]} differs from the image's {width}x{height}",
            path=path,
        )
    return m.astype(bool)


def _json_output_root(json_file: str, image_root) -> str:
    if image_root:
        return os.path.dirname(os.path.abspath(os.fspath(image_root)))
    return os.path.dirname(os.path.dirname(os.path.abspath(json_file)))


def prepare_coco_points(json_file, image_root=None, output=None, *, rule: str = "centroid", seed: int = 0,
                        dataset_name: Optional[str] = None, progress: bool = True) -> Dict:
    """Write ``<output>/<file stem>.txt`` for every image of a COCO instances json (masks)."""
    from ..data.errors import MissingDataError
    from ..data.points import write_points
    from ..data.pointsup import (background_categories, coco_category_map, coco_class_of, group_annotations,
                                 instance_points, num_object_classes, read_coco_json)
    from ..data.points_from_masks import check_rule, choose_point

    check_rule(rule)
    json_file = os.fspath(json_file)
    if image_root and not os.path.isdir(image_root):
        raise MissingDataError("image folder does not exist", path=os.fspath(image_root))
    output = os.fspath(output) if output else os.path.join(_json_output_root(json_file, image_root), "Center_points")
    coco = read_coco_json(json_file)
    cat_map = coco_category_map(coco, dataset_name, json_file)
    groups = group_annotations(coco, json_file)
    s = _new_summary(output=output, num_classes=num_object_classes(cat_map),
                     background_categories=background_categories(coco, json_file))

    def point_of(ann, im, h, w, rng):
        coco_class_of(ann, cat_map, json_file)  # an unknown category is an error even for an empty mask
        return choose_point(coco_annotation_mask(ann, h, w, json_file), rule, rng=rng)

    points = instance_points(groups, point_of, cat_map, json_file, s, "empty_skipped", seed=seed,
                             random=rule == "random")
    for _, stem, pts in _progress(points, len(groups), "prepare_points (COCO)", progress):
        write_points(os.path.join(output, stem + ".txt"), pts)
    return s


# ------------------------------------------------------------------------------------------------
# PointSup json (points)
# ------------------------------------------------------------------------------------------------
def prepare_pointsup_points(json_file, output=None, *, image_root=None, choice: str = "first", seed: int = 0,
                            dataset_name: Optional[str] = None, progress: bool = True) -> Dict:
    """Write ``<output>/<file stem>.txt`` from a PointSup json (:func:`bestie_d2.data.pointsup.pointsup_cues`)."""
    from ..data.points import write_points
    from ..data.pointsup import pointsup_cues

    json_file = os.fspath(json_file)
    output = os.fspath(output) if output else os.path.join(_json_output_root(json_file, image_root), "Center_points")
    records, st = pointsup_cues(json_file, dataset_name, choice=choice, seed=seed)
    for r in _progress(records, len(records), "prepare_points (PointSup)", progress):
        write_points(os.path.join(output, r["stem"] + ".txt"), r["points"])
    s = _new_summary(output=output, num_classes=st["num_classes"], no_positive_skipped=st["no_positive_skipped"],
                     background_categories=st["background_categories"])
    for k in ("images", "instances", "points", "crowd_skipped"):
        s[k] = st[k]
    return s


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def format_summary(s: Dict) -> str:
    parts = [f"{s['images']} images", f"{s['instances']} instances", f"{s['points']} points written",
             f"{s['crowd_skipped']} crowd skipped", f"{s['empty_skipped']} empty masks skipped"]
    if "no_positive_skipped" in s:
        parts.append(f"{s['no_positive_skipped']} without a positive point skipped")
    if s.get("no_masks"):
        extra = f" (e.g. {', '.join(s['no_masks_examples'])})"
        parts.append(f"{s['no_masks']} ids without instance masks, no file{extra}")
    if s.get("background_categories"):
        bg = ", ".join(f"{n!r} (id {i})" for i, n in s["background_categories"])
        parts.append(f"background category {bg} is no class ({s['num_classes']} classes)")
    return "prepare_points: " + ", ".join(parts) + f" -> {s['output']}"


def build_parser() -> argparse.ArgumentParser:
    from ..data.points_from_masks import DEFAULT_RULE, POINT_RULES
    from ..data.pointsup import POINTSUP_CHOICES
    from ..utils.cli import DefaultsHelpFormatter

    p = argparse.ArgumentParser(
        prog="bestie-prepare-points",
        description="Write point labels (one 'x y c conf' file per image) from VOC / COCO instance masks "
                    "or a PointSup point json.",
        formatter_class=DefaultsHelpFormatter,
    )
    src = p.add_argument_group("source (exactly one of --voc-root, --coco-json, --pointsup-json)")
    src.add_argument("--voc-root", metavar="DIR", help="VOC-layout folder (SegmentationObject/, SegmentationClass/)")
    src.add_argument("--split", default="train_aug", help="with --voc-root: ImageSets/Segmentation/<split>.txt")
    src.add_argument("--sbd-root", metavar="DIR", default=None,
                     help="with --voc-root: SBD 'dataset' folder (inst/, cls/) for ids without SegmentationObject")
    src.add_argument("--num-classes", type=int, default=None,
                     help="with --voc-root: number of classes (default 20; 5 for a generated toy root)")
    src.add_argument("--coco-json", metavar="FILE", help="COCO instances json with masks")
    src.add_argument("--image-root", metavar="DIR", default=None,
                     help="with a json: the image folder (its parent holds the default Center_points/)")
    src.add_argument("--pointsup-json", metavar="FILE", help="Detectron2 PointSup json (point_coords, point_labels)")
    src.add_argument("--dataset", metavar="NAME", default=None,
                     help="with a json: registered data set whose thing_classes the json's categories are "
                          "matched to by name (default: the json's categories in id order, background left out)")
    p.add_argument("--output", metavar="DIR", default=None,
                   help="folder for the points files (default: <root>/Center_points, see the module docs)")
    p.add_argument("--rule", choices=POINT_RULES, default=DEFAULT_RULE,
                   help="point per mask: centroid / box center snapped to the nearest mask pixel, a seeded "
                        "random mask pixel, or the pixel farthest from the boundary")
    p.add_argument("--pointsup-choice", choices=POINTSUP_CHOICES, default="first",
                   help="with --pointsup-json: which positive point of an instance")
    p.add_argument("--seed", type=int, default=0, help="seed of --rule random / --pointsup-choice random")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> Dict:
    """Run the parsed arguments; returns the summary dict."""
    progress = not args.no_progress
    if args.voc_root:
        return prepare_voc_points(args.voc_root, args.split, args.output, rule=args.rule, seed=args.seed,
                                  num_classes=args.num_classes, sbd_root=args.sbd_root, progress=progress)
    if args.coco_json:
        return prepare_coco_points(args.coco_json, args.image_root, args.output, rule=args.rule, seed=args.seed,
                                   dataset_name=args.dataset, progress=progress)
    return prepare_pointsup_points(args.pointsup_json, args.output, image_root=args.image_root,
                                   choice=args.pointsup_choice, seed=args.seed, dataset_name=args.dataset,
                                   progress=progress)


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), write the files, print the summary; returns 0.
    Bad arguments exit 2, an unreadable input exits 1 with the file named."""
    import bestie_d2  # noqa: F401  (prepares detectron2, registers the data sets for --dataset)
    from ..data.errors import BestieDataError

    parser = build_parser()
    args = parser.parse_args(argv)
    sources = [n for n in ("voc_root", "coco_json", "pointsup_json") if getattr(args, n)]
    if len(sources) != 1:
        parser.error("give exactly one source: --voc-root, --coco-json or --pointsup-json")
    try:
        summary = run(args)
    except (BestieDataError, OSError, ValueError) as e:
        parser.exit(1, f"prepare_points: error: {e}\n")
    print(format_summary(summary))
    return 0


cli = main  # console script target (setup.py): returns the exit status 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a trained BESTIE (or any Detectron2 instance-segmentation model) over a folder of images.

    python -m bestie_d2.tools.predict --config-file configs/toy/bestie_image_label.yaml \\
        --input datasets/toy/JPEGImages --output output/predict \\
        [--score-threshold 0.3] [--flip] [--no-overlays] MODEL.WEIGHTS output/bestie/model_final.pth

``--input`` takes folders (their ``.jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp`` files, sorted, not
recursive), image files and glob patterns (quote them; ``**`` recurses), several at once.
``MODEL.WEIGHTS`` must name an existing checkpoint (or a ``scheme://`` URL known to Detectron2's
path manager); weights are read with :class:`~bestie_d2.engine.checkpoint.SafeCheckpointer`.

Writes into ``--output``:

* ``predictions.json`` (atomic): a COCO *results* list, one entry per kept instance:
  ``image_id`` (the file name without extension; the path relative to the common input folder
  when two inputs share a name), ``file_name`` (relative to the common input folder),
  ``category_id`` (the data set id of ``DATASETS.TEST[0]``'s metadata, else ``class + 1``),
  ``segmentation`` (compressed RLE, ``counts`` a str), ``score``, ``bbox`` (XYWH), ``area``.
  When the images belong to a COCO-style data set with the same image ids (e.g. the toy set),
  ``COCO(gt).loadRes("predictions.json")`` evaluates it directly;
* ``overlays/<image_id>.png``: the kept instances drawn by Detectron2's ``Visualizer`` (class
  names from the metadata; small images are drawn enlarged).

Instances with ``score < --score-threshold`` are dropped from both. ``--flip`` turns on BESTIE's
horizontal-flip test-time augmentation (``MODEL.BESTIE.TEST.FLIP``). Unreadable images are skipped
with a warning and counted; the run fails (exit 1) only if no image could be read. BESTIE takes
the image at its own size (the model resizes internally); other models get Detectron2's
``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)`` as ``DefaultPredictor`` does.
"""
import argparse
import glob
import json
import logging
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import bestie_d2  # noqa: F401  (prepares detectron2, registers models and data sets)
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils

from ..data.mappers import inference_input
from ..utils import vis
from ..utils.io import atomic_write
from ..utils.masks import encode_masks
from ..utils.cli import DefaultsHelpFormatter, load_config_or_exit, parse_args_with_opts

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictError",
    "find_images",
    "image_ids_for",
    "build_predictor",
    "Predictor",
    "instances_to_coco_results",
    "run_predict",
    "build_parser",
    "main",
    "cli",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class PredictError(RuntimeError):
    """A set-up problem of the predict tool (no images, missing weights, ...)."""


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def _is_image(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def find_images(inputs: Sequence[str]) -> List[str]:
    """Folders (their image files, sorted), files and glob patterns -> absolute image paths, in
    order, without duplicates. Raises :class:`PredictError` if nothing is found."""
    found: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            files = sorted(os.path.join(item, f) for f in os.listdir(item))
            found += [f for f in files if _is_image(f)]
        elif os.path.isfile(item):
            found.append(item)
        else:
            found += sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f))
    found = list(dict.fromkeys(os.path.abspath(f) for f in found))
    if not found:
        raise PredictError(
            f"no images found for --input {' '.join(inputs)} (folders are searched for "
            f"{', '.join(IMAGE_EXTENSIONS)} files; globs must match files)"
        )
    return found


def image_ids_for(paths: Sequence[str]) -> Tuple[List[str], str]:
    """``(ids, root)``: ids are file stems, or ``/``-separated paths relative to ``root`` (the
    common folder) without extension when two stems collide."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems, root
    logger.warning("input files share names: image ids are their paths relative to %s", root)
    rel = [os.path.splitext(os.path.relpath(p, root))[0].replace(os.sep, "/") for p in paths]
    return rel, root


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def _check_weights(weights: str) -> None:
    if not weights:
        raise PredictError("MODEL.WEIGHTS is empty: pass the trained model, e.g. "
                           "MODEL.WEIGHTS output/toy_bestie_image_label/model_final.pth")
    if "://" not in weights and not os.path.isfile(weights):
        raise PredictError(f"weights file not found: MODEL.WEIGHTS={weights!r}")


class Predictor:
    """Callable: one image (``H, W, 3`` uint8 in ``INPUT.FORMAT``) -> CPU ``Instances`` at the
    image size. BESTIE (a model with ``inference_maps``) gets the image as is; other models get
    ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` and ``height``/``width`` so that they
    return full-size masks. The input dict is :func:`bestie_d2.data.mappers.inference_input`'s."""

    def __init__(self, cfg, model):
        import detectron2.data.transforms as T

        self.model = model.eval()
        self.is_bestie = hasattr(model, "inference_maps")
        self.aug = None
        if not self.is_bestie and cfg.INPUT.MIN_SIZE_TEST > 0:
            self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)

    @torch.no_grad()
    def __call__(self, image: np.ndarray):
        h, w = image.shape[:2]
        img = image if self.aug is None else self.aug.get_transform(image).apply_image(image)
        out = self.model([inference_input(img, height=h, width=w)])[0]
        return out["instances"].to("cpu")


def build_predictor(cfg, flip: bool = False) -> Predictor:
    """Build ``cfg``'s model, load ``MODEL.WEIGHTS`` with SafeCheckpointer, eval mode, optional
    flip TTA (BESTIE only; other models log a warning)."""
    from detectron2.modeling import build_model

    from ..engine.checkpoint import SafeCheckpointer

    _check_weights(cfg.MODEL.WEIGHTS)
    model = build_model(cfg)
    SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    if flip:
        if hasattr(model, "test_flip"):
            model.test_flip = True
        else:
            logger.warning(f"--flip ignored: {type(model).__name__} has no flip test-time augmentation")
    return Predictor(cfg, model)


# ------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------
def _category_map(cfg) -> Tuple[Dict[int, int], object]:
    from ..maskrcnn_refinement import contiguous_to_dataset_id

    C = int(cfg.BESTIE.NUM_CLASSES)
    if cfg.MODEL.META_ARCHITECTURE != "BESTIE":
        C = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        meta = MetadataCatalog.get(name)
        if meta.get("thing_classes", None):
            n = max(C, len(meta.thing_classes))
            try:
                return contiguous_to_dataset_id(meta, n), meta
            except ValueError as e:
                logger.warning(f"{e}; using class + 1 as category ids")
                return {c: c + 1 for c in range(n)}, meta
    meta = MetadataCatalog.get("__bestie_predict__")
    if not meta.get("thing_classes", None):
        meta.set(thing_classes=[f"class {c}" for c in range(C)])
    return {c: c + 1 for c in range(C)}, meta


def instances_to_coco_results(instances, image_id, file_name: str, cat_ids: Dict[int, int]) -> List[dict]:
    """CPU ``Instances`` (``pred_masks``, ``pred_classes``, ``scores``, optional ``pred_boxes``)
    -> COCO result dicts (RLE ``counts`` as str, bbox XYWH; from the box when present, else the
    mask)."""
    import pycocotools.mask as mask_util

    n = len(instances)
    if n == 0:
        return []
    rles = encode_masks(instances.pred_masks)
    areas = mask_util.area(rles)
    boxes = mask_util.toBbox(rles)
    if instances.has("pred_boxes"):
        b = vis.to_numpy(instances.pred_boxes.tensor).astype(np.float64)
        boxes = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    classes = vis.to_numpy(instances.pred_classes).astype(np.int64)
    scores = vis.to_numpy(instances.scores).astype(np.float64)
    out = []
    for i in range(n):
        rle = rles[i]
        counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
        out.append({
            "image_id": image_id,
            "file_name": file_name,
            "category_id": int(cat_ids.get(int(classes[i]), int(classes[i]) + 1)),
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": counts},
            "score": float(scores[i]),
            "bbox": [round(float(v), 2) for v in boxes[i]],
            "area": int(areas[i]),
        })
    return out


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
def _read_or_none(path: str, image_format: str):
    """The image (H, W, 3) in ``image_format``, or None (with a warning) when it cannot be read."""
    try:
        image = utils.read_image(path, format=image_format)
        if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"unexpected image shape {image.shape}")
        return image
    except Exception as e:
        logger.warning(f"skipping unreadable image {path}: {type(e).__name__}: {e}")
        return None


def _save_overlay(target: str, image: np.ndarray, image_format: str, instances, meta) -> None:
    """Draw ``instances`` on ``image`` with Detectron2's Visualizer (small images enlarged up to
    4x, to about 512 px) and write the PNG."""
    from detectron2.utils.visualizer import ColorMode, Visualizer

    rgb = image[..., ::-1] if image_format == "BGR" else image
    scale = float(min(4.0, max(1.0, 512.0 / max(rgb.shape[:2]))))
    v = Visualizer(np.ascontiguousarray(rgb), meta, scale=scale, instance_mode=ColorMode.IMAGE)
    vis.save_png(target, v.draw_instance_predictions(instances).get_image())


def run_predict(
    cfg,
    inputs: Sequence[str],
    output_dir: str,
    *,
    score_threshold: float = 0.3,
    flip: bool = False,
    overlays: bool = True,
    predictor: Optional[Predictor] = None,
) -> Dict:
    """Predict every image of ``inputs`` (see the module docstring) and return a summary dict:
    ``images`` (found), ``predicted``, ``skipped`` (unreadable), ``instances``, ``per_class``,
    ``json``, ``overlay_dir``. Raises :class:`PredictError` for set-up errors."""
    from tqdm import tqdm

    paths = find_images(inputs)
    ids, root = image_ids_for(paths)
    if predictor is None:
        predictor = build_predictor(cfg, flip=flip)
    cat_ids, meta = _category_map(cfg)
    overlay_dir = os.path.join(output_dir, "overlays")
    os.makedirs(overlay_dir if overlays else output_dir, exist_ok=True)
    in_set = set(paths)
    results: List[dict] = []
    stats = Counter()
    per_class = Counter()
    names = list(meta.get("thing_classes", []))
    for path, iid in tqdm(list(zip(paths, ids)), desc="predict", unit="img", disable=None):
        image = _read_or_none(path, cfg.INPUT.FORMAT)
        if image is None:
            stats["skipped"] += 1
            continue
        inst = predictor(image)
        inst = inst[inst.scores >= score_threshold]
        rel = os.path.relpath(path, root) if root else os.path.basename(path)
        results += instances_to_coco_results(inst, iid, rel.replace(os.sep, "/"), cat_ids)
        stats["predicted"] += 1
        for c in vis.to_numpy(inst.pred_classes).tolist():
            per_class[names[c] if c < len(names) else str(c)] += 1
        if overlays:
            target = os.path.join(overlay_dir, iid.replace("/", "__") + ".png")
            if os.path.abspath(target) in in_set:
                raise PredictError(f"refusing to overwrite the input image {target}: choose another --output")
            _save_overlay(target, image, cfg.INPUT.FORMAT, inst, meta)
    json_path = os.path.join(output_dir, "predictions.json")
    atomic_write(json_path, json.dumps(results, separators=(",", ":")), fsync=True)
    summary = {
        "images": len(paths),
        "predicted": stats["predicted"],
        "skipped": stats["skipped"],
        "instances": len(results),
        "per_class": dict(per_class),
        "json": json_path,
        "overlay_dir": overlay_dir if overlays else None,
    }
    logger.info(
        f"predicted {summary['predicted']} of {summary['images']} images ({summary['skipped']} unreadable, "
        f"skipped), {summary['instances']} instances with score >= {score_threshold:g} -> {json_path}"
    )
    if stats["predicted"] == 0:
        raise PredictError(f"none of the {len(paths)} input images could be read")
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Predict instances with a trained BESTIE / Detectron2 model on a folder of images: "
                    "predictions.json (COCO results) + overlay PNGs.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--input", required=True, nargs="+", help="image folders, files or glob patterns")
    p.add_argument("--output", required=True, help="folder for predictions.json and overlays/")
    p.add_argument("--score-threshold", type=float, default=0.3, help="drop instances below this score")
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation (BESTIE)")
    p.add_argument("--no-overlays", action="store_true", help="write predictions.json only")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER,
                   help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS model_final.pth")
    return p


def main(argv=None) -> Dict:
    from detectron2.utils.logger import setup_logger

    parser = build_parser()
    args = parse_args_with_opts(parser, argv)
    setup_logger(name="bestie_d2")
    cfg = load_config_or_exit(parser, "predict", args.config_file, args.opts)
    try:
        return run_predict(cfg, args.input, args.output, score_threshold=args.score_threshold,
                           flip=args.flip, overlays=not args.no_overlays)
    except PredictError as e:
        parser.exit(1 if "could be read" in str(e) else 2, f"predict: error: {e}\n")


def cli(argv=None) -> int:
    """Console script ``bestie-predict``: like :func:`main`, but returns the exit status 0 (``main``
    returns its summary, which a console-script wrapper would print and turn into exit status 1)."""
    main(argv)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])

"""The demo PNG grid (used by ``bestie_d2.tools.demo``): labels vs. what the model predicts.

One row per image, columns = input | labels | predicted center (max over classes) | predicted
offset length | predicted instances. The validation split has no cues or WSSS maps, so the grid has
two row groups: first ``num_train_images`` images of ``train_dataset`` whose *labels* column shows
the pseudo labels of semantic knowledge transfer at the original resolution
(:func:`~bestie_d2.visualization.pseudo_labels.pseudo_label_instances`: accepted components
coloured per instance, rejected WSSS foreground grey, cues as dots, centroids as ``x``); then
``num_images`` images of ``dataset_name`` (val) whose *labels* column shows the ground truth. The
model columns come from the model in eval mode on the full image.
"""
import contextlib
import logging
from typing import List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils

from ..data.datasets.catalog import check_dataset
from ..data.errors import BestieDataError
from ..data.mappers import image_label_vector, inference_input
from ..utils import vis
from ..utils.masks import annotation_masks
from .names import class_names, label_names
from .pseudo_labels import pseudo_label_instances, pseudo_label_panel, scale_pseudo_labels

__all__ = ["demo_grid", "eval_with_maps", "prediction_panels"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def eval_with_maps(model):
    """``with eval_with_maps(model):`` the model in eval mode with ``return_maps`` on (when it has
    the attribute); its training flag and ``return_maps`` are restored afterwards."""
    was_training = model.training
    had_flag = hasattr(model, "return_maps")
    old_flag = getattr(model, "return_maps", None)
    model.eval()
    if had_flag:
        model.return_maps = True
    try:
        yield model
    finally:
        model.train(was_training)
        if had_flag:
            model.return_maps = old_flag


def _read(rec: dict, image_format: str, num_classes: int) -> Tuple[np.ndarray, dict]:
    """(RGB image for drawing, model input: :func:`~bestie_d2.data.mappers.inference_input`)."""
    img = utils.read_image(rec["file_name"], format=image_format)
    label = image_label_vector(rec["image_label"], num_classes) if "image_label" in rec else None
    inp = inference_input(img, label, image_id=rec.get("image_id"))
    rgb = np.ascontiguousarray(img[..., ::-1]) if image_format == "BGR" else img
    return rgb, inp


@torch.no_grad()
def _predict(model, inp):
    out = model([inp])[0]
    center, offset = out.get("center"), out.get("offset")
    if (center is None or offset is None) and hasattr(model, "inference_maps"):
        maps = model.inference_maps(inp)
        center, offset = maps["center"], maps["offset"]
    return out["instances"].to("cpu"), center, offset


def prediction_panels(model, inp: dict, image: np.ndarray, meta, size: int, *,
                      score_threshold: float = 0.0, max_instances: int = 30) -> Tuple[List[np.ndarray], List[str]]:
    """The three model columns of one image (center map, offset length, instances drawn with
    Detectron2's ``Visualizer``) and their titles; a map the model does not return says so."""
    from detectron2.utils.visualizer import ColorMode, Visualizer

    h, w = image.shape[:2]
    inst, center, offset = _predict(model, inp)
    keep = (inst.scores >= score_threshold).nonzero().flatten()
    keep = keep[inst.scores[keep].argsort(descending=True)][:max_instances]
    inst = inst[keep]
    panels, titles = [], []
    if center is not None:
        c = vis.to_numpy(center)
        panels.append(vis.fit_panel(vis.center_heatmap(c, vmax=1.0), size))
        titles.append(f"pred center (max over classes), peak {float(c.max()):.2f}")
    else:
        panels.append(vis.text_panel("center map not available", (size, size)))
        titles.append("pred center")
    if offset is not None:
        m = vis.offset_magnitude(offset)
        panels.append(vis.fit_panel(vis.offset_magnitude_image(offset), size))
        titles.append(f"pred |offset|, max {float(m.max()):.0f} px")
    else:
        panels.append(vis.text_panel("offset map not available", (size, size)))
        titles.append("pred |offset|")
    v = Visualizer(image, meta, scale=size / max(h, w), instance_mode=ColorMode.IMAGE)
    panels.append(vis.fit_panel(v.draw_instance_predictions(inst).get_image(), size))
    titles.append(f"pred instances: {len(inst)} (score >= {score_threshold:g})")
    return panels, titles


def _pseudo_label_cell(cfg, rec, image, size, radius, wsss_dir, cues_dir) -> Tuple[np.ndarray, str]:
    """The *labels* cell of a train row, or a note when its inputs are missing or bad."""
    try:
        pl = pseudo_label_instances(cfg, rec, wsss_dir=wsss_dir, cues_dir=cues_dir)
    except (BestieDataError, OSError) as e:
        logger.warning(f"demo grid: no pseudo labels for {rec.get('image_id')}: {e}")
        return vis.text_panel(f"pseudo labels not available: {e}", (size, size)), "pseudo labels"
    big = vis.fit_panel(image, size)
    scaled = scale_pseudo_labels(pl, big.shape[:2], size / max(image.shape[:2]))
    panel = pseudo_label_panel(big, scaled, int(cfg.BESTIE.NUM_CLASSES), radius)
    return panel, f"pseudo labels: {len(pl['classes'])} instances from {len(pl['points'])} cues"


def _ground_truth_cell(rec, image, size) -> Tuple[np.ndarray, str]:
    """The *labels* cell of a validation row: the record's GT masks (or a note)."""
    if "annotations" not in rec:
        return vis.text_panel("no ground truth in this record", (size, size)), "ground truth"
    masks, _ = annotation_masks(rec, *image.shape[:2])
    return vis.fit_panel(vis.overlay_masks(image, masks), size), f"ground truth: {len(masks)} instances"


def _grid_metadata(dataset_name: str, names: List[str]):
    meta = MetadataCatalog.get(dataset_name)
    if not meta.get("thing_classes", None):
        meta = MetadataCatalog.get("__bestie_demo_grid_meta__")
        if not meta.get("thing_classes", None):
            meta.set(thing_classes=names)
    return meta


def demo_grid(
    cfg,
    model,
    dataset_name: str,
    path: str,
    *,
    num_images: int = 4,
    train_dataset: Optional[str] = None,
    wsss_dir: Optional[str] = None,
    cues_dir: Optional[str] = None,
    num_train_images: Optional[int] = None,
    panel_size: int = 192,
    score_threshold: float = 0.0,
    max_instances: int = 30,
) -> str:
    """Write the demo PNG grid to ``path`` and return ``path`` (layout: module docstring).

    Args:
        cfg: the model's config (route, cue threshold, sigma, min area, input format).
        model: a BESTIE model (any detectron2 model returning ``instances`` works; the map
            columns then say "not available"). Run under :func:`eval_with_maps`.
        dataset_name: the split for the prediction rows (e.g. ``bestie_toy_val``); its labels
            column shows the ground truth when the records have ``annotations``.
        train_dataset: if set, ``num_train_images`` (default ``num_images``) rows of it come
            first, with pseudo labels from ``wsss_dir`` / ``cues_dir`` (see
            :func:`~bestie_d2.visualization.pseudo_labels.pseudo_label_instances`; a row whose
            inputs are missing says so).
        panel_size: cell side in pixels; ``score_threshold`` / ``max_instances``: predictions drawn.
    """
    check_dataset(dataset_name)
    if train_dataset:
        check_dataset(train_dataset)
    C = int(cfg.BESTIE.NUM_CLASSES)
    names = class_names(dataset_name, C)
    meta = _grid_metadata(dataset_name, names)
    fmt, size = cfg.INPUT.FORMAT, int(panel_size)
    radius = max(2, size // 80)

    def predictions(inp, image):
        return prediction_panels(model, inp, image, meta, size, score_threshold=score_threshold,
                                 max_instances=max_instances)

    rows, titles = [], []
    with eval_with_maps(model):
        if train_dataset:
            n_train = num_images if num_train_images is None else num_train_images
            recs = DatasetCatalog.get(train_dataset)[: max(int(n_train), 0)]
            if recs:
                rows.append(f"{train_dataset}: pseudo labels of semantic knowledge transfer "
                            f"({cfg.BESTIE.SUPERVISION}-label route: WSSS map + cues with conf > "
                            f"{cfg.BESTIE.DATA.CUE_THRESHOLD:g}; colour = accepted instance, grey = rejected "
                            f"WSSS foreground, dots = cues, x = centroids) vs. the model's output")
                titles.append(None)
            for rec in recs:
                image, inp = _read(rec, fmt, C)
                pl_panel, pl_title = _pseudo_label_cell(cfg, rec, image, size, radius, wsss_dir, cues_dir)
                preds, ptitles = predictions(inp, image)
                rows.append([vis.fit_panel(image, size), pl_panel] + preds)
                label = label_names(image_label_vector(rec.get("image_label", []), C), names)
                titles.append([f"train {rec.get('image_id')} ({label})", pl_title] + ptitles)
        recs = DatasetCatalog.get(dataset_name)[: max(int(num_images), 0)]
        if recs:
            rows.append(f"{dataset_name}: ground truth vs. the model's output (eval mode, full image)")
            titles.append(None)
        for rec in recs:
            image, inp = _read(rec, fmt, C)
            gt, gt_title = _ground_truth_cell(rec, image, size)
            preds, ptitles = predictions(inp, image)
            rows.append([vis.fit_panel(image, size), gt] + preds)
            titles.append([f"{rec.get('image_id')}", gt_title] + ptitles)
    if not any(not isinstance(r, str) for r in rows):
        raise ValueError(f"nothing to draw: {dataset_name!r} (and the train data set) gave no images")
    grid = vis.compose_grid(rows, titles, cell_size=(size, size))
    vis.save_png(path, grid)
    logger.info(f"demo grid: {path}")
    return path

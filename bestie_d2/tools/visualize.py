"""See what BESTIE is trained on, and what a trained model predicts.

1. **Training samples** (what :class:`~bestie_d2.data.mappers.BestieDatasetMapper` feeds the
   model), one PNG per sample::

       python -m bestie_d2.tools.visualize --config-file configs/toy/bestie_image_label.yaml \\
           --dataset bestie_toy_train --output output/vis [--num 4] [--index 3 17 ...] \\
           [--image-id ID ...] [--seed 0] [--panel-size 256] [--keep-going] [KEY VALUE ...]

   Each PNG has a header (data set, index, image id, route, image labels, seed) and six titled
   panels: the augmented crop with the cues the model receives (dots in the class colour), the
   semantic target (WSSS crop, VOC colours), the center target (max over classes, fixed 0..1
   scale), the offset target length, the offset direction (hue = direction, brightness = length,
   ``x`` = the instance centroids the offsets point to) and the IAG weight (white = supervised).
   The augmentation of sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a
   PNG is reproducible whatever other samples are picked. Without ``--index``/``--image-id`` the
   first ``--num`` records are shown. Trailing ``KEY VALUE`` pairs override the config (e.g.
   ``BESTIE.DATA.PEAK_POINTS_DIR``, ``BESTIE.DATA.WSSS_DIR``, ``BESTIE.INPUT.CROP_SIZE``).

2. **Demo grid** (:func:`demo_grid`, used by ``bestie_d2.tools.demo``): one PNG, one row per
   image, columns = input | labels | predicted center (max over classes) | predicted offset length |
   predicted instances. The validation split has no cues or WSSS maps, so the grid has two row
   groups: first ``num_train_images`` images of ``train_dataset`` whose *labels* column shows the
   pseudo labels of semantic knowledge transfer (WSSS map + cues at the original resolution, via
   :func:`~bestie_d2.data.targets.make_pseudo_targets`: accepted components coloured per
   instance, rejected WSSS foreground grey, cues as dots, centroids as ``x``); then
   ``num_images`` images of ``dataset_name`` (val) whose *labels* column shows the ground truth.
   The model columns come from the model in eval mode on the full image.
"""
import argparse
import difflib
import logging
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

import bestie_d2  # noqa: F401  (prepares detectron2, registers models and data sets)
from bestie_d2.config import load_config
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils

from ..data.errors import BestieDataError, MissingDataError
from ..utils import vis

__all__ = [
    "NUM_PANELS",
    "setup_cfg",
    "check_dataset",
    "split_config_opts",
    "parse_args_with_opts",
    "render_training_sample",
    "visualize_dataset",
    "pseudo_label_instances",
    "demo_grid",
    "build_parser",
    "main",
    "cli",
]

logger = logging.getLogger(__name__)

#: Panels of a training-sample PNG (see the module docstring).
NUM_PANELS = 6


# ------------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------------
def setup_cfg(config_file: str, opts: Sequence[str] = ()):
    """get_cfg → add_bestie_config → ``config_file`` → ``opts``; CPU when CUDA is missing; frozen."""
    if not config_file or not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")
    return load_config(config_file, opts)


_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_config_opts(argv: Sequence[str]):
    """Split ``argv`` at the first config key (``MODEL.WEIGHTS``-like token) that is not the value
    of a flag, so that ``KEY VALUE`` overrides may follow a multi-value flag (``--index 3 17
    MODEL.WEIGHTS w.pth``). Returns ``(head, opts)``."""
    argv = list(argv)
    for i, tok in enumerate(argv):
        if _CONFIG_KEY.match(tok) and not (i > 0 and argv[i - 1] in ("--config-file", "--output", "--dataset")):
            return argv[:i], argv[i:]
    return argv, []


def parse_args_with_opts(parser: argparse.ArgumentParser, argv=None):
    """``parser.parse_args`` after :func:`split_config_opts`; the overrides end up in ``args.opts``."""
    head, tail = split_config_opts(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(head)
    args.opts = list(getattr(args, "opts", []) or []) + tail
    return args


def check_dataset(name: str) -> None:
    """Raise a ``KeyError`` with close matches if ``name`` is not a registered data set."""
    names = DatasetCatalog.list()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"data set {name!r} is not registered{hint} (known: {len(names)} names, "
                       "e.g. bestie_toy_train, voc_2012_train_aug, bestie_coco_2017_train)")


def _class_names(dataset_name: Optional[str], num_classes: int) -> List[str]:
    names = []
    if dataset_name:
        names = list(MetadataCatalog.get(dataset_name).get("thing_classes", []) or [])
    if len(names) < num_classes:
        names += [f"class {c}" for c in range(len(names), num_classes)]
    return names


def _to_rgb(image_chw, image_format: str) -> np.ndarray:
    img = vis.to_numpy(image_chw).transpose(1, 2, 0)
    if image_format == "BGR":
        img = img[..., ::-1]
    return np.ascontiguousarray(img.astype(np.uint8))


def _label_names(label_vec, names) -> str:
    ids = np.flatnonzero(vis.to_numpy(label_vec) > 0)
    return ", ".join(names[i] for i in ids) if len(ids) else "none"


def _centroids_from_offsets(offset, weight) -> np.ndarray:
    """``(K, 2)`` distinct ``(y, x)`` targets ``p + offset(p)`` of the weighted pixels."""
    o, w = vis.to_numpy(offset), vis.to_numpy(weight)
    if w.ndim == 3:
        w = w[0]
    ys, xs = np.nonzero(w > 0)
    if len(ys) == 0:
        return np.zeros((0, 2), np.int64)
    cy = np.round(ys + o[0, ys, xs]).astype(np.int64)
    cx = np.round(xs + o[1, ys, xs]).astype(np.int64)
    return np.unique(np.stack([cy, cx], 1), axis=0)


# ------------------------------------------------------------------------------------------------
# 1. training samples
# ------------------------------------------------------------------------------------------------
def render_training_sample(
    sample: Dict,
    *,
    class_names: Sequence[str],
    image_format: str = "RGB",
    panel_size: int = 256,
    header: Optional[str] = None,
) -> np.ndarray:
    """One training sample (BestieDatasetMapper output) -> an RGB grid of :data:`NUM_PANELS`
    titled panels (one row, ``panel_size`` cells; 0 = the crop size), with an optional header."""
    image = _to_rgb(sample["image"], image_format)
    sem = vis.to_numpy(sample["sem_seg"]).astype(np.int64)
    center = vis.to_numpy(sample["center"]).astype(np.float32)
    offset = vis.to_numpy(sample["offset"]).astype(np.float32)
    weight = vis.to_numpy(sample["weight"]).astype(np.float32)
    if weight.ndim == 3:
        weight = weight[0]
    points = vis.to_numpy(sample.get("points", np.zeros((0, 3)))).reshape(-1, 3).astype(np.int64)
    C = center.shape[0]
    names = list(class_names) + [f"class {c}" for c in range(len(class_names), C)]
    colors = vis.class_colors(C)

    h, w = image.shape[:2]
    size = int(panel_size) if panel_size else max(h, w)
    scale = size / max(h, w)
    big = vis.fit_panel(image, size)
    pts_scaled = (points[:, :2].astype(np.float64) + 0.5) * scale - 0.5
    radius = max(2, int(round(2 * max(scale, 1.0))))
    img_panel = vis.draw_points(big, pts_scaled, points[:, 2], colors, radius=radius)

    sem_classes = [int(v) for v in np.unique(sem) if 0 < v <= C]
    sem_title = "semantic target: " + (", ".join(names[v - 1] for v in sem_classes) or "background only")
    if (sem == 255).any():
        sem_title += " (+ignore)"
    mag = vis.offset_magnitude(offset)
    cents = _centroids_from_offsets(offset, weight)
    direction = vis.fit_panel(vis.offset_direction_image(offset), size, nearest=True)
    direction = vis.draw_crosses(direction, (cents.astype(np.float64) + 0.5) * scale - 0.5, size=max(3, radius + 1))

    panels = [
        img_panel,
        vis.fit_panel(vis.colorize_semantic(sem), size, nearest=True),
        vis.fit_panel(vis.center_heatmap(center, vmax=1.0), size),
        vis.fit_panel(vis.offset_magnitude_image(offset), size, nearest=True),
        direction,
        vis.fit_panel(vis.weight_image(weight), size, nearest=True),
    ]
    titles = [
        f"input crop {w}x{h}, cues: {len(points)}",
        sem_title,
        f"center target (max over {C} classes), peak {float(center.max()) if center.size else 0.0:.2f}",
        f"offset target |(dy,dx)|, max {float(mag.max()) if mag.size else 0.0:.0f} px",
        f"offset direction (hue), x = {len(cents)} centroids",
        f"IAG weight: {100.0 * float((weight > 0).mean()):.0f}% of pixels",
    ]
    rows, row_titles = [panels], [titles]
    if header:
        rows, row_titles = [header] + rows, [None] + row_titles
    return vis.compose_grid(rows, row_titles, cell_size=(size, size))


def _select(records: List[dict], num: int, indices, image_ids) -> List[int]:
    n = len(records)
    chosen: List[int] = []
    for i in indices or []:
        j = int(i)
        if not -n <= j < n:
            raise IndexError(f"--index {j} is out of range: the data set has {n} records (0..{n - 1})")
        chosen.append(j % n)
    if image_ids:
        where = {r.get("image_id"): k for k, r in enumerate(records)}
        for iid in image_ids:
            if iid not in where:
                raise KeyError(f"--image-id {iid!r} is not in the data set")
            chosen.append(where[iid])
    if not indices and not image_ids:
        chosen = list(range(min(max(int(num), 0), n)))
    return list(dict.fromkeys(chosen))


def visualize_dataset(
    cfg,
    dataset_name: str,
    output_dir: str,
    *,
    num: int = 4,
    indices: Optional[Sequence[int]] = None,
    image_ids: Optional[Sequence[str]] = None,
    seed: int = 0,
    panel_size: int = 256,
    keep_going: bool = False,
) -> List[str]:
    """Write ``<output_dir>/<index>_<image_id>.png`` for the chosen records of ``dataset_name``
    (see the module docstring) and return the paths.

    Raises ``KeyError`` (unknown data set / image id), ``IndexError`` (bad index) and the mapper's
    :class:`~bestie_d2.data.errors.BestieDataError` (e.g. ``MissingDataError`` for a missing cue
    file or WSSS map, naming the image and the file). With ``keep_going`` a failing sample is
    logged and skipped instead; the error is raised only if every sample failed.
    """
    from ..data.mappers import BestieDatasetMapper

    check_dataset(dataset_name)
    records = DatasetCatalog.get(dataset_name)
    if not records:
        raise ValueError(f"data set {dataset_name!r} has no records")
    chosen = _select(records, num, indices, image_ids)
    if not chosen:
        raise ValueError("no sample selected (--num 0?)")
    mapper = BestieDatasetMapper(cfg, is_train=True)
    names = _class_names(dataset_name, cfg.BESTIE.NUM_CLASSES)
    os.makedirs(output_dir, exist_ok=True)
    paths, errors = [], []
    for i in chosen:
        rec = records[i]
        mapper.rng = np.random.default_rng([int(seed), int(i)])
        try:
            sample = mapper(rec)
        except Exception as e:
            if not keep_going:
                raise
            logger.error(f"sample {i} ({rec.get('image_id')}): {e}")
            errors.append(e)
            continue
        header = (f"{dataset_name} #{i}  {rec.get('image_id')}  |  {cfg.BESTIE.SUPERVISION}-label route  |  "
                  f"labels: {_label_names(sample['image_label'], names)}  |  seed {seed}")
        grid = render_training_sample(sample, class_names=names, image_format=cfg.INPUT.FORMAT,
                                      panel_size=panel_size, header=header)
        safe_id = str(rec.get("image_id", i)).replace(os.sep, "_")
        paths.append(vis.save_png(os.path.join(output_dir, f"{i:05d}_{safe_id}.png"), grid))
    if errors:
        logger.warning(f"{len(errors)} of {len(chosen)} samples failed")
        if not paths:
            raise errors[0]
    logger.info(f"wrote {len(paths)} PNGs to {output_dir}")
    return paths


# ------------------------------------------------------------------------------------------------
# 2. demo grid
# ------------------------------------------------------------------------------------------------
def _input_path(record, key: str, folder: Optional[str], ext: str) -> str:
    if folder:
        return os.path.join(folder, f"{record['image_id']}{ext}")
    path = record.get(key)
    if not path:
        raise BestieDataError(f"record {record.get('image_id')!r} has no {key!r} and no folder was given")
    return path


def pseudo_label_instances(cfg, record: dict, *, wsss_dir: Optional[str] = None,
                           cues_dir: Optional[str] = None) -> Dict[str, np.ndarray]:
    """The pseudo instances of semantic knowledge transfer (docs/method.md §2) at the original
    resolution of ``record``.

    WSSS map: ``<wsss_dir>/<id>.png``, else ``BESTIE.DATA.WSSS_DIR``, else the record's
    ``wsss_file``. Cues (route ``BESTIE.SUPERVISION``): ``<cues_dir>/<id>.txt``, else
    ``BESTIE.DATA.PEAK_POINTS_DIR`` / ``CENTER_POINTS_DIR``, else the record's
    ``peak_points_file`` / ``center_points_file``; kept when ``conf > BESTIE.DATA.CUE_THRESHOLD``
    (as the mapper does). Targets from :func:`~bestie_d2.data.targets.make_pseudo_targets` with
    ``BESTIE.INPUT.GAUSSIAN_SIGMA`` and ``MIN_INSTANCE_AREA`` (applied at this resolution).

    Returns ``instances`` (H, W) int32 (0 = none, k = instance k, grouped by class and the
    centroid the offsets point to), ``classes`` (N,) class of instance k+1, ``centroids`` (N, 2)
    (y, x), ``points`` (K, 3) [y, x, c] kept cues, ``sem`` (H, W) the WSSS map, ``weight`` (H, W).
    """
    from ..data.mappers import image_label_vector
    from ..data.points import filter_by_confidence, read_points
    from ..data.targets import make_pseudo_targets
    from ..data.wsss import read_wsss_map

    C = int(cfg.BESTIE.NUM_CLASSES)
    route = cfg.BESTIE.SUPERVISION
    d = cfg.BESTIE.DATA
    size = (record["height"], record["width"]) if "height" in record and "width" in record else None
    sem = read_wsss_map(_input_path(record, "wsss_file", wsss_dir or d.WSSS_DIR, ".png"), C, image_size=size,
                        image_path=record.get("file_name"))
    if route == "image":
        pfile = _input_path(record, "peak_points_file", cues_dir or d.PEAK_POINTS_DIR, ".txt")
    else:
        pfile = _input_path(record, "center_points_file", cues_dir or d.CENTER_POINTS_DIR, ".txt")
    H, W = sem.shape
    pts = filter_by_confidence(read_points(pfile, C, image_size=(H, W)), d.CUE_THRESHOLD)
    points = pts[:, [1, 0, 2]].astype(np.int64)
    label = image_label_vector(record.get("image_label", []), C)
    t = make_pseudo_targets(sem, points, label, num_classes=C, supervision=route,
                            sigma=cfg.BESTIE.INPUT.GAUSSIAN_SIGMA, min_area=cfg.BESTIE.INPUT.MIN_INSTANCE_AREA)
    ys, xs = np.nonzero(t["weight"] > 0)
    inst = np.zeros((H, W), np.int32)
    classes = np.zeros((0,), np.int64)
    cents = np.zeros((0, 2), np.int64)
    if len(ys):
        cy = np.round(ys + t["offset"][0, ys, xs]).astype(np.int64)
        cx = np.round(xs + t["offset"][1, ys, xs]).astype(np.int64)
        cls = sem[ys, xs].astype(np.int64) - 1
        keys = np.stack([cls, cy, cx], 1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inst[ys, xs] = inv.reshape(-1) + 1
        classes, cents = uniq[:, 0], uniq[:, 1:]
    return {"instances": inst, "classes": classes, "centroids": cents, "points": points,
            "sem": sem, "weight": t["weight"]}


def _pseudo_panel(image, pl, C, radius):
    n = len(pl["classes"])
    lab = pl["instances"].astype(np.int64)
    rejected = (pl["sem"] > 0) & (pl["sem"] <= C) & (lab == 0)
    lab = np.where(rejected, n + 1, lab)
    colors = np.concatenate([vis.instance_colors(n), np.array([[150, 150, 150]], np.uint8)])
    out = vis.overlay_label_map(image, lab, colors, alpha=0.6)
    out = vis.draw_points(out, pl["points"][:, :2], pl["points"][:, 2], vis.class_colors(C), radius=radius)
    return vis.draw_crosses(out, pl["centroids"], size=radius + 2)


def _gt_masks(record, h, w):
    import pycocotools.mask as mask_util

    masks, classes = [], []
    for a in record.get("annotations", []):
        seg = a.get("segmentation")
        if seg is None or a.get("iscrowd", 0):
            continue
        if isinstance(seg, list):
            rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):
            rle = mask_util.frPyObjects(seg, h, w)
        else:
            rle = seg
        masks.append(mask_util.decode(rle).astype(bool))
        classes.append(int(a["category_id"]))
    if not masks:
        return np.zeros((0, h, w), bool), classes
    return np.stack(masks), classes


@torch.no_grad()
def _predict(model, inp):
    out = model([inp])[0]
    center, offset = out.get("center"), out.get("offset")
    if (center is None or offset is None) and hasattr(model, "inference_maps"):
        maps = model.inference_maps(inp)
        center, offset = maps["center"], maps["offset"]
    return out["instances"].to("cpu"), center, offset


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
            columns then say "not available"). Run in eval mode under ``torch.no_grad()`` with
            ``return_maps`` on; its training flag and ``return_maps`` are restored afterwards.
        dataset_name: the split for the prediction rows (e.g. ``bestie_toy_val``); its labels
            column shows the ground truth when the records have ``annotations``.
        train_dataset: if set, ``num_train_images`` (default ``num_images``) rows of it come
            first, with pseudo labels from ``wsss_dir`` / ``cues_dir`` (see
            :func:`pseudo_label_instances`; a row whose inputs are missing says so).
        panel_size: cell side in pixels; ``score_threshold`` / ``max_instances``: predictions drawn.
    """
    from detectron2.utils.visualizer import ColorMode, Visualizer

    check_dataset(dataset_name)
    if train_dataset:
        check_dataset(train_dataset)
    C = int(cfg.BESTIE.NUM_CLASSES)
    names = _class_names(dataset_name, C)
    meta = MetadataCatalog.get(dataset_name)
    if not meta.get("thing_classes", None):
        meta = MetadataCatalog.get("__bestie_demo_grid_meta__")
        if not meta.get("thing_classes", None):
            meta.set(thing_classes=names)
    fmt = cfg.INPUT.FORMAT
    size = int(panel_size)
    radius = max(2, size // 80)

    def read(rec):
        """(RGB image for drawing, model input as the test-mode mapper builds it)."""
        img = utils.read_image(rec["file_name"], format=fmt)
        inp = {"image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))),
               "height": img.shape[0], "width": img.shape[1], "image_id": rec.get("image_id")}
        if "image_label" in rec:
            inp["image_label"] = torch.as_tensor(_vec(rec, C))
        rgb = np.ascontiguousarray(img[..., ::-1]) if fmt == "BGR" else img
        return rgb, inp

    def prediction_panels(inp, image):
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

    rows, titles = [], []
    was_training = model.training
    had_flag = hasattr(model, "return_maps")
    old_flag = getattr(model, "return_maps", None)
    model.eval()
    if had_flag:
        model.return_maps = True
    try:
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
                image, inp = read(rec)
                try:
                    pl = pseudo_label_instances(cfg, rec, wsss_dir=wsss_dir, cues_dir=cues_dir)
                    s = size / max(image.shape[:2])
                    big = vis.fit_panel(image, size)
                    scaled = dict(pl)
                    scaled["instances"] = _resize_nearest(pl["instances"], big.shape[:2])
                    scaled["sem"] = _resize_nearest(pl["sem"], big.shape[:2])
                    scaled["points"] = np.concatenate(
                        [(pl["points"][:, :2] + 0.5) * s - 0.5, pl["points"][:, 2:]], 1)
                    scaled["centroids"] = (pl["centroids"] + 0.5) * s - 0.5
                    pl_panel = _pseudo_panel(big, scaled, C, radius)
                    pl_title = f"pseudo labels: {len(pl['classes'])} instances from {len(pl['points'])} cues"
                except (BestieDataError, OSError) as e:
                    logger.warning(f"demo grid: no pseudo labels for {rec.get('image_id')}: {e}")
                    pl_panel = vis.text_panel(f"pseudo labels not available: {e}", (size, size))
                    pl_title = "pseudo labels"
                preds, ptitles = prediction_panels(inp, image)
                rows.append([vis.fit_panel(image, size), pl_panel] + preds)
                titles.append([f"train {rec.get('image_id')} ({_label_names(_vec(rec, C), names)})", pl_title] + ptitles)
        recs = DatasetCatalog.get(dataset_name)[: max(int(num_images), 0)]
        if recs:
            rows.append(f"{dataset_name}: ground truth vs. the model's output (eval mode, full image)")
            titles.append(None)
        for rec in recs:
            image, inp = read(rec)
            h, w = image.shape[:2]
            masks, _ = _gt_masks(rec, h, w)
            if "annotations" in rec:
                gt = vis.fit_panel(vis.overlay_masks(image, masks), size)
                gt_title = f"ground truth: {len(masks)} instances"
            else:
                gt = vis.text_panel("no ground truth in this record", (size, size))
                gt_title = "ground truth"
            preds, ptitles = prediction_panels(inp, image)
            rows.append([vis.fit_panel(image, size), gt] + preds)
            titles.append([f"{rec.get('image_id')}", gt_title] + ptitles)
    finally:
        model.train(was_training)
        if had_flag:
            model.return_maps = old_flag
    if not any(not isinstance(r, str) for r in rows):
        raise ValueError(f"nothing to draw: {dataset_name!r} (and the train data set) gave no images")
    grid = vis.compose_grid(rows, titles, cell_size=(size, size))
    vis.save_png(path, grid)
    logger.info(f"demo grid: {path}")
    return path


def _resize_nearest(arr, shape):
    import cv2

    a = np.asarray(arr)
    if tuple(a.shape[:2]) == tuple(shape):
        return a
    return cv2.resize(a.astype(np.float32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_NEAREST).astype(a.dtype)


def _vec(rec, C):
    v = np.zeros(C, np.float32)
    ids = [int(c) for c in rec.get("image_label", []) if 0 <= int(c) < C]
    v[ids] = 1
    return v


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Draw what BestieDatasetMapper feeds BESTIE (augmented crop + cues, semantic, "
                    "center, offset and IAG-weight targets), one PNG per sample.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="BESTIE config")
    p.add_argument("--dataset", default=None, help="registered data set (default: DATASETS.TRAIN[0])")
    p.add_argument("--output", required=True, help="folder for the PNGs")
    p.add_argument("--num", type=int, default=4, help="first N records (without --index/--image-id)")
    p.add_argument("--index", type=int, nargs="+", default=None, help="record indices to draw")
    p.add_argument("--image-id", nargs="+", default=None, help="image ids to draw")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (per sample: [seed, index])")
    p.add_argument("--panel-size", type=int, default=256, help="panel side in px (0 = crop size)")
    p.add_argument("--keep-going", action="store_true", help="skip samples whose inputs fail")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def _hint(cfg, err) -> str:
    if not isinstance(err, MissingDataError):
        return ""
    d = cfg.BESTIE.DATA
    key = "PEAK_POINTS_DIR" if cfg.BESTIE.SUPERVISION == "image" else "CENTER_POINTS_DIR"
    return (f"\nhint: BESTIE.DATA.{key}={getattr(d, key)!r}, BESTIE.DATA.WSSS_DIR={d.WSSS_DIR!r} "
            "(empty = the data set's default folders); make cues with bestie_d2.tools.extract_cues "
            "and WSSS maps with bestie_d2.tools.cam_to_semantic, or pass the folders as KEY VALUE overrides")


def main(argv=None) -> List[str]:
    from detectron2.utils.logger import setup_logger

    parser = build_parser()
    args = parse_args_with_opts(parser, argv)
    setup_logger(name="bestie_d2")
    try:
        cfg = setup_cfg(args.config_file, args.opts)
    except (FileNotFoundError, KeyError, ValueError) as e:
        parser.exit(2, f"visualize: error: {e}\n")
    dataset = args.dataset or (cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None)
    if not dataset:
        parser.exit(2, "visualize: error: no --dataset and DATASETS.TRAIN is empty\n")
    try:
        return visualize_dataset(cfg, dataset, args.output, num=args.num, indices=args.index,
                                 image_ids=args.image_id, seed=args.seed, panel_size=args.panel_size,
                                 keep_going=args.keep_going)
    except (KeyError, IndexError) as e:
        parser.exit(2, f"visualize: error: {e.args[0] if e.args else e}\n")
    except (BestieDataError, OSError, ValueError) as e:
        parser.exit(1, f"visualize: error: {e}{_hint(cfg, e)}\n")


def cli(argv=None) -> int:
    """Console script ``bestie-visualize``: like :func:`main`, but returns the exit status 0 (``main``
    returns its summary, which a console-script wrapper would print and turn into exit status 1)."""
    main(argv)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])

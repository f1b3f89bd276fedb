"""PASCAL VOC instance-segmentation evaluation (the chainercv / FCIS protocol, docs/method.md §7).

Protocol, per class ``c`` and IoU threshold ``t``:

* within each image, the predictions of class ``c`` are sorted by score (descending, stable) and
  each one is matched to the ground-truth instance of class ``c`` with which it has the largest
  mask IoU (first one on ties). It is a true positive if that IoU is ``>= t`` and this GT was not
  matched by a higher-scored prediction; otherwise it is a false positive. There is no
  re-matching: a prediction whose best GT is already taken is a FP, even if it overlaps another
  free GT by more than ``t``;
* all images' predictions of class ``c`` are then ranked by score (descending, stable, in image
  order on ties); precision = TP / (TP + FP), recall = TP / (number of GT instances of ``c``);
* AP = area under the PR curve, VOC2010+ style (not 11-point): the precision envelope is made
  monotonically decreasing from the right and summed over the recall steps;
* a class with no GT instance gets AP NaN and is left out of the mean (``nanmean``); a class with
  GT but no prediction gets AP 0. There are no "difficult" or crowd GT instances in this protocol
  (crowd annotations in data set records are skipped).

Masks are handled as compressed RLE (pycocotools) so that memory stays small; IoUs come from
``pycocotools.mask.iou(..., iscrowd=0)``, one matrix per (image, class), shared by all thresholds.

This module depends only on numpy, pycocotools and detectron2.
"""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict

import numpy as np
import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..utils.masks import encode_masks, masks_to_rles

__all__ = [
    "VOCInstanceEvaluator",
    "eval_instance_segmentation_voc",
    "eval_instance_segmentation_voc_multi",
    "voc_ap",
]

logger = logging.getLogger(__name__)


def _mask_iou(pred_rles, gt_rles):
    """IoU matrix ``(len(pred), len(gt))`` float64 (pycocotools, iscrowd=0)."""
    if len(pred_rles) == 0 or len(gt_rles) == 0:
        return np.zeros((len(pred_rles), len(gt_rles)), dtype=np.float64)
    iou = mask_util.iou(list(pred_rles), list(gt_rles), [0] * len(gt_rles))
    return np.asarray(iou, dtype=np.float64).reshape(len(pred_rles), len(gt_rles))


# ------------------------------------------------------------------------------------------------
# Metric
# ------------------------------------------------------------------------------------------------
def voc_ap(prec, rec):
    """Area under a PR curve, VOC2010+ method (``use_07_metric=False``).

    ``prec``/``rec``: 1-D arrays along the score-ranked predictions (may be empty -> AP 0).
    """
    prec = np.asarray(prec, dtype=np.float64)
    rec = np.asarray(rec, dtype=np.float64)
    mpre = np.concatenate(([0.0], np.nan_to_num(prec), [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _nanmean(x):
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or np.all(np.isnan(x)):
        return float("nan")
    return float(np.nanmean(x))


def _as_1d(a, dtype):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype).reshape(-1)


def eval_instance_segmentation_voc_multi(
    pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, iou_thresholds, num_classes
):
    """VOC instance-segmentation AP at several IoU thresholds (IoUs computed once).

    Args:
        pred_masks: per image, the predicted masks: list of RLE dicts or ``(N, H, W)`` array.
        pred_labels: per image, ``(N,)`` int class ids in ``[0, num_classes)``.
        pred_scores: per image, ``(N,)`` float scores.
        gt_masks: per image, the GT masks (same formats as ``pred_masks``).
        gt_labels: per image, ``(G,)`` int class ids.
        iou_thresholds: sequence of IoU thresholds.
        num_classes: number of classes ``C``.

    Returns:
        list (one per threshold) of dicts ``{"ap": (C,) float64 (NaN where no GT), "map": float,
        "prec": [C arrays or None], "rec": [C arrays or None], "n_pos": (C,) int64}``;
        AP values are fractions in ``[0, 1]``.
    """
    n = len(gt_masks)
    if not (len(pred_masks) == len(pred_labels) == len(pred_scores) == len(gt_labels) == n):
        raise ValueError(
            "pred_masks, pred_labels, pred_scores, gt_masks and gt_labels must have one entry per "
            f"image; got lengths {len(pred_masks)}, {len(pred_labels)}, {len(pred_scores)}, "
            f"{len(gt_masks)}, {len(gt_labels)}"
        )
    thresholds = [float(t) for t in iou_thresholds]
    num_classes = int(num_classes)
    n_pos = np.zeros(num_classes, dtype=np.int64)
    # per class: list of score arrays; per threshold/class: list of match arrays (same order)
    scores = [[] for _ in range(num_classes)]
    matches = [[[] for _ in range(num_classes)] for _ in thresholds]

    for i in range(n):
        p_rles, p_lab, p_sc, g_rles, g_lab = _image_entries(
            i, pred_masks[i], pred_labels[i], pred_scores[i], gt_masks[i], gt_labels[i], num_classes)
        for c in np.union1d(p_lab, g_lab):
            p_idx = np.nonzero(p_lab == c)[0]
            g_idx = np.nonzero(g_lab == c)[0]
            n_pos[c] += len(g_idx)
            if len(p_idx) == 0:
                continue
            order = np.argsort(-p_sc[p_idx], kind="stable")
            p_idx = p_idx[order]
            scores[c].append(p_sc[p_idx])
            per_thr = _match_ranked([p_rles[j] for j in p_idx], [g_rles[j] for j in g_idx], thresholds)
            for k, match in enumerate(per_thr):
                matches[k][c].append(match)

    return [_threshold_result(t, scores, matches[k], n_pos) for k, t in enumerate(thresholds)]


def _image_entries(i, pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, num_classes):
    """One image's predictions and GT as ``(pred RLEs, labels, scores, GT RLEs, labels)``, with
    their lengths, class ids and mask sizes checked (``ValueError`` naming image ``i``)."""
    p_rles = masks_to_rles(pred_masks)
    g_rles = masks_to_rles(gt_masks)
    p_lab = _as_1d(pred_labels, np.int64)
    p_sc = _as_1d(pred_scores, np.float64)
    g_lab = _as_1d(gt_labels, np.int64)
    if not (len(p_rles) == len(p_lab) == len(p_sc)):
        raise ValueError(
            f"image {i}: {len(p_rles)} predicted masks, {len(p_lab)} labels, {len(p_sc)} scores"
        )
    if len(g_rles) != len(g_lab):
        raise ValueError(f"image {i}: {len(g_rles)} GT masks but {len(g_lab)} labels")
    for lab in itertools.chain(p_lab, g_lab):
        if not 0 <= lab < num_classes:
            raise ValueError(f"image {i}: class id {lab} outside [0, {num_classes})")
    if g_rles and p_rles and tuple(g_rles[0]["size"]) != tuple(p_rles[0]["size"]):
        raise ValueError(
            f"image {i}: predicted mask size {tuple(p_rles[0]['size'])} differs from the GT "
            f"mask size {tuple(g_rles[0]['size'])}"
        )
    return p_rles, p_lab, p_sc, g_rles, g_lab


def _match_ranked(p_rles, g_rles, thresholds):
    """Per threshold, the ``(P,)`` bool TP flags of one image's score-ranked predictions of one
    class against its GT of that class (best-IoU GT, first come first served; module doc)."""
    if len(g_rles) == 0:
        return [np.zeros(len(p_rles), dtype=bool) for _ in thresholds]
    iou = _mask_iou(p_rles, g_rles)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(p_rles)), best]
    out = []
    for t in thresholds:
        taken = np.zeros(len(g_rles), dtype=bool)
        match = np.zeros(len(p_rles), dtype=bool)
        for j in range(len(p_rles)):
            if best_iou[j] >= t and not taken[best[j]]:
                match[j] = True
                taken[best[j]] = True
        out.append(match)
    return out


def _threshold_result(t, scores, matches, n_pos):
    """The result dict of one threshold from the per-class score and TP-flag lists (all images)."""
    num_classes = len(n_pos)
    ap = np.full(num_classes, np.nan, dtype=np.float64)
    precs, recs = [None] * num_classes, [None] * num_classes
    for c in range(num_classes):
        sc = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        mt = np.concatenate(matches[c]) if matches[c] else np.zeros(0, dtype=bool)
        order = np.argsort(-sc, kind="stable")
        mt = mt[order]
        tp = np.cumsum(mt)
        fp = np.cumsum(~mt)
        prec = tp / np.maximum(tp + fp, 1)
        precs[c] = prec
        if n_pos[c] > 0:
            rec = tp / n_pos[c]
            recs[c] = rec
            ap[c] = voc_ap(prec, rec)
    return {"iou_thresh": t, "ap": ap, "map": _nanmean(ap), "prec": precs, "rec": recs, "n_pos": n_pos.copy()}


def eval_instance_segmentation_voc(
    pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, iou_thresh=0.5, num_classes=None
):
    """VOC instance-segmentation AP at one IoU threshold (chainercv / FCIS protocol).

    Arguments as in :func:`eval_instance_segmentation_voc_multi`; ``num_classes`` defaults to
    ``1 + max label`` seen. Returns ``{"ap": (C,) array (NaN for classes without GT), "map":
    nanmean of ap, "prec", "rec", "n_pos", "iou_thresh"}`` with AP as fractions in ``[0, 1]``.
    """
    if num_classes is None:
        labels = [_as_1d(x, np.int64) for x in itertools.chain(pred_labels, gt_labels)]
        labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        num_classes = int(labels.max()) + 1 if labels.size else 0
    return eval_instance_segmentation_voc_multi(
        pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, [iou_thresh], num_classes
    )[0]


# ------------------------------------------------------------------------------------------------
# DatasetEvaluator
# ------------------------------------------------------------------------------------------------
def _thr_key(t):
    return f"{int(round(float(t) * 100))}"


class VOCInstanceEvaluator(DatasetEvaluator):
    """Evaluate instance masks with the PASCAL VOC (chainercv / FCIS) protocol.

    Ground truth comes from the ``DatasetCatalog`` records of ``dataset_name`` (``annotations`` with
    RLE ``segmentation`` and contiguous ``category_id``), class names from
    ``MetadataCatalog.get(dataset_name).thing_classes``. Predictions are read from
    ``outputs[i]["instances"]`` (``pred_masks`` (N, H, W) at the original image size,
    ``pred_classes``, ``scores``) and stored RLE-encoded.

    ``evaluate()`` returns ``{"voc_instance": {"mAP25": .., "mAP50": .., "mAP70": .., "mAP75": ..,
    "AP50-<class>": ..}}`` in percent (one ``mAP<t>`` per threshold; per-class AP at 0.5, or at the
    first threshold when 0.5 is not evaluated). Classes without GT are NaN per class and left out
    of the means.
    """

    def __init__(
        self,
        dataset_name,
        *,
        iou_thresholds=(0.25, 0.5, 0.7, 0.75),
        distributed=True,
        output_dir=None,
    ):
        self._dataset_name = dataset_name
        self._iou_thresholds = tuple(float(t) for t in iou_thresholds)
        if not self._iou_thresholds:
            raise ValueError("iou_thresholds must not be empty")
        for t in self._iou_thresholds:
            if not 0.0 < t <= 1.0:
                raise ValueError(f"IoU threshold {t} outside (0, 1]")
        self._distributed = distributed
        self._output_dir = output_dir
        self._cpu_device = "cpu"
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = list(getattr(meta, "thing_classes", None) or [])
        if not self._class_names:
            raise ValueError(f"MetadataCatalog['{dataset_name}'] has no thing_classes")
        self._gt = None  # loaded lazily on the main process
        self._predictions = []

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = {"image_id": inp["image_id"]}
            if "instances" in out:
                inst = out["instances"].to(self._cpu_device)
                n = len(inst)
                if n and inst.has("pred_masks"):
                    pred["masks"] = encode_masks(inst.pred_masks)
                elif n:
                    raise ValueError("VOCInstanceEvaluator needs instances with pred_masks")
                else:
                    pred["masks"] = []
                pred["classes"] = (
                    inst.pred_classes.numpy().astype(np.int64) if n else np.zeros(0, np.int64)
                )
                pred["scores"] = inst.scores.numpy().astype(np.float64) if n else np.zeros(0)
            else:
                pred["masks"], pred["classes"], pred["scores"] = [], np.zeros(0, np.int64), np.zeros(0)
            self._predictions.append(pred)

    # -- ground truth ----------------------------------------------------------------------------
    def _load_gt(self):
        if self._gt is not None:
            return self._gt
        records = DatasetCatalog.get(self._dataset_name)
        if not any("annotations" in r for r in records):
            raise ValueError(
                f"data set '{self._dataset_name}' has no 'annotations' (GT masks) to evaluate against"
            )
        gt = OrderedDict()
        num_classes = len(self._class_names)
        for r in records:
            img_id = r["image_id"]
            if img_id in gt:
                raise ValueError(f"image id {img_id!r} appears twice in data set '{self._dataset_name}'")
            h, w = int(r["height"]), int(r["width"])
            rles, labels = [], []
            for ann in r.get("annotations", []):
                if ann.get("iscrowd", 0):
                    continue
                c = int(ann["category_id"])
                if not 0 <= c < num_classes:
                    raise ValueError(
                        f"image {img_id!r}: category_id {c} outside [0, {num_classes}) "
                        "(expected contiguous ids)"
                    )
                rle = masks_to_rles([ann["segmentation"]], h, w)[0]
                if tuple(rle["size"]) != (h, w):
                    raise ValueError(
                        f"image {img_id!r}: GT mask size {tuple(rle['size'])} != record size {(h, w)}"
                    )
                rles.append(rle)
                labels.append(c)
            gt[img_id] = {"height": h, "width": w, "masks": rles,
                          "classes": np.asarray(labels, dtype=np.int64)}
        self._gt = gt
        return gt

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain(*gathered))
        else:
            predictions = self._predictions

        gt = self._load_gt()
        by_image = self._predictions_by_image(predictions, gt)
        empty = {"masks": [], "classes": np.zeros(0, np.int64), "scores": np.zeros(0)}
        pm, pl, ps, gm, gl = [], [], [], [], []
        for img_id, g in gt.items():
            p = by_image.get(img_id, empty)
            pm.append(p["masks"])
            pl.append(p["classes"])
            ps.append(p["scores"])
            gm.append(g["masks"])
            gl.append(g["classes"])
        num_classes = len(self._class_names)
        res = eval_instance_segmentation_voc_multi(
            pm, pl, ps, gm, gl, self._iou_thresholds, num_classes
        )

        metrics = OrderedDict()
        for t, r in zip(self._iou_thresholds, res):
            metrics[f"mAP{_thr_key(t)}"] = 100.0 * r["map"]
        k_cls = self._iou_thresholds.index(0.5) if 0.5 in self._iou_thresholds else 0
        t_cls = _thr_key(self._iou_thresholds[k_cls])
        for c, name in enumerate(self._class_names):
            metrics[f"AP{t_cls}-{name}"] = 100.0 * float(res[k_cls]["ap"][c])
        metrics = OrderedDict((k, float(v)) for k, v in metrics.items())

        self._log_table(res)
        if self._output_dir:
            self._save(predictions, metrics)
        return OrderedDict({"voc_instance": metrics})

    def _predictions_by_image(self, predictions, gt):
        """``{image id: prediction}``, checking ids and mask sizes against the GT; logs images
        without a prediction."""
        by_image = {}
        for p in predictions:
            img_id = p["image_id"]
            if img_id not in gt:
                raise KeyError(
                    f"prediction for image id {img_id!r}, which is not in data set "
                    f"'{self._dataset_name}'"
                )
            if img_id in by_image:
                raise ValueError(f"image id {img_id!r} was processed more than once")
            g = gt[img_id]
            if len(p["masks"]) and tuple(p["masks"][0]["size"]) != (g["height"], g["width"]):
                raise ValueError(
                    f"image {img_id!r}: predicted masks have size {tuple(p['masks'][0]['size'])}, "
                    f"the image is {(g['height'], g['width'])}; predictions must be at the "
                    "original resolution"
                )
            by_image[img_id] = p
        if not predictions:
            logger.warning("[VOCInstanceEvaluator] no predictions: every GT instance is missed.")
        n_missing = sum(1 for k in gt if k not in by_image)
        if predictions and n_missing:
            logger.warning(
                f"[VOCInstanceEvaluator] {n_missing} of {len(gt)} images of "
                f"'{self._dataset_name}' have no prediction; their GT instances count as missed."
            )
        return by_image

    def _log_table(self, res):
        from tabulate import tabulate

        n_pos = res[0]["n_pos"]
        headers = ["category", "#GT"] + [f"AP{_thr_key(t)}" for t in self._iou_thresholds]
        rows = []
        for c, name in enumerate(self._class_names):
            rows.append([name, int(n_pos[c])] + [100.0 * float(r["ap"][c]) for r in res])
        rows.append(["mean", int(n_pos.sum())] + [100.0 * r["map"] for r in res])
        table = tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".2f", numalign="left")
        logger.info(
            f"VOC instance segmentation results on '{self._dataset_name}' "
            f"(AP in %, NaN = no GT of the class):\n" + table
        )

    def _save(self, predictions, metrics):
        PathManager.mkdirs(self._output_dir)
        out = []
        for p in predictions:
            for rle, c, s in zip(p["masks"], p["classes"], p["scores"]):
                rle = copy.copy(rle)
                if isinstance(rle["counts"], bytes):
                    rle["counts"] = rle["counts"].decode("ascii")
                out.append({"image_id": p["image_id"], "category_id": int(c),
                            "score": float(s), "segmentation": rle})
        path = os.path.join(self._output_dir, "voc_instance_predictions.json")
        with PathManager.open(path, "w") as f:
            json.dump(out, f)
        path = os.path.join(self._output_dir, "voc_instance_metrics.json")
        with PathManager.open(path, "w") as f:
            # json has no NaN in the standard; write null instead
            json.dump({k: (None if v != v else v) for k, v in metrics.items()}, f, indent=2)
        logger.info(f"Saved {len(out)} predictions and the metrics to {self._output_dir}")

"""Pseudo labels for Mask R-CNN: a trained model's predictions on a training split as COCO json.

Step 1 of the Mask R-CNN refinement (docs/method.md §9). :class:`PseudoLabelWriter` is a Detectron2
``DatasetEvaluator``: ``inference_on_dataset`` runs the model over the split and hands each
image's outputs to it; it gathers the entries of every rank to the main process
(``detectron2.utils.comm.gather``) and writes the json there once, atomically
(:func:`bestie_d2.utils.io.atomic_write`). :func:`export_pseudo_coco` builds the loader (the
model's test mapper, by default the BESTIE test input of
:class:`~bestie_d2.data.mappers.BestieDatasetMapper`), switches the model's test settings for the
export and runs it.

With point labels (the point route) the model can decode one instance per point of the image
(``use_points``, :mod:`bestie_d2.modeling.point_decoding`) instead of finding centers; the points
are training labels, like the image labels of the filter below.

Per image, in this order: (1) with the label filter (default on) only classes of the image's
labels (:func:`~bestie_d2.data.mappers.record_classes`) are kept — image labels are known at
training time; a model with ``test_use_image_labels`` (BESTIE) is also asked to zero the absent
classes of its semantic map before decoding ("val_clean"); (2) instances with
``score < score_threshold`` are dropped; (3) instances with fewer than ``max(min_area, 1)`` pixels
are dropped.

With point-guided decoding every distinct point label of an image should become one instance; a
point whose class got no pixels near it gets none, and the summary counts such points
(``points``: ``labelled``, ``without_instance``) and logs them.

Json: ``images`` (``id`` an integer, as the COCO format specifies: the record's ``image_id`` when it
is one (COCO), else 1..N in data-set order; ``file_name`` relative to the source image folder, so
the VOC id stays in the file stem; ``height``, ``width``) in data-set order, ``annotations`` (``id`` 1..N, ``image_id``,
``category_id`` = the data set's id, ``segmentation`` compressed RLE with str ``counts``,
``area``, ``bbox`` XYWH from the mask, ``iscrowd`` 0, ``score``), ``categories``, ``info``
(source data set, image root, settings).
"""
import contextlib
import json
import logging
import numbers
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm

from ..data.input_check import check_images
from ..data.mappers import BestieDatasetMapper, record_classes
from ..engine.hooks import unwrap_model
from ..utils.io import atomic_write
from ..utils.masks import encode_masks
from .registration import contiguous_to_dataset_id, source_image_root

__all__ = ["PseudoLabelWriter", "export_pseudo_coco", "instances_to_annotations", "merge_entries", "summarize",
           "json_image_id"]

logger = logging.getLogger(__name__)


def instances_to_annotations(
    instances,
    *,
    cat_ids: Dict[int, int],
    image_label: Optional[Sequence[int]] = None,
    score_threshold: float = 0.0,
    min_area: int = 0,
    image_size=None,
    stats: Optional[Counter] = None,
) -> List[dict]:
    """One image's predicted ``Instances`` -> COCO annotation dicts (without ``id``/``image_id``).

    ``instances``: ``pred_masks`` (N, H, W) bool (or float, > 0.5) at ``image_size`` (H, W),
    ``pred_classes`` (N,) contiguous ids, ``scores`` (N,). ``cat_ids`` maps contiguous class ->
    json category id. ``image_label`` (None = no filter) keeps only those classes. ``stats`` (a
    Counter) receives the number of dropped instances per reason. Instances keep the model's order.
    """
    stats = stats if stats is not None else Counter()
    if len(instances) == 0:
        return []
    masks = instances.pred_masks
    masks = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if masks.dtype.kind == "f":
        masks = masks > 0.5
    masks = masks.astype(bool, copy=False)
    if image_size is not None and tuple(masks.shape[1:]) != tuple(image_size):
        raise ValueError(
            f"predicted masks have size {tuple(masks.shape[1:])}, the image is {tuple(image_size)}: "
            "the model must return masks at the original image size"
        )
    classes = instances.pred_classes.detach().cpu().numpy().astype(np.int64)
    scores = instances.scores.detach().cpu().numpy().astype(np.float64)
    allowed = None if image_label is None else set(int(c) for c in image_label)
    min_area = max(int(min_area), 1)
    anns = []
    for mask, c, score in zip(masks, classes.tolist(), scores):
        if allowed is not None and c not in allowed:
            stats["dropped_label_filter"] += 1
            continue
        if score < score_threshold:
            stats["dropped_score"] += 1
            continue
        area = int(mask.sum())
        if area < min_area:
            stats["dropped_min_area"] += 1
            continue
        if c not in cat_ids:
            raise ValueError(f"predicted class {c} is outside 0..{len(cat_ids) - 1}")
        rle = encode_masks(mask[None])[0]
        bbox = [float(v) for v in mask_util.toBbox(rle)]
        anns.append({
            "category_id": int(cat_ids[c]),
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(area),
            "bbox": bbox,
            "iscrowd": 0,
            "score": float(score),
        })
    return anns


def merge_entries(entries: List[dict], categories: List[dict], info: Optional[dict] = None) -> dict:
    """Per-image entries ``{"index", "image", "annotations"}`` (any order, from any rank) ->
    a COCO dict, images in ``index`` (data-set) order, annotation ids ``1..N`` in that order."""
    entries = sorted(entries, key=lambda e: e["index"])
    indices = [e["index"] for e in entries]
    if len(set(indices)) != len(indices):
        raise ValueError("duplicate image indices across ranks")
    images, annotations = [], []
    for e in entries:
        images.append(e["image"])
        for a in e["annotations"]:
            ann = {"id": len(annotations) + 1, "image_id": e["image"]["id"]}
            ann.update(a)
            annotations.append(ann)
    out = {"images": images, "annotations": annotations, "categories": categories}
    if info is not None:
        out["info"] = info
    return out


#: ``stats`` keys that count point labels, not dropped instances.
_POINT_STATS = ("points_labelled", "points_without_instance")


def json_image_id(record: dict, index: int) -> int:
    """The integer ``id`` of a record's image in a written json: its ``image_id`` when that is an
    integer (COCO records keep their json's ids), else ``index + 1`` (VOC ids are file stems)."""
    iid = record.get("image_id")
    return int(iid) if isinstance(iid, numbers.Integral) and not isinstance(iid, bool) else index + 1


def summarize(coco: dict, dataset_name: str, stats: Counter) -> dict:
    """Counts of a written export: ``dataset``, ``images``, ``instances``,
    ``images_without_instances``, ``per_class`` (name -> count), ``dropped`` (instances dropped by
    a filter: reason -> count) and, when point labels were given, ``points`` (``labelled``:
    distinct point labels, ``without_instance``: those that got no pixels, hence no instance)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_class = Counter(names[a["category_id"]] for a in coco["annotations"])
    with_ann = {a["image_id"] for a in coco["annotations"]}
    out = {
        "dataset": dataset_name,
        "images": len(coco["images"]),
        "instances": len(coco["annotations"]),
        "images_without_instances": sum(1 for im in coco["images"] if im["id"] not in with_ann),
        "per_class": {names[k]: per_class.get(names[k], 0) for k in sorted(names)},
        "dropped": {k: int(v) for k, v in sorted(stats.items()) if k not in _POINT_STATS},
    }
    if "points_labelled" in stats:
        out["points"] = {"labelled": int(stats["points_labelled"]),
                         "without_instance": int(stats["points_without_instance"])}
    return out


def _log_summary(s: dict, output_json: str) -> None:
    lines = [
        f"Pseudo labels of '{s['dataset']}' written to {output_json}: {s['images']} images, "
        f"{s['instances']} instances, {s['images_without_instances']} images without any instance.",
        "Instances per class: " + ", ".join(f"{k}={v}" for k, v in s["per_class"].items()),
    ]
    if "points" in s:
        p = s["points"]
        lines.append(f"Point labels: {p['labelled']}, of which {p['without_instance']} got no pixels of their "
                     "class near them (no instance)")
    if s["dropped"]:
        lines.append("Dropped: " + ", ".join(f"{k}={v}" for k, v in s["dropped"].items()))
    logger.info("\n".join(lines))


class PseudoLabelWriter(DatasetEvaluator):
    """``DatasetEvaluator`` that writes a model's predictions on ``dataset_name`` as pseudo labels.

    Inputs are matched to the data set's records by ``image_id`` (unique per data set); the
    label filter and the image sizes come from the records. :meth:`evaluate` gathers every
    rank's entries to the main process, writes ``output_json`` there and returns the
    :func:`summarize` dict (``{}`` on other ranks).

    Args:
        dataset_name: a registered split with ``thing_classes`` metadata.
        output_json: the json to write.
        score_threshold, keep_image_label_classes, min_area: the filters (module docstring).
        flip_tta, point_guided: recorded in ``info`` (the model's switches are the caller's;
            :func:`export_pseudo_coco`).
        records: the split's records, if already loaded.
    """

    def __init__(self, dataset_name: str, output_json: str, *, score_threshold: float = 0.0,
                 keep_image_label_classes: bool = True, min_area: int = 0,
                 flip_tta: Optional[bool] = None, point_guided: Optional[bool] = None,
                 records: Optional[Sequence[dict]] = None):
        self.dataset_name, self.output_json = dataset_name, output_json
        self.records = list(DatasetCatalog.get(dataset_name) if records is None else records)
        self.index = {r["image_id"]: i for i, r in enumerate(self.records)}
        if len(self.index) != len(self.records):
            raise ValueError(f"data set '{dataset_name}' has duplicate image ids")
        thing_classes = MetadataCatalog.get(dataset_name).get("thing_classes", None)
        if thing_classes is None:
            raise KeyError(f"data set '{dataset_name}' has no thing_classes metadata")
        self.cat_ids = contiguous_to_dataset_id(MetadataCatalog.get(dataset_name), len(thing_classes))
        self.categories = sorted(
            ({"id": self.cat_ids[c], "name": n, "supercategory": ""} for c, n in enumerate(thing_classes)),
            key=lambda c: c["id"],
        )
        self.image_root = source_image_root(dataset_name, self.records)
        self.score_threshold, self.min_area = score_threshold, min_area
        self.keep_image_label_classes = keep_image_label_classes
        self.info = {
            "description": f"bestie_d2 pseudo labels of {dataset_name}",
            "source_dataset": dataset_name,
            "image_root": self.image_root,
            "score_threshold": float(score_threshold),
            "keep_image_label_classes": bool(keep_image_label_classes),
            "min_area": int(min_area),
            "flip_tta": flip_tta,
            "point_guided": point_guided,
        }
        self.reset()

    def reset(self):
        self._entries, self._stats = [], Counter()

    def _labels(self, record):
        if not self.keep_image_label_classes:
            return None
        try:
            return record_classes(record)
        except KeyError as e:
            raise KeyError(f"{e.args[0]}; export with keep_image_label_classes=False (--no-label-filter)") from e

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            index = self.index[inp["image_id"]]
            record = self.records[index]
            height = int(record.get("height", inp["height"]))
            width = int(record.get("width", inp["width"]))
            anns = instances_to_annotations(
                out["instances"].to("cpu"), cat_ids=self.cat_ids, image_label=self._labels(record),
                score_threshold=self.score_threshold, min_area=self.min_area,
                image_size=(height, width), stats=self._stats,
            )
            if self.info["point_guided"] and "points" in inp:
                self._count_points(inp["points"], len(out["instances"]))
            file_name = record["file_name"]
            if self.image_root:
                file_name = os.path.relpath(os.path.abspath(file_name), self.image_root)
            image = {"id": json_image_id(record, index), "file_name": file_name, "height": height, "width": width}
            self._entries.append({"index": index, "image": image, "annotations": anns})

    def _count_points(self, points, num_instances: int) -> None:
        """Point-guided decoding gives one instance per distinct point that got pixels (before the
        filters): the rest of the image's ``points`` ``(K, 3)`` got none."""
        pts = np.asarray(points.cpu() if hasattr(points, "cpu") else points).reshape(-1, 3)
        n = len(np.unique(pts, axis=0)) if len(pts) else 0
        self._stats["points_labelled"] += n
        self._stats["points_without_instance"] += max(n - int(num_instances), 0)

    def evaluate(self):
        entries, stats = self._entries, self._stats
        if comm.get_world_size() > 1:
            comm.synchronize()
            parts = comm.gather((entries, dict(stats)), dst=0)
            if not comm.is_main_process():
                return {}
            entries, stats = [e for part, _ in parts for e in part], Counter()
            for _, s in parts:
                stats.update(s)
        coco = merge_entries(entries, self.categories, self.info)
        atomic_write(self.output_json, json.dumps(coco, separators=(",", ":")), fsync=True)
        summary = summarize(coco, self.dataset_name, stats)
        _log_summary(summary, self.output_json)
        return summary


@contextlib.contextmanager
def _test_switches(model, **switches):
    """Set the model's test-time switches that are not None (and that it has) for a block."""
    old = {}
    try:
        for k, v in switches.items():
            if v is not None and hasattr(model, k):
                old[k] = getattr(model, k)
                setattr(model, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(model, k, v)


def export_pseudo_coco(
    model,
    dataset_name: str,
    output_json: str,
    *,
    mapper=None,
    score_threshold: float = 0.0,
    keep_image_label_classes: bool = True,
    min_area: int = 0,
    flip_tta: Optional[bool] = None,
    use_points: Optional[bool] = None,
    num_workers: int = 0,
    missing_input: str = "error",
) -> Optional[dict]:
    """Predict on the registered data set ``dataset_name`` and write a COCO instances json.

    Args:
        model: a detectron2-style model (or its DDP wrapper) whose eval-mode output has
            ``instances`` with ``pred_masks`` (N, H, W) at the original size, ``pred_classes``, ``scores``.
        dataset_name: a registered (training) split.
        output_json: where to write; written atomically by the main process.
        mapper: record -> model input; default the BESTIE test input
            (``BestieDatasetMapper(is_train=False)``, RGB uint8 at the original size).
        score_threshold, keep_image_label_classes, min_area: see :class:`PseudoLabelWriter`;
            with ``keep_image_label_classes`` the model is also asked to clean its semantic map
            with the image labels (``test_use_image_labels``), if it supports that.
        flip_tta: force the model's flip TTA (``test_flip``) on/off; None = the model's setting.
        use_points: force point-guided decoding (``test_use_points``: one instance per point
            label of the image, docs/method.md §9) on/off; None = the model's setting. On, the
            inputs must carry ``points``: the default mapper then reads the records'
            ``center_points_file`` (``BestieDatasetMapper(supervision="point", test_points=True)``).
        num_workers: data-loading workers per process.
        missing_input: ``BESTIE.DATA.MISSING_INPUT``: a missing image is an error listing all of
            them ("error"), or the image is left out with a logged count ("skip").

    Under ``launch`` (world size > 1) every rank must call this; Detectron2's inference sampler
    splits the images, the main process writes the json.

    Returns:
        the :func:`summarize` dict on the main process, None on other ranks.
    """
    inner = unwrap_model(model)
    if flip_tta and not hasattr(inner, "test_flip"):
        raise ValueError(f"flip TTA requested, but {type(inner).__name__} has no 'test_flip' switch")
    if use_points and not hasattr(inner, "test_use_points"):
        raise ValueError(f"point-guided decoding requested, but {type(inner).__name__} has no 'test_use_points' switch")
    records = check_images(DatasetCatalog.get(dataset_name), missing_input, [dataset_name])
    guided = use_points if use_points is not None else bool(getattr(inner, "test_use_points", False))
    writer = PseudoLabelWriter(
        dataset_name, output_json, score_threshold=score_threshold,
        keep_image_label_classes=keep_image_label_classes, min_area=min_area, flip_tta=flip_tta,
        point_guided=guided, records=records,
    )
    if mapper is None:
        mapper = BestieDatasetMapper(is_train=False, num_classes=len(writer.categories),
                                     supervision="point" if guided else "image", test_points=guided)
    loader = build_detection_test_loader(records, mapper=mapper, num_workers=num_workers)
    use_labels = True if keep_image_label_classes else None
    with _test_switches(inner, test_flip=flip_tta, test_use_image_labels=use_labels, test_use_points=use_points):
        summary = inference_on_dataset(inner, loader, writer)
    return summary if comm.is_main_process() else None

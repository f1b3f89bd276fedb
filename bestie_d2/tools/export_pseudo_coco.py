"""Export a trained model's predictions on a training split as a COCO instances json.

Step 1 of the Mask R-CNN refinement (docs/method.md §9): run BESTIE over the *training* images, keep
the predicted masks / classes / scores, write them as COCO pseudo labels; step 2 trains a
Mask R-CNN on them (``configs/*/mask_rcnn_R50_FPN_refine.yaml``)::

    python -m bestie_d2.tools.export_pseudo_coco \\
        --config-file configs/VOC/bestie_HRNet48_image_label.yaml \\
        --dataset voc_2012_train_aug --output output/pseudo/voc_train_aug.json \\
        [--score-threshold T] [--no-label-filter] [--min-area A] [--flip] [--num-gpus N] \\
        MODEL.WEIGHTS output/bestie/model_final.pth

Per image, in this order: (1) with the label filter (default on) only classes of the image's
``image_label`` are kept — image labels are known at training time; a model with
``test_use_image_labels`` (BESTIE) is also asked to zero the absent classes of its semantic map
before decoding ("val_clean"); (2) instances with ``score < score_threshold`` are dropped;
(3) instances with fewer than ``max(min_area, 1)`` pixels are dropped.

Json: ``images`` (``id`` = the record's ``image_id``, ``file_name`` relative to the source image
folder, ``height``, ``width``), ``annotations`` (``id`` 1..N, ``image_id``, ``category_id`` = the
data set's id, ``segmentation`` compressed RLE with str ``counts``, ``area``, ``bbox`` XYWH from the
mask, ``iscrowd`` 0, ``score``), ``categories``, ``info`` (source data set, image root, settings).

With ``--num-gpus N`` (N CPU processes without CUDA) each rank handles ``records[rank::N]`` and
writes a shard; rank 0 merges the shards in data-set order, numbers the annotations and writes the
json atomically (temporary file + ``os.replace``).
"""
import argparse
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

import bestie_d2  # noqa: F401  (prepares detectron2, registers everything)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from ..data.pseudo_coco import contiguous_to_dataset_id, source_image_root

__all__ = [
    "export_pseudo_coco",
    "predict_entries",
    "instances_to_annotations",
    "merge_entries",
    "write_json_atomic",
    "ImageLabelTestMapper",
    "main",
    "invoke_main",
    "cli",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------------
def _image_label_of(record: dict) -> List[int]:
    if "image_label" in record:
        return sorted({int(c) for c in record["image_label"]})
    if "annotations" in record:
        return sorted({int(a["category_id"]) for a in record["annotations"] if not a.get("iscrowd", 0)})
    raise KeyError(
        f"record {record.get('image_id')!r} has neither 'image_label' nor 'annotations'; "
        "export with keep_image_label_classes=False (--no-label-filter)"
    )


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

    ``cat_ids`` maps contiguous class -> json category id. ``image_label`` (None = no filter) keeps
    only those classes. ``stats`` (a Counter) receives the number of dropped instances per reason.
    Instances keep the model's order.
    """
    stats = stats if stats is not None else Counter()
    n = len(instances)
    if n == 0:
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
    for i in range(n):
        c = int(classes[i])
        if allowed is not None and c not in allowed:
            stats["dropped_label_filter"] += 1
            continue
        if scores[i] < score_threshold:
            stats["dropped_score"] += 1
            continue
        area = int(masks[i].sum())
        if area < min_area:
            stats["dropped_min_area"] += 1
            continue
        if c not in cat_ids:
            raise ValueError(f"predicted class {c} is outside 0..{len(cat_ids) - 1}")
        rle = mask_util.encode(np.asfortranarray(masks[i][:, :, None], dtype=np.uint8))[0]
        bbox = [float(v) for v in mask_util.toBbox(rle)]
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "category_id": int(cat_ids[c]),
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"]},
                "area": float(area),
                "bbox": bbox,
                "iscrowd": 0,
                "score": float(scores[i]),
            }
        )
    return anns


def merge_entries(entries: List[dict], categories: List[dict], info: Optional[dict] = None) -> dict:
    """Per-image entries ``{"index", "image", "annotations"}`` (any order, from any shards) ->
    a COCO dict, images in ``index`` order, annotation ids ``1..N`` in that order."""
    entries = sorted(entries, key=lambda e: e["index"])
    indices = [e["index"] for e in entries]
    if len(set(indices)) != len(indices):
        raise ValueError("duplicate image indices across shards")
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


def write_json_atomic(obj, path: str) -> None:
    """``json.dump`` to a temporary file in the target folder, fsync, ``os.replace``
    (:func:`bestie_d2.utils.io.atomic_open`: the file gets the usual ``0o666 & ~umask`` mode)."""
    from ..utils.io import atomic_open

    with atomic_open(path, "w", fsync=True) as f:
        json.dump(obj, f, separators=(",", ":"))


def summarize(coco: dict, dataset_name: str, stats: Counter) -> dict:
    """Counts of a merged export (also logged)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_class = Counter(names[a["category_id"]] for a in coco["annotations"])
    with_ann = {a["image_id"] for a in coco["annotations"]}
    summary = {
        "dataset": dataset_name,
        "images": len(coco["images"]),
        "instances": len(coco["annotations"]),
        "images_without_instances": sum(1 for im in coco["images"] if im["id"] not in with_ann),
        "per_class": {names[k]: per_class.get(names[k], 0) for k in sorted(names)},
        "dropped": {k: int(v) for k, v in sorted(stats.items())},
    }
    return summary


def _log_summary(s: dict, output_json: str) -> None:
    lines = [
        f"Pseudo labels of '{s['dataset']}' written to {output_json}: {s['images']} images, "
        f"{s['instances']} instances, {s['images_without_instances']} images without any instance.",
        "Instances per class: " + ", ".join(f"{k}={v}" for k, v in s["per_class"].items()),
    ]
    if s["dropped"]:
        lines.append("Dropped: " + ", ".join(f"{k}={v}" for k, v in s["dropped"].items()))
    logger.info("\n".join(lines))


# ------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------
class ImageLabelTestMapper:
    """Default test mapper: ``image`` (3,H,W) uint8 RGB at the original size, ``image_label``
    (C,) float multi-hot, ``height``, ``width``, ``image_id``, ``file_name`` (the BESTIE test-mode
    contract). Use the model's own mapper (``BestieDatasetMapper`` / detectron2's ``DatasetMapper``)
    when the model needs another input format."""

    def __init__(self, num_classes: int, image_format: str = "RGB"):
        self.num_classes = int(num_classes)
        self.image_format = image_format

    def __call__(self, record: dict) -> dict:
        from detectron2.data import detection_utils as utils

        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        label = torch.zeros(self.num_classes, dtype=torch.float32)
        if "image_label" in record:
            label[list(record["image_label"])] = 1.0
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "image_label": label,
            "height": record.get("height", image.shape[0]),
            "width": record.get("width", image.shape[1]),
            "image_id": record["image_id"],
            "file_name": record["file_name"],
        }


@contextlib.contextmanager
def _model_settings(model, **settings):
    """Temporarily set attributes that the model has (others are ignored); restores eval/train."""
    old = {}
    was_training = model.training
    try:
        for k, v in settings.items():
            if v is not None and hasattr(model, k):
                old[k] = getattr(model, k)
                setattr(model, k, v)
        model.eval()
        yield
    finally:
        for k, v in old.items():
            setattr(model, k, v)
        model.train(was_training)


def predict_entries(
    model,
    records: Sequence[dict],
    indices: Sequence[int],
    *,
    mapper,
    cat_ids: Dict[int, int],
    image_root: str,
    score_threshold: float = 0.0,
    keep_image_label_classes: bool = True,
    min_area: int = 0,
    num_workers: int = 0,
    progress: bool = False,
    stats: Optional[Counter] = None,
) -> List[dict]:
    """Run ``model`` on ``records[i]`` for ``i`` in ``indices``; one entry per image:
    ``{"index": i, "image": {...}, "annotations": [...]}``."""
    from detectron2.data.build import trivial_batch_collator
    from detectron2.data.common import DatasetFromList, MapDataset

    stats = stats if stats is not None else Counter()
    subset = [records[i] for i in indices]
    loader = torch.utils.data.DataLoader(
        MapDataset(DatasetFromList(subset, copy=False), mapper),
        batch_size=1,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
    )
    pbar = None
    if progress:
        from tqdm import tqdm

        # updated by hand once an image is done: a tqdm-wrapped loader zipped with the (shorter
        # or equal) index list is never asked for its end, so the bar stopped at n-1 of n
        pbar = tqdm(total=len(subset), desc="export pseudo labels", dynamic_ncols=True)
    entries = []
    with _model_settings(model), torch.no_grad(), (pbar if pbar is not None else contextlib.nullcontext()):
        for index, record, batch in zip(indices, subset, loader):
            inp = batch[0]
            out = model([inp])[0]
            height = int(record.get("height", inp["height"]))
            width = int(record.get("width", inp["width"]))
            instances = out["instances"].to("cpu")
            anns = instances_to_annotations(
                instances,
                cat_ids=cat_ids,
                image_label=_image_label_of(record) if keep_image_label_classes else None,
                score_threshold=score_threshold,
                min_area=min_area,
                image_size=(height, width),
                stats=stats,
            )
            file_name = os.path.relpath(os.path.abspath(record["file_name"]), image_root) if image_root else record["file_name"]
            entries.append(
                {
                    "index": int(index),
                    "image": {"id": record["image_id"], "file_name": file_name, "height": height, "width": width},
                    "annotations": anns,
                }
            )
            if pbar is not None:
                pbar.update(1)
    return entries


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
    num_workers: int = 0,
) -> Optional[dict]:
    """Predict on the registered data set ``dataset_name`` and write a COCO instances json.

    Args:
        model: a detectron2-style model whose eval-mode output has ``instances`` with
            ``pred_masks`` (N,H,W) at the original size, ``pred_classes``, ``scores``.
        dataset_name: a registered (training) split.
        output_json: where to write; written atomically by the main process.
        mapper: record -> model input; default :class:`ImageLabelTestMapper` (RGB uint8).
        score_threshold: drop instances with ``score < score_threshold``.
        keep_image_label_classes: keep only the classes of each image's ``image_label`` (and ask
            the model to clean its semantic map with them, if it supports that).
        min_area: drop instances with fewer pixels (empty masks are always dropped).
        flip_tta: force the model's flip TTA (``test_flip``) on/off; None = the model's setting.
        num_workers: data-loading workers per process.

    Under ``launch`` (world size > 1) every rank must call this; each handles
    ``records[rank::world]`` and writes a shard next to ``output_json``; rank 0 merges.

    Returns:
        the summary dict on the main process (images, instances, per-class counts, images
        without instances, dropped counts), None on other ranks.
    """
    if flip_tta and not hasattr(_unwrap(model), "test_flip"):
        raise ValueError(f"flip TTA requested, but {type(_unwrap(model)).__name__} has no 'test_flip' switch")
    records = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    thing_classes = meta.get("thing_classes", None)
    if thing_classes is None:
        raise KeyError(f"data set '{dataset_name}' has no thing_classes metadata")
    cat_ids = contiguous_to_dataset_id(meta, len(thing_classes))
    categories = [{"id": cat_ids[c], "name": n, "supercategory": ""} for c, n in enumerate(thing_classes)]
    categories.sort(key=lambda c: c["id"])
    image_root = source_image_root(dataset_name, records)
    if mapper is None:
        mapper = ImageLabelTestMapper(len(thing_classes))

    rank, world = comm.get_rank(), comm.get_world_size()
    indices = list(range(len(records)))[rank::world]
    stats = Counter()
    inner = _unwrap(model)
    with _model_settings(inner, test_flip=flip_tta, test_use_image_labels=True if keep_image_label_classes else None):
        entries = predict_entries(
            inner,
            records,
            indices,
            mapper=mapper,
            cat_ids=cat_ids,
            image_root=image_root,
            score_threshold=score_threshold,
            keep_image_label_classes=keep_image_label_classes,
            min_area=min_area,
            num_workers=num_workers,
            progress=comm.is_main_process(),
            stats=stats,
        )
    info = {
        "description": f"bestie_d2 pseudo labels of {dataset_name}",
        "source_dataset": dataset_name,
        "image_root": image_root,
        "score_threshold": float(score_threshold),
        "keep_image_label_classes": bool(keep_image_label_classes),
        "min_area": int(min_area),
        "flip_tta": flip_tta,
    }

    if world > 1:
        shard = f"{output_json}.shard{rank}of{world}.json"
        write_json_atomic({"entries": entries, "stats": dict(stats)}, shard)
        comm.synchronize()
        summary = None
        if comm.is_main_process():
            all_entries, all_stats = [], Counter()
            shards = [f"{output_json}.shard{r}of{world}.json" for r in range(world)]
            for path in shards:
                with open(path) as f:
                    data = json.load(f)
                all_entries.extend(data["entries"])
                all_stats.update(data["stats"])
            coco = merge_entries(all_entries, categories, info)
            write_json_atomic(coco, output_json)
            for path in shards:
                os.remove(path)
            summary = summarize(coco, dataset_name, all_stats)
            _log_summary(summary, output_json)
        comm.synchronize()
        return summary

    coco = merge_entries(entries, categories, info)
    write_json_atomic(coco, output_json)
    summary = summarize(coco, dataset_name, stats)
    _log_summary(summary, output_json)
    return summary


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def build_argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export a trained model's predictions on a training split as COCO pseudo labels.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--dataset", default="", help="registered split to predict on (default: first of DATASETS.TRAIN)")
    p.add_argument("--output", required=True, help="output json path")
    p.add_argument("--score-threshold", type=float, default=0.0, help="drop instances scoring below this")
    p.add_argument("--no-label-filter", action="store_true", help="keep classes outside the image labels")
    p.add_argument("--min-area", type=int, default=0, help="drop instances with fewer pixels")
    p.add_argument("--flip", action="store_true", help="flip TTA (default: the config's MODEL.BESTIE.TEST.FLIP)")
    p.add_argument("--num-workers", type=int, default=2, help="data-loading workers per process")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (CPU processes without CUDA)")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS x.pth")
    return p


def setup(args):
    """Config (file + opts, CPU fallback), loggers. Unlike training, nothing is written to OUTPUT_DIR."""
    from detectron2.utils.logger import setup_logger

    from ..config import load_config

    cfg = load_config(args.config_file, args.opts)
    rank = comm.get_rank()
    setup_logger(distributed_rank=rank, name="detectron2")
    setup_logger(distributed_rank=rank, name="bestie_d2", abbrev_name="bestie")
    return cfg


def build_test_mapper(cfg):
    """The model's own test-time mapper (BESTIE, PAM) or detectron2's DatasetMapper."""
    from detectron2.data import DatasetMapper

    from ..engine.trainer import Trainer

    mapper = Trainer._mapper(cfg, is_train=False)
    return mapper if mapper is not None else DatasetMapper(cfg, is_train=False)


def main(args) -> Optional[dict]:
    from detectron2.modeling import build_model

    from ..data.pseudo_coco import register_pseudo_coco_from_config
    from ..engine.checkpoint import SafeCheckpointer

    cfg = setup(args)
    register_pseudo_coco_from_config(cfg)
    dataset = args.dataset or (cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else "")
    if not dataset:
        raise ValueError("no --dataset given and DATASETS.TRAIN is empty")
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting the predictions of a randomly initialised model")
    return export_pseudo_coco(
        model,
        dataset,
        args.output,
        mapper=build_test_mapper(cfg),
        score_threshold=args.score_threshold,
        keep_image_label_classes=not args.no_label_filter,
        min_area=args.min_area,
        flip_tta=True if args.flip else None,
        num_workers=args.num_workers,
    )


def invoke_main(argv=None):
    from ..engine.launch import launch

    args = build_argument_parser().parse_args(argv)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def cli(argv=None) -> int:
    """Console script ``bestie-export-pseudo-coco``: parse ``argv`` (default ``sys.argv[1:]``), run, exit 0."""
    invoke_main(argv)
    return 0


if __name__ == "__main__":
    invoke_main(sys.argv[1:])  # pragma: no cover

"""Register pseudo-label COCO jsons for the Mask R-CNN refinement stage (docs/method.md §9).

:mod:`bestie_d2.maskrcnn_refinement.pseudo_labels` writes the predictions of a trained BESTIE model on a
training split as a COCO instances json (compressed RLE masks, ``score`` per annotation). This
module turns such a json back into a detectron2 data set:

* :func:`register_pseudo_coco` — DatasetCatalog + MetadataCatalog entries (``thing_classes``,
  ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``, ``evaluator_type``), set at
  registration time so that models reading class metadata in ``__init__`` see them;
* :func:`register_pseudo_coco_from_config` — the same from ``cfg.BESTIE.PSEUDO_COCO`` (called by
  ``train_net.setup``).

Image paths: the json stores ``file_name`` relative to the source data set's image folder
(:func:`source_image_root`), which is also recorded as ``info.image_root`` in the json. The
image root used at load time is, in order: the explicit ``image_root``, the source data set's image
folder (``source_dataset``), the json's ``info.image_root``.

A json without a single instance is an ``EmptyPseudoLabelsError`` naming it, its counts and what
to do (instead of detectron2's "No valid data found" assertion when training starts).

Category ids: the json's ``category_id`` are the source data set's ids
(``thing_dataset_id_to_contiguous_id`` inverse, or contiguous + 1). The loader maps them to
contiguous ids with the registered mapping and fails loudly on an unknown id.
"""
import json
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from ..data.errors import EmptyPseudoLabelsError

__all__ = [
    "register_pseudo_coco",
    "register_pseudo_coco_from_config",
    "unregister_pseudo_coco",
    "source_image_root",
    "common_image_root",
    "contiguous_to_dataset_id",
    "read_pseudo_coco_header",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Helpers shared with the exporter
# ------------------------------------------------------------------------------------------------
def common_image_root(file_names: Iterable[str]) -> str:
    """The deepest folder containing every file of ``file_names`` (absolute path; "" if empty)."""
    dirs = sorted({os.path.dirname(os.path.abspath(f)) for f in file_names})
    if not dirs:
        return ""
    return os.path.commonpath(dirs)


def source_image_root(dataset_name: str, records: Optional[Sequence[dict]] = None) -> str:
    """Image folder of a registered data set: metadata ``image_root`` when set, otherwise the
    common folder of its records' ``file_name`` (``records`` avoids loading them again)."""
    meta = MetadataCatalog.get(dataset_name)
    root = meta.get("image_root", None)
    if root:
        return root
    if records is None:
        records = DatasetCatalog.get(dataset_name)
    return common_image_root(r["file_name"] for r in records)


def contiguous_to_dataset_id(meta, num_classes: int) -> Dict[int, int]:
    """Contiguous class id ``0..C-1`` -> json category id: the inverse of the metadata's
    ``thing_dataset_id_to_contiguous_id`` when present, else ``c + 1``."""
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None)
    if not mapping:
        return {c: c + 1 for c in range(num_classes)}
    inverse = {int(v): int(k) for k, v in mapping.items()}
    if sorted(inverse) != list(range(num_classes)) or len(inverse) != len(mapping):
        raise ValueError(
            f"thing_dataset_id_to_contiguous_id of '{meta.name}' must map onto 0..{num_classes - 1} "
            f"one to one, got {dict(mapping)}"
        )
    return inverse


def read_pseudo_coco_header(json_file: str) -> dict:
    """``{"categories": [...], "info": {...}}`` of a pseudo-label json (reads the whole file)."""
    with open(json_file) as f:
        data = json.load(f)
    return {"categories": data.get("categories", []), "info": data.get("info", {}) or {}}


# ------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------
def _load_pseudo_coco(name, json_file, image_root, source_dataset, keep_scores) -> List[dict]:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"pseudo-label json of data set '{name}' does not exist: {json_file} (write it with "
            "python -m bestie_d2.tools.export_pseudo_coco, see configs/*/mask_rcnn_*refine.yaml)"
        )
    root = image_root
    if not root and source_dataset:
        root = source_image_root(source_dataset)
    if not root:
        root = read_pseudo_coco_header(json_file)["info"].get("image_root", "")
    if not root:
        raise ValueError(
            f"pseudo-label data set '{name}': no image root (pass image_root or source_dataset, or "
            f"write the json with bestie_d2.tools.export_pseudo_coco, which records info.image_root)"
        )
    meta = MetadataCatalog.get(name)
    if not meta.get("image_root", None):
        meta.set(image_root=root)
    id_map = meta.thing_dataset_id_to_contiguous_id
    # dataset_name=None: load_coco_json leaves the metadata alone and the raw ids in place; the
    # registered mapping (from the source data set) is applied here.
    records = load_coco_json(json_file, root, dataset_name=None, extra_annotation_keys=["score"] if keep_scores else None)
    if not any(r.get("annotations") for r in records):
        raise EmptyPseudoLabelsError(
            f"pseudo-label data set '{name}' has 0 instances in {len(records)} images: nothing for Mask R-CNN "
            "to train on. Export again with a lower --score-threshold / --min-area (the export's summary "
            "counts what each filter dropped), or train BESTIE longer (its predictions on the training "
            "images are empty)", path=json_file,
        )
    for r in records:
        for a in r["annotations"]:
            cid = a["category_id"]
            if cid not in id_map:
                raise KeyError(
                    f"{json_file}: annotation of image {r['image_id']!r} has category_id={cid}, not one "
                    f"of the registered ids {sorted(id_map)} of '{name}' (was the json exported from "
                    "another data set?)"
                )
            a["category_id"] = id_map[cid]
    return records


def _dataset_id_map(num_classes: int, mapping: Optional[Dict[int, int]], source_dataset: Optional[str]):
    """json category id -> contiguous id: ``mapping``, else the source data set's, else ``c+1 -> c``."""
    if mapping is None:
        if source_dataset:
            inverse = contiguous_to_dataset_id(MetadataCatalog.get(source_dataset), num_classes)
            mapping = {d: c for c, d in inverse.items()}
        else:
            mapping = {c + 1: c for c in range(num_classes)}
    id_map = {int(k): int(v) for k, v in mapping.items()}
    if sorted(id_map.values()) != list(range(num_classes)):
        raise ValueError(f"thing_dataset_id_to_contiguous_id must map onto 0..{num_classes - 1}, got {id_map}")
    return id_map


def register_pseudo_coco(
    name: str,
    json_file: str,
    image_root: Optional[str],
    thing_classes: Sequence[str],
    evaluator_type: str = "coco",
    *,
    thing_dataset_id_to_contiguous_id: Optional[Dict[int, int]] = None,
    source_dataset: Optional[str] = None,
    keep_scores: bool = True,
) -> None:
    """Register a pseudo-label COCO json as the detectron2 data set ``name``.

    Args:
        name: data set name (must not clash with a different registration).
        json_file: the exported json.
        image_root: folder the json's ``file_name`` are relative to; ``None``/"" = resolved when the
            data set is loaded (``source_dataset``'s image folder, else the json's ``info.image_root``).
        thing_classes: class names in contiguous order.
        evaluator_type: metadata ``evaluator_type`` (the Trainer picks the evaluator from it).
        thing_dataset_id_to_contiguous_id: json category id -> contiguous id; default ``c+1 -> c``,
            or the source data set's mapping when ``source_dataset`` has one.
        source_dataset: the data set the pseudo labels were predicted on (recorded in the metadata).
        keep_scores: keep each annotation's ``score`` in the records.

    Registering the same name again with the same json is a no-op; with another json it raises.
    """
    thing_classes = list(thing_classes)
    id_map = _dataset_id_map(len(thing_classes), thing_dataset_id_to_contiguous_id, source_dataset)
    json_file = os.fspath(json_file)
    if name in DatasetCatalog.list():
        old = MetadataCatalog.get(name).get("json_file", None)
        if old is not None and os.path.abspath(old) == os.path.abspath(json_file):
            logger.debug(f"pseudo-label data set '{name}' is already registered")
            return
        raise ValueError(
            f"data set '{name}' is already registered (json_file={old!r}); cannot register it again "
            f"with {json_file!r}. Pick another name or call unregister_pseudo_coco('{name}') first."
        )
    image_root = os.fspath(image_root) if image_root else ""
    DatasetCatalog.register(
        name, lambda: _load_pseudo_coco(name, json_file, image_root, source_dataset, keep_scores)
    )
    meta = {
        "thing_classes": thing_classes,
        "thing_dataset_id_to_contiguous_id": id_map,
        "json_file": json_file,
        "evaluator_type": evaluator_type,
    }
    if image_root:
        meta["image_root"] = image_root
    if source_dataset:
        meta["source_dataset"] = source_dataset
    MetadataCatalog.get(name).set(**meta)
    logger.info(f"Registered pseudo-label data set '{name}' from {json_file}")


def unregister_pseudo_coco(name: str) -> None:
    """Remove ``name`` from DatasetCatalog and MetadataCatalog (no error when absent)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


def register_pseudo_coco_from_config(cfg) -> Optional[str]:
    """Register ``cfg.BESTIE.PSEUDO_COCO.NAME`` (if set) from ``JSON``; returns the name or None.

    Classes and ids come from ``SOURCE_DATASET``'s metadata when it is set (its data set is loaded
    once if ``thing_classes`` is only filled by its loader), otherwise from the json's categories.
    """
    node = getattr(getattr(cfg, "BESTIE", None), "PSEUDO_COCO", None)
    if node is None or not node.NAME:
        return None
    name, json_file, source = node.NAME, node.JSON, node.SOURCE_DATASET
    if not json_file:
        raise ValueError(f"BESTIE.PSEUDO_COCO.NAME={name!r} needs BESTIE.PSEUDO_COCO.JSON (the exported json)")
    if source:
        meta = MetadataCatalog.get(source)
        if meta.get("thing_classes", None) is None:
            if source not in DatasetCatalog.list():
                raise KeyError(f"BESTIE.PSEUDO_COCO.SOURCE_DATASET={source!r} is not a registered data set")
            DatasetCatalog.get(source)  # some loaders only fill the metadata when they run
        thing_classes = list(meta.thing_classes)
        register_pseudo_coco(
            name, json_file, node.IMAGE_ROOT or None, thing_classes, source_dataset=source
        )
        return name
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"BESTIE.PSEUDO_COCO.JSON={json_file!r} does not exist (export it first with "
            "python -m bestie_d2.tools.export_pseudo_coco), and without SOURCE_DATASET its classes are read from it"
        )
    header = read_pseudo_coco_header(json_file)
    cats = sorted(header["categories"], key=lambda c: c["id"])
    register_pseudo_coco(
        name,
        json_file,
        node.IMAGE_ROOT or header["info"].get("image_root") or None,
        [c["name"] for c in cats],
        thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(cats)},
    )
    return name

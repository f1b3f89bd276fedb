"""COCO 2017 instances with BESTIE's extra record fields (image labels, cue / WSSS paths)."""
import json
import os
from typing import List, Optional, Sequence

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from ..errors import AnnotationError, MissingDataError
from .catalog import register_dataset

__all__ = ["COCO_CLASSES", "coco_instances_metadata", "load_bestie_coco", "register_bestie_coco"]

_THING = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
#: The 80 COCO thing classes, in category-id order (names exactly as in the official json).
COCO_CLASSES = tuple(c["name"] for c in _THING)


def coco_instances_metadata() -> dict:
    """``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``thing_colors`` of COCO's 80 classes."""
    return {
        "thing_classes": list(COCO_CLASSES),
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(_THING)},
        "thing_colors": [c["color"] for c in _THING],
    }


def _category_mismatch(json_file: str, dataset_name: str) -> Optional[str]:
    """How the json's categories differ from ``dataset_name``'s registered ``thing_classes`` /
    ``thing_dataset_id_to_contiguous_id`` (None if they agree or cannot be read). Only called once
    detectron2's loader has refused the json, so the json is read a second time on errors only."""
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    try:
        with open(json_file) as f:
            cats = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
        ids, names = [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]
    except Exception:
        return None
    registered = meta.get("thing_classes", None)
    if registered is not None and list(registered) != names:
        registered = list(registered)
        diffs = [f"category id {i} is {a!r} in the json but class {k} is registered as {b!r}"
                 for k, (i, a, b) in enumerate(zip(ids, names, registered)) if a != b]
        if len(names) != len(registered):
            diffs.append(f"the json has {len(names)} categories, the registration {len(registered)} classes")
        only_json = [n for n in names if n not in registered]
        only_reg = [n for n in registered if n not in names]
        if only_json:
            diffs.append(f"only in the json: {only_json[:5]}" + (" ..." if len(only_json) > 5 else ""))
        if only_reg:
            diffs.append(f"only registered: {only_reg[:5]}" + (" ..." if len(only_reg) > 5 else ""))
        return "; ".join(diffs[:3] + diffs[-3:] if len(diffs) > 6 else diffs)
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
    expected = {v: k for k, v in enumerate(ids)}
    if id_map is not None and {int(k): int(v) for k, v in id_map.items()} != expected:
        return (f"the json's category ids {ids[:10]}{' ...' if len(ids) > 10 else ''} map to classes "
                f"0..{len(ids) - 1} in id order, but the registration maps ids {dict(list(id_map.items())[:10])}")
    return None


def load_bestie_coco(json_file, image_root, dataset_name: Optional[str], cue_root) -> List[dict]:
    """Detectron2's ``load_coco_json`` plus ``image_label`` and the cue / WSSS paths.

    ``image_label`` = sorted unique contiguous category ids of the image's annotations (crowd
    included). Cue paths: ``<cue_root>/Peak_points/<stem>.txt``, ``<cue_root>/Center_points/<stem>.txt``,
    ``<cue_root>/WSSS_maps/<stem>.png`` where ``<stem>`` is the image file name without extension.
    ``image_id`` is the json's image id (an int for COCO: COCOEvaluator needs it), and
    ``segmentation`` stays as in the json (polygons, or RLE for crowd regions) as in detectron2.
    Pass ``dataset_name`` so category ids become contiguous (and are checked against the
    registered ``thing_classes``).
    """
    from detectron2.data.datasets import load_coco_json

    json_file, image_root, cue_root = (os.fspath(p) for p in (json_file, image_root, cue_root))
    if not os.path.isfile(json_file):
        raise MissingDataError("COCO annotation json does not exist (see datasets/README.md)", path=json_file)
    if not os.path.isdir(image_root):
        raise MissingDataError("COCO image folder does not exist (see datasets/README.md)", path=image_root)
    try:
        records = load_coco_json(json_file, image_root, dataset_name)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"not a valid json file ({e})", path=json_file) from None
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"not a valid COCO instances json ({type(e).__name__}: {e})", path=json_file) from None
    except AssertionError as e:
        detail = _category_mismatch(json_file, dataset_name) if dataset_name else None
        if detail:
            raise AnnotationError(
                f"the json's categories differ from the classes registered for data set "
                f"{dataset_name!r}: {detail}. Register it with the json's class names (thing_classes, "
                "in category-id order) or fix the json's 'categories'",
                path=json_file,
            ) from None
        raise AnnotationError(
            f"inconsistent with the data set {dataset_name!r} (a malformed annotation?): {e}",
            path=json_file,
        ) from None
    if not records:
        raise AnnotationError("the json lists no images", path=json_file)
    pk, ct, ws = (os.path.join(cue_root, d) for d in ("Peak_points", "Center_points", "WSSS_maps"))
    for r in records:
        stem = os.path.splitext(os.path.basename(r["file_name"]))[0]
        r["image_label"] = sorted({int(a["category_id"]) for a in r.get("annotations", [])})
        r["peak_points_file"] = os.path.join(pk, stem + ".txt")
        r["center_points_file"] = os.path.join(ct, stem + ".txt")
        r["wsss_file"] = os.path.join(ws, stem + ".png")
    return records


def register_bestie_coco(
    name: str,
    json_file,
    image_root,
    cue_root,
    thing_classes: Sequence[str] = COCO_CLASSES,
    dataset_id_to_contiguous_id: Optional[dict] = None,
    *,
    dataset_root=None,
    overwrite: bool = False,
) -> bool:
    """Register a COCO-format instances json with BESTIE's record fields (lazy: nothing is read now).

    Metadata: ``thing_classes`` (set here; the json's categories must match), ``json_file``,
    ``image_root``, ``evaluator_type="coco"``, ``dataset_root``, ``thing_dataset_id_to_contiguous_id``
    (default: COCO's ids for the 80 classes, else 1..C).
    """
    json_file, image_root, cue_root = (os.path.abspath(os.fspath(p)) for p in (json_file, image_root, cue_root))
    thing_classes = list(thing_classes)
    if dataset_id_to_contiguous_id is None:
        if thing_classes == list(COCO_CLASSES):
            dataset_id_to_contiguous_id = coco_instances_metadata()["thing_dataset_id_to_contiguous_id"]
        else:
            dataset_id_to_contiguous_id = {i + 1: i for i in range(len(thing_classes))}
    meta = {
        "thing_classes": thing_classes,
        "thing_dataset_id_to_contiguous_id": dict(dataset_id_to_contiguous_id),
        "json_file": json_file,
        "image_root": image_root,
        "evaluator_type": "coco",
        "dataset_root": os.path.abspath(os.fspath(dataset_root)) if dataset_root else cue_root,
        "cue_root": cue_root,
    }
    if thing_classes == list(COCO_CLASSES):
        meta["thing_colors"] = coco_instances_metadata()["thing_colors"]
    key = repr(("coco", json_file, image_root, cue_root, tuple(thing_classes)))
    return register_dataset(
        name, lambda: load_bestie_coco(json_file, image_root, name, cue_root), meta, key, overwrite=overwrite
    )

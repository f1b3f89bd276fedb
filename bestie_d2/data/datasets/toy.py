"""Registration of the generated toy data set (generated on first load)."""
import os

from ..toy import TOY_CLASSES, generate_toy_dataset
from .catalog import register_dataset
from .voc import load_voc_instances

__all__ = ["register_toy_dataset", "load_toy_split"]


def load_toy_split(root, split: str, **gen_kwargs):
    """Generate the toy set under ``root`` if needed (``gen_kwargs``: seed, num_train, num_val),
    then load ``split`` ("train" or "val") with :func:`load_voc_instances` (GT required)."""
    generate_toy_dataset(root, **gen_kwargs)
    return load_voc_instances(
        root,
        f"ImageSets/Segmentation/{split}.txt",
        f"cls_labels/{split}_cls.txt",
        TOY_CLASSES,
        with_gt=True,
        require_gt=True,
    )


def register_toy_dataset(name_prefix: str, root, *, overwrite: bool = False, **gen_kwargs):
    """Register ``<name_prefix>_train`` and ``<name_prefix>_val`` for the toy set under ``root``.

    The set is generated (by :func:`bestie_d2.data.toy.generate_toy_dataset` with ``gen_kwargs``)
    on the first ``DatasetCatalog.get``. Metadata: ``thing_classes`` = TOY_CLASSES,
    ``evaluator_type="voc_instance"``, ``json_file`` = the split's COCO json (so COCOEvaluator
    works too; its image ids are the string ids), ``dataset_root``,
    ``thing_dataset_id_to_contiguous_id`` = ``{c+1: c}``. Returns the two names.
    """
    root = os.path.abspath(os.fspath(root))
    names = []
    for split in ("train", "val"):
        name = f"{name_prefix}_{split}"
        meta = {
            "thing_classes": list(TOY_CLASSES),
            "evaluator_type": "voc_instance",
            "dataset_root": root,
            "json_file": os.path.join(root, "annotations", f"instances_{split}.json"),
            "thing_dataset_id_to_contiguous_id": {c + 1: c for c in range(len(TOY_CLASSES))},
            "split": split,
            "toy_generator_kwargs": dict(gen_kwargs),
        }
        key = repr(("toy", root, split, sorted(gen_kwargs.items())))
        register_dataset(
            name, (lambda s=split: load_toy_split(root, s, **gen_kwargs)), meta, key, overwrite=overwrite
        )
        names.append(name)
    return tuple(names)

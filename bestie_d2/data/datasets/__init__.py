"""Data-set loaders and registrations (DatasetCatalog / MetadataCatalog).

Importing this package registers the built-in names (``voc_2012_train_aug``, ``voc_2012_val``,
``bestie_coco_2017_{train,val}``, ``bestie_toy_{train,val}``); nothing is read until a data set
is loaded. Record and metadata contract: ``docs/DEVELOPING.md``; on-disk layouts:
``datasets/README.md``.
"""
from .builtin import register_all_builtin
from .catalog import check_dataset, get_datasets_root, register_dataset
from .coco import COCO_CLASSES, coco_instances_metadata, load_bestie_coco, register_bestie_coco
from .label_maps import read_label_map, write_label_map
from .toy import load_toy_split, register_toy_dataset
from .record_inputs import RecordInputs, points_file_for, validate_record_inputs
# the one WSSS reader lives in bestie_d2.data.wsss (re-exported here)
from ..wsss import read_wsss_map
from .voc import (
    VOC_CLASSES,
    image_size,
    load_voc_instances,
    read_id_list,
    read_image_labels,
    register_voc_layout,
)
from .voc_instances import voc_instances_from_maps

__all__ = [
    "COCO_CLASSES",
    "RecordInputs",
    "VOC_CLASSES",
    "check_dataset",
    "coco_instances_metadata",
    "get_datasets_root",
    "image_size",
    "load_bestie_coco",
    "load_toy_split",
    "load_voc_instances",
    "points_file_for",
    "read_id_list",
    "read_image_labels",
    "read_label_map",
    "read_wsss_map",
    "register_all_builtin",
    "register_bestie_coco",
    "register_dataset",
    "register_toy_dataset",
    "register_voc_layout",
    "validate_record_inputs",
    "voc_instances_from_maps",
    "write_label_map",
]

register_all_builtin()

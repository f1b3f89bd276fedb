"""PointRend refinement configs (configs/*/pointrend_*refine.yaml): each is its folder's Mask R-CNN
refiner with PointRend's mask head and nothing else changed, merges into bestie_d2's ``get_cfg``
and into detectron2's own ``get_cfg()`` + ``add_bestie_config``, and builds detectron2's PointRend
heads. (Training and evaluation through the pipeline: tests/test_pipeline.py.)"""
import os

import pytest

import bestie_d2  # noqa: F401
from bestie_d2 import add_bestie_config
from bestie_d2.config import load_config

from repo_paths import CONFIG_DIR

PAIRS = {  # PointRend config -> the Mask R-CNN config it extends
    "VOC/pointrend_R50_FPN_refine.yaml": "VOC/mask_rcnn_R50_FPN_refine.yaml",
    "COCO/pointrend_R50_FPN_refine.yaml": "COCO/mask_rcnn_R50_FPN_refine.yaml",
    "toy/pointrend_refine.yaml": "toy/mask_rcnn_refine.yaml",
}
#: what may differ between a PointRend config and its Mask R-CNN config
MASK_HEAD_KEYS = ("MODEL.ROI_HEADS.NAME", "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", "MODEL.ROI_MASK_HEAD.",
                  "MODEL.POINT_HEAD.", "OUTPUT_DIR")


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("rel", sorted(PAIRS))
def test_pointrend_config_is_the_mask_rcnn_refiner_with_pointrends_mask_head(rel):
    pr = _flat(load_config(os.path.join(CONFIG_DIR, rel), freeze=False))
    mr = _flat(load_config(os.path.join(CONFIG_DIR, PAIRS[rel]), freeze=False))
    assert pr.keys() == mr.keys()
    differing = sorted(k for k in pr if pr[k] != mr[k])
    assert differing and all(k.startswith(MASK_HEAD_KEYS) for k in differing), differing
    assert pr["MODEL.ROI_HEADS.NAME"] == "PointRendROIHeads" and pr["MODEL.ROI_MASK_HEAD.NAME"] == "PointRendMaskHead"
    assert pr["MODEL.ROI_MASK_HEAD.POINT_HEAD_ON"] and pr["MODEL.ROI_MASK_HEAD.POOLER_TYPE"] == ""
    assert pr["MODEL.POINT_HEAD.NUM_CLASSES"] == pr["MODEL.ROI_HEADS.NUM_CLASSES"] == pr["BESTIE.NUM_CLASSES"]
    assert pr["INPUT.MASK_FORMAT"] == "bitmask"  # PointRend samples its point labels from bitmasks


@pytest.mark.parametrize("rel", sorted(PAIRS))
def test_pointrend_config_merges_into_detectron2s_own_get_cfg(rel):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_bestie_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIG_DIR, rel))
    assert cfg.MODEL.ROI_MASK_HEAD.NAME == "PointRendMaskHead"
    ours = _flat(load_config(os.path.join(CONFIG_DIR, rel), freeze=False))
    theirs = _flat(cfg)
    for flat in (ours, theirs):
        flat.pop("MODEL.DEVICE")  # load_config falls back to the CPU without CUDA
    assert theirs == ours


def test_toy_pointrend_builds_detectron2s_heads():
    from detectron2.modeling import build_model
    from detectron2.projects.point_rend import PointRendMaskHead

    cfg = load_config(os.path.join(CONFIG_DIR, "toy", "pointrend_refine.yaml"))
    model = build_model(cfg)
    assert type(model.roi_heads).__name__ == "PointRendROIHeads"
    assert isinstance(model.roi_heads.mask_head, PointRendMaskHead)
    assert model.roi_heads.mask_head.point_head.predictor.out_channels == 5
    assert model.roi_heads.train_on_pred_boxes

"""bestie_d2.config: the model-zoo ``_BASE_`` of the Mask R-CNN configs, get_cfg / load_config."""
import os
import shutil

import pytest

import bestie_d2  # noqa: F401
from bestie_d2.config import MODEL_ZOO_PREFIX, BestieCfgNode, get_cfg, load_config, resolve_model_zoo_path
from detectron2 import model_zoo

from repo_paths import REPO
BEFORE = os.path.join(REPO, "tests", "data", "Base-MaskRCNN-FPN.before.yaml")
MASK_RCNN = ["Base-MaskRCNN-FPN.yaml", "VOC/mask_rcnn_R50_FPN_refine.yaml",
             "COCO/mask_rcnn_R50_FPN_refine.yaml", "toy/mask_rcnn_refine.yaml"]


def _with_old_base(tmp_path, rel):
    """``rel`` copied into a configs tree whose Base-MaskRCNN-FPN.yaml is the old hand-made one."""
    root = tmp_path / "configs"
    (root / os.path.dirname(rel)).mkdir(parents=True, exist_ok=True)
    shutil.copy(BEFORE, root / "Base-MaskRCNN-FPN.yaml")
    if rel != "Base-MaskRCNN-FPN.yaml":
        shutil.copy(os.path.join(REPO, "configs", rel), root / rel)
    return str(root / rel)


@pytest.mark.parametrize("rel", MASK_RCNN)
def test_mask_rcnn_effective_config_unchanged_by_zoo_base(tmp_path, rel):
    new = load_config(os.path.join(REPO, "configs", rel), freeze=False)
    old = load_config(_with_old_base(tmp_path, rel), freeze=False)
    assert new.dump() == old.dump()


def test_mask_rcnn_base_is_the_zoo_file_not_a_copy():
    with open(os.path.join(REPO, "configs", "Base-MaskRCNN-FPN.yaml")) as f:
        base = [ln.split(":", 1)[1].strip().strip('"') for ln in f if ln.startswith("_BASE_:")]
    assert base == [MODEL_ZOO_PREFIX + "Base-RCNN-FPN.yaml"]
    zoo = model_zoo.get_config_file("Base-RCNN-FPN.yaml")
    # fvcore joins the relative _BASE_ to the config's folder before loading it
    assert resolve_model_zoo_path(os.path.join(REPO, "configs", base[0])) == zoo
    assert os.path.isfile(zoo)
    assert resolve_model_zoo_path("configs/Base-BESTIE.yaml") == "configs/Base-BESTIE.yaml"
    # what the zoo sets reaches the effective config (e.g. its anchors and RPN inputs)
    cfg = load_config(os.path.join(REPO, "configs", "Base-MaskRCNN-FPN.yaml"))
    assert cfg.MODEL.RPN.IN_FEATURES == ["p2", "p3", "p4", "p5", "p6"]
    assert cfg.DATASETS.TRAIN == () and cfg.SOLVER.OPTIMIZER == "SGD"


def test_get_cfg_nodes_are_all_bestie_nodes_and_fresh():
    cfg = get_cfg()
    nodes = [cfg, cfg.MODEL, cfg.MODEL.BESTIE, cfg.MODEL.BESTIE.TEST, cfg.BESTIE.DATA, cfg.PAM_CUES.GRABCUT]
    assert all(type(n) is BestieCfgNode for n in nodes)  # yacs merges only into nodes of one class
    cfg.BESTIE.NUM_CLASSES = 3
    assert get_cfg().BESTIE.NUM_CLASSES == 20


def test_load_config_missing_file_and_overrides(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    cfg = load_config(os.path.join(REPO, "configs", "toy", "bestie_image_label.yaml"),
                      ["MODEL.BESTIE.TEST.NMS_KERNEL", "7"])
    assert cfg.MODEL.BESTIE.TEST.NMS_KERNEL == 7 and cfg.is_frozen()

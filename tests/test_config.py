"""bestie_d2.config: the model-zoo ``_BASE_`` of the Mask R-CNN configs, get_cfg / load_config, every
config through detectron2's own ``get_cfg`` + ``add_bestie_config``, unknown keys (issue 21)."""
import glob
import os
import shutil

import pytest

import bestie_d2  # noqa: F401
from bestie_d2.config import (
    MODEL_ZOO_PREFIX,
    BestieCfgNode,
    ConfigKeyError,
    get_cfg,
    load_config,
    resolve_model_zoo_path,
)
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


# ------------------------------------------------------------------------------------------------
# Issue 21, item 10: every config merges into detectron2's own get_cfg() + add_bestie_config
# ------------------------------------------------------------------------------------------------
ALL_CONFIGS = sorted(os.path.relpath(p, os.path.join(REPO, "configs"))
                     for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


def test_all_configs_are_listed():
    assert len(ALL_CONFIGS) >= 19 and "Base-MaskRCNN-FPN.yaml" in ALL_CONFIGS


@pytest.mark.parametrize("rel", ALL_CONFIGS)
def test_config_merges_into_detectron2_get_cfg_and_ours_alike(rel):
    """The Detectron2 project pattern (``detectron2.config.get_cfg(); add_bestie_config(cfg);
    cfg.merge_from_file(f)``, from a relative path as a user types it) gives the same config as
    the tools' ``bestie_d2.config.get_cfg``."""
    from bestie_d2 import add_bestie_config
    from detectron2.config import get_cfg as d2_get_cfg

    d2 = d2_get_cfg()
    add_bestie_config(d2)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        d2.merge_from_file(os.path.join("configs", rel))
    finally:
        os.chdir(cwd)
    ours = get_cfg()
    ours.merge_from_file(os.path.join(REPO, "configs", rel))
    assert d2.dump() == ours.dump()
    # the detectron2 node survives a clone (the trainer's copies) and still reads zoo bases
    d2.clone().merge_from_file(os.path.join(REPO, "configs", rel))


# ------------------------------------------------------------------------------------------------
# Issue 21, item 6: an unknown key / an option among the overrides: one line, the nearest keys
# ------------------------------------------------------------------------------------------------
TOY = os.path.join(REPO, "configs", "toy", "bestie_point_label.yaml")


def test_unknown_override_key_names_the_nearest_keys():
    with pytest.raises(ConfigKeyError) as e:
        load_config(TOY, ["BESTIE.DATA.CENTER_POINT_DIR", "/x", "MODEL.WEIGHTS", ""])
    msg = str(e.value)
    assert "\n" not in msg and "BESTIE.DATA.CENTER_POINT_DIR" in msg
    assert "nearest existing keys: BESTIE.DATA.CENTER_POINTS_DIR" in msg
    assert isinstance(e.value, KeyError)  # callers that catch KeyError still do
    # every unknown key of the run in the one line
    with pytest.raises(ConfigKeyError) as e:
        load_config(TOY, ["SOLVER.MAX_ITERS", "3", "BESTIE.DATA.WSSS_DIRS", "/x"])
    assert "SOLVER.MAX_ITER" in str(e.value) and "BESTIE.DATA.WSSS_DIR" in str(e.value)
    assert e.value.keys == ["SOLVER.MAX_ITERS", "BESTIE.DATA.WSSS_DIRS"] and "\n" not in str(e.value)


def test_option_among_the_overrides_is_named_as_an_option():
    with pytest.raises(ConfigKeyError) as e:
        load_config(TOY, ["MODEL.WEIGHTS", "", "--report", "r.txt"])
    msg = str(e.value)
    assert "option --report" in msg and "before the first KEY VALUE pair" in msg and "\n" not in msg
    with pytest.raises(ConfigKeyError, match="option --dataset"):
        load_config(TOY, ["MODEL.WEIGHTS", "", "--dataset", "a", "b"])  # odd length too


def test_unknown_key_in_a_config_file_names_the_file(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text(f'_BASE_: "{TOY}"\nBESTIE:\n  DATA:\n    CENTER_POINT_DIR: "/x"\n')
    with pytest.raises(ConfigKeyError) as e:
        load_config(str(p))
    msg = str(e.value)
    assert str(p) in msg and "BESTIE.DATA.CENTER_POINTS_DIR" in msg and "\n" not in msg

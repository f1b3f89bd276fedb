"""Mask R-CNN refinement stage: configs merge/build, a toy Mask R-CNN trains on an exported
pseudo-label json (registered from the config by ``train_net.setup``) through ``Trainer`` and is
evaluated with VOCInstanceEvaluator and the pure-Python COCOEvaluator."""
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from torch import nn

import bestie_d2  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BitMasks, Instances

from cfg_factory import new_bestie_cfg
from repo_paths import REPO
CONFIGS = {
    "voc": os.path.join(REPO, "configs", "VOC", "mask_rcnn_R50_FPN_refine.yaml"),
    "coco": os.path.join(REPO, "configs", "COCO", "mask_rcnn_R50_FPN_refine.yaml"),
    "toy": os.path.join(REPO, "configs", "toy", "mask_rcnn_refine.yaml"),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(path, opts=()):
    return new_bestie_cfg(path, opts)


@pytest.mark.parametrize("kind,classes,train,test", [
    ("voc", 20, "voc_2012_train_aug", "voc_2012_val"),
    ("coco", 80, "bestie_coco_2017_train", "bestie_coco_2017_val"),
    ("toy", 5, "bestie_toy_train", "bestie_toy_val"),
])
def test_configs(kind, classes, train, test):
    cfg = _cfg(CONFIGS[kind])
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.MODEL.MASK_ON
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    assert cfg.MODEL.ROI_HEADS.NAME == "StandardROIHeads"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == classes == cfg.BESTIE.NUM_CLASSES
    assert cfg.MODEL.WEIGHTS == ""  # left for the user; nothing is downloaded
    assert cfg.INPUT.MASK_FORMAT == "bitmask"  # RLE pseudo masks
    assert cfg.SOLVER.OPTIMIZER == "SGD"
    assert cfg.BESTIE.PSEUDO_COCO.SOURCE_DATASET == train
    assert cfg.DATASETS.TRAIN == (cfg.BESTIE.PSEUDO_COCO.NAME,)
    assert cfg.DATASETS.TEST == (test,)
    assert cfg.SOLVER.MAX_ITER > max(cfg.SOLVER.STEPS)
    # the evaluator the Trainer will pick for the test split
    assert MetadataCatalog.get(test).evaluator_type == ("coco" if kind == "coco" else "voc_instance")
    if kind == "voc":  # the R-50-FPN model builds from the config
        from detectron2.modeling import build_model

        model = build_model(_cfg(CONFIGS[kind], ["MODEL.DEVICE", "cpu"]))
        assert model.roi_heads.mask_head is not None


class _GTEcho(nn.Module):
    """Eval-only "model" returning the GT of the record as predictions (score 0.9)."""

    def __init__(self, dataset_name):
        super().__init__()
        self.records = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}

    def forward(self, batched_inputs):
        out = []
        for inp in batched_inputs:
            r = self.records[inp["image_id"]]
            rles = [a["segmentation"] for a in r["annotations"]]
            masks = torch.from_numpy(mask_util.decode(rles).transpose(2, 0, 1).astype(bool))
            inst = Instances((r["height"], r["width"]))
            inst.pred_masks = masks
            inst.pred_classes = torch.tensor([a["category_id"] for a in r["annotations"]])
            inst.scores = torch.full((len(rles),), 0.9)
            inst.pred_boxes = BitMasks(masks).get_bounding_boxes()
            out.append({"instances": inst})
        return out


def test_mask_rcnn_trains_on_pseudo_labels(toy_root, tmp_path, monkeypatch):
    from bestie_d2.engine.trainer import Trainer
    from bestie_d2.maskrcnn_refinement import export_pseudo_coco
    from bestie_d2.tools.train_net import setup
    from detectron2.engine import default_argument_parser
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset

    json_file = str(tmp_path / "pseudo.json")
    summary = export_pseudo_coco(_GTEcho("test_toy_train"), "test_toy_train", json_file)
    assert summary["instances"] == sum(len(r["annotations"]) for r in DatasetCatalog.get("test_toy_train"))

    name = f"test_toy_train_pseudo_{os.getpid()}"
    opts = [
        "BESTIE.PSEUDO_COCO.NAME", name,
        "BESTIE.PSEUDO_COCO.JSON", json_file,
        "BESTIE.PSEUDO_COCO.SOURCE_DATASET", "test_toy_train",
        "DATASETS.TRAIN", f"('{name}',)",
        "DATASETS.TEST", "('test_toy_val',)",
        "SOLVER.MAX_ITER", "3",
        "SOLVER.STEPS", "(2,)",
        "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.BASE_LR", "0.005",
        "DATALOADER.NUM_WORKERS", "0",
        "TEST.DETECTIONS_PER_IMAGE", "10",
        "OUTPUT_DIR", str(tmp_path / "out"),
    ]
    args = default_argument_parser().parse_args(["--config-file", CONFIGS["toy"], *opts])
    # default_setup's environment report asks detectron2._C for its compiler version, which the
    # compiled-ops placeholder of the Python-only install cannot answer; not what is tested here.
    import detectron2.engine.defaults as d2_defaults

    monkeypatch.setattr(d2_defaults, "collect_env_info", lambda: "(skipped in tests)")
    cfg = setup(args)  # registers BESTIE.PSEUDO_COCO
    assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get(name)
    assert list(meta.thing_classes) == list(MetadataCatalog.get("test_toy_train").thing_classes)
    recs = DatasetCatalog.get(name)
    assert all(isinstance(a["segmentation"], dict) and 0 <= a["category_id"] < 5 for r in recs for a in r["annotations"])

    torch.manual_seed(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # evaluates test_toy_val once at the end (VOCInstanceEvaluator)
    results = getattr(trainer, "_last_eval_results", None)
    assert trainer.iter >= cfg.SOLVER.MAX_ITER - 1  # v0.6 leaves it at MAX_ITER
    assert results, "the final evaluation did not run"
    flat = {k: v for task in results.values() for k, v in (task.items() if isinstance(task, dict) else [])}
    assert any("50" in k for k in flat), results
    assert all(np.isfinite(v) or np.isnan(v) for v in flat.values())

    evaluator = COCOEvaluator("test_toy_val", output_dir=str(tmp_path / "coco_eval"), use_fast_impl=False)
    res = inference_on_dataset(trainer.model, Trainer.build_test_loader(cfg, "test_toy_val"), evaluator)
    assert set(res) >= {"bbox", "segm"}
    assert "AP" in res["segm"]


def test_maskrcnn_backbone_initialised_from_bestie(tmp_path):
    """The BESTIE ResNet becomes Mask R-CNN's bottom-up network (stem channels RGB -> BGR)."""
    from bestie_d2.engine.checkpoint import SafeCheckpointer
    from bestie_d2.maskrcnn_refinement import bestie_backbone_for_maskrcnn, write_maskrcnn_init
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    bcfg = _cfg(os.path.join(REPO, "configs", "toy", "bestie_image_label.yaml"))
    bestie = build_model(bcfg)
    SafeCheckpointer(bestie, save_dir=str(tmp_path)).save("bestie")
    mcfg = _cfg(CONFIGS["toy"])
    assert (bcfg.INPUT.FORMAT, mcfg.INPUT.FORMAT) == ("RGB", "BGR")
    init = write_maskrcnn_init(str(tmp_path / "bestie.pth"), str(tmp_path / "init.pth"), "RGB", "BGR")

    maskrcnn = build_model(mcfg)
    untouched = {k: v.clone() for k, v in maskrcnn.state_dict().items() if not k.startswith("backbone.bottom_up.")}
    SafeCheckpointer(maskrcnn).load(init)
    src, dst = bestie.state_dict(), maskrcnn.state_dict()
    bottom_up = [k for k in dst if k.startswith("backbone.bottom_up.")]
    assert len(bottom_up) == len([k for k in src if k.startswith("backbone.")]) > 50
    for k in bottom_up:
        expected = src["backbone." + k[len("backbone.bottom_up."):]]
        if k.endswith("stem.conv1.weight"):
            expected = expected.flip(1)  # RGB-trained filters applied to BGR input
            assert not torch.equal(dst[k], src["backbone.stem.conv1.weight"])
        assert torch.equal(dst[k], expected), k
    for k, v in untouched.items():  # FPN, RPN and ROI heads keep their own init
        assert torch.equal(dst[k], v), k

    # same channel order: no flip; a state dict without a ResNet is refused with a clear message
    same = bestie_backbone_for_maskrcnn(src, "BGR", "BGR")
    assert torch.equal(same["backbone.bottom_up.stem.conv1.weight"], src["backbone.stem.conv1.weight"])
    with pytest.raises(ValueError, match="no ResNet backbone"):
        bestie_backbone_for_maskrcnn({"sem_seg_head.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="RGB/BGR"):
        bestie_backbone_for_maskrcnn(src, "RGB", "YUV")


def test_empty_pseudo_label_json_one_line(toy_root, tmp_path, monkeypatch, capsys, restore_loggers):
    """Issue 21, item 7: a json with 0 instances named with its counts and what to do, in one line
    from train_net (was detectron2's ``AssertionError: No valid data found in ...``)."""
    import json

    from bestie_d2.data.errors import EmptyPseudoLabelsError
    from bestie_d2.maskrcnn_refinement import register_pseudo_coco, unregister_pseudo_coco
    from bestie_d2.tools import train_net

    recs = DatasetCatalog.get("test_toy_train")
    classes = MetadataCatalog.get("test_toy_train").thing_classes
    json_file = str(tmp_path / "empty.json")
    with open(json_file, "w") as f:
        json.dump({"images": [{"id": i + 1, "file_name": os.path.basename(r["file_name"]), "height": r["height"],
                               "width": r["width"]} for i, r in enumerate(recs)],
                   "annotations": [], "categories": [{"id": c + 1, "name": n} for c, n in enumerate(classes)]}, f)
    name = f"test_empty_pseudo_{os.getpid()}"
    register_pseudo_coco(name, json_file, None, classes, source_dataset="test_toy_train")
    try:
        with pytest.raises(EmptyPseudoLabelsError) as e:
            DatasetCatalog.get(name)
        msg = str(e.value)
        assert json_file in msg and f"0 instances in {len(recs)} images" in msg and "--score-threshold" in msg
    finally:
        unregister_pseudo_coco(name)
    import detectron2.engine.defaults as d2_defaults

    monkeypatch.setattr(d2_defaults, "collect_env_info", lambda: "(skipped in tests)")
    name = f"test_empty_pseudo_cli_{os.getpid()}"
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main(["--config-file", CONFIGS["toy"], "BESTIE.PSEUDO_COCO.NAME", name,
                               "BESTIE.PSEUDO_COCO.JSON", json_file, "BESTIE.PSEUDO_COCO.SOURCE_DATASET", "test_toy_train",
                               "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "2",
                               "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path / "out")])
    unregister_pseudo_coco(name)
    assert e.value.code == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train_net")]
    assert len(err) == 1 and json_file in err[0] and "0 instances" in err[0] and "train BESTIE longer" in err[0]

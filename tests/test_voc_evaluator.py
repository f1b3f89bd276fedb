"""VOC instance-segmentation evaluation (chainercv / FCIS protocol): hand-computed cases."""
import json
import math
import uuid

import numpy as np
import pytest

import bestie_d2  # noqa: F401  (prepares detectron2)
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from detectron2.utils import comm

from bestie_d2.evaluation import (
    VOCInstanceEvaluator,
    eval_instance_segmentation_voc,
    eval_instance_segmentation_voc_multi,
    voc_ap,
)

H, W = 32, 40


def box(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def stack(*ms):
    if not ms:
        return np.zeros((0, H, W), dtype=bool)
    return np.stack(ms)


def ev(pm, pl, ps, gm, gl, thr=0.5, C=None):
    return eval_instance_segmentation_voc(
        pm, [np.asarray(x) for x in pl], [np.asarray(x, float) for x in ps],
        gm, [np.asarray(x) for x in gl], iou_thresh=thr, num_classes=C,
    )


def n_pixels(m):
    return int(m.sum())


# ------------------------------------------------------------------------------------------------
# Pure function
# ------------------------------------------------------------------------------------------------
def test_voc_ap_basic():
    assert voc_ap([], []) == 0.0
    assert voc_ap([1.0, 1.0], [0.5, 1.0]) == 1.0
    # FP then TP with one GT: precision [0, .5], recall [0, 1] -> 0.5
    assert voc_ap([0.0, 0.5], [0.0, 1.0]) == 0.5


def test_gt_as_predictions_gives_one_at_every_threshold():
    gm = [stack(box(0, 10, 0, 10), box(12, 30, 5, 25), box(0, 8, 30, 40)), stack(box(3, 20, 3, 20))]
    gl = [[0, 1, 1], [2]]
    ps = [[0.9, 0.3, 0.5], [0.1]]
    res = eval_instance_segmentation_voc_multi(
        gm, gl, ps, gm, gl, (0.25, 0.5, 0.7, 0.75, 1.0), num_classes=3
    )
    for r in res:
        np.testing.assert_array_equal(r["ap"], [1.0, 1.0, 1.0])
        assert r["map"] == 1.0
        np.testing.assert_array_equal(r["n_pos"], [1, 2, 1])


def test_false_positive_ranked_above_true_positive():
    # class 0: two GT (one per image). Ranking: FP (.9), TP (.8), TP (.7)
    # prec = [0, 1/2, 2/3], rec = [0, 1/2, 1]; envelope = 2/3 everywhere -> AP = 2/3
    g0, g1 = box(0, 10, 0, 10), box(10, 20, 10, 20)
    gm = [stack(g0), stack(g1)]
    gl = [[0], [0]]
    pm = [stack(box(20, 30, 20, 30), g0), stack(g1)]
    pl = [[0, 0], [0]]
    ps = [[0.9, 0.8], [0.7]]
    r = ev(pm, pl, ps, gm, gl, C=1)
    assert r["ap"][0] == pytest.approx(2 / 3, abs=1e-12)
    np.testing.assert_allclose(r["prec"][0], [0, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r["rec"][0], [0, 1 / 2, 1])

    # TP (.9), FP (.8), TP (.7): prec [1, 1/2, 2/3], rec [1/2, 1/2, 1] -> 1/2 * 1 + 1/2 * 2/3 = 5/6
    pm = [stack(g0), stack(box(20, 30, 20, 30), g1)]
    pl = [[0], [0, 0]]
    ps = [[0.9], [0.8, 0.7]]
    r = ev(pm, pl, ps, gm, gl, C=1)
    assert r["ap"][0] == pytest.approx(5 / 6, abs=1e-12)


def test_ranking_is_across_images_not_per_image():
    # image 0: FP with score .5; image 1: TP with score .9. Global order TP, FP -> AP 1.
    g = box(0, 10, 0, 10)
    gm = [stack(), stack(g)]
    gl = [[], [0]]
    pm = [stack(g), stack(g)]
    r = ev(pm, [[0], [0]], [[0.5], [0.9]], gm, gl, C=1)
    assert r["ap"][0] == 1.0
    r = ev(pm, [[0], [0]], [[0.95], [0.9]], gm, gl, C=1)
    assert r["ap"][0] == 0.5


def test_duplicate_detection_is_false_positive():
    # two GT; A (.9) and its duplicate (.8) on GT1, B (.7) on GT2 -> matches [1, 0, 1]
    # prec [1, 1/2, 2/3], rec [1/2, 1/2, 1] -> AP = 5/6
    g1, g2 = box(0, 10, 0, 10), box(15, 25, 15, 25)
    gm = [stack(g1, g2)]
    gl = [[0, 0]]
    dup = box(0, 10, 0, 9)  # IoU .9 with g1
    pm = [stack(dup, g1, g2)]
    r = ev(pm, [[0, 0, 0]], [[0.8, 0.9, 0.7]], gm, gl, C=1)
    assert r["ap"][0] == pytest.approx(5 / 6, abs=1e-12)
    # greedy by score: the higher-scored, lower-IoU prediction takes the GT; the exact one is FP
    r = ev([stack(dup, g1)], [[0, 0]], [[0.9, 0.8]], [stack(g1)], [[0]], C=1)
    assert r["ap"][0] == 1.0
    np.testing.assert_array_equal(r["prec"][0], [1.0, 0.5])


def test_no_rematching_to_another_free_gt():
    # GT1 cols 0-9, GT2 cols 2-11 (overlapping). A = GT1 (TP). B cols 0-10: IoU 100/110 with GT1
    # (taken) and 90/120 = .75 with GT2 (free, >= .5) -> still FP (no re-matching).
    g1, g2 = box(0, 10, 0, 10), box(0, 10, 2, 12)
    b = box(0, 10, 0, 11)
    r = ev([stack(g1, b)], [[0, 0]], [[0.9, 0.8]], [stack(g1, g2)], [[0, 0]], C=1)
    np.testing.assert_array_equal(r["prec"][0], [1.0, 0.5])
    np.testing.assert_array_equal(r["rec"][0], [0.5, 0.5])
    assert r["ap"][0] == 0.5


def test_class_without_gt_is_nan_and_excluded_and_class_without_predictions_is_zero():
    g = box(0, 10, 0, 10)
    gm = [stack(g, box(20, 30, 20, 30))]
    gl = [[0, 2]]
    # class 0: perfect; class 1: predictions but no GT -> NaN; class 2: GT, no predictions -> 0
    # class 3: nothing at all -> NaN
    pm = [stack(g, box(20, 30, 0, 10))]
    r = ev(pm, [[0, 1]], [[0.9, 0.99]], gm, gl, C=4)
    assert r["ap"][0] == 1.0
    assert math.isnan(r["ap"][1])
    assert r["ap"][2] == 0.0
    assert math.isnan(r["ap"][3])
    assert r["map"] == 0.5
    # a prediction of another class on the GT does not count for class 2
    r = ev([stack(g, gm[0][1])], [[0, 1]], [[0.9, 0.99]], gm, gl, C=4)
    assert r["ap"][2] == 0.0


@pytest.mark.parametrize(
    "thr,inter,expect",
    [(0.25, 25, 1.0), (0.25, 24, 0.0), (0.5, 50, 1.0), (0.5, 49, 0.0),
     (0.7, 70, 1.0), (0.7, 69, 0.0), (0.75, 75, 1.0), (0.75, 74, 0.0)],
)
def test_iou_right_at_and_below_threshold(thr, inter, expect):
    # GT = 10x10 = 100 px; prediction = the first `inter` pixels of it (row-major), IoU = inter/100
    g = box(0, 10, 0, 10)
    p = np.zeros((H, W), dtype=bool)
    ys, xs = np.nonzero(g)
    p[ys[:inter], xs[:inter]] = True
    iou = mask_util.iou([mask_util.encode(np.asfortranarray(p[:, :, None], dtype=np.uint8))[0]],
                        [mask_util.encode(np.asfortranarray(g[:, :, None], dtype=np.uint8))[0]],
                        [0])[0, 0]
    assert iou == inter / 100
    r = ev([stack(p)], [[0]], [[0.5]], [stack(g)], [[0]], thr=thr, C=1)
    assert r["ap"][0] == expect


def test_rle_and_array_inputs_agree_and_empty_images():
    rng = np.random.default_rng(0)
    gm, gl, pm, pl, ps = [], [], [], [], []
    for _ in range(4):
        k = int(rng.integers(0, 4))
        gms = [box(*sorted(rng.integers(0, H, 2) + [0, 1]), *sorted(rng.integers(0, W, 2) + [0, 1]))
               for _ in range(k)]
        gm.append(stack(*gms))
        gl.append(rng.integers(0, 3, k))
        j = int(rng.integers(0, 5))
        pms = [box(*sorted(rng.integers(0, H, 2) + [0, 1]), *sorted(rng.integers(0, W, 2) + [0, 1]))
               for _ in range(j)]
        pm.append(stack(*pms))
        pl.append(rng.integers(0, 3, j))
        ps.append(rng.random(j))
    a = eval_instance_segmentation_voc_multi(pm, pl, ps, gm, gl, (0.3, 0.6), 3)
    enc = lambda ms: [mask_util.encode(np.asfortranarray(m[:, :, None], dtype=np.uint8))[0] for m in ms]  # noqa
    b = eval_instance_segmentation_voc_multi(
        [enc(m) for m in pm], pl, ps, [enc(m) for m in gm], gl, (0.3, 0.6), 3
    )
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra["ap"], rb["ap"])


# ------------------------------------------------------------------------------------------------
# DatasetEvaluator
# ------------------------------------------------------------------------------------------------
CLASSES = ["cat", "dog", "bird"]


def _rle(m):
    r = mask_util.encode(np.asfortranarray(m[:, :, None], dtype=np.uint8))[0]
    r["counts"] = r["counts"].decode("ascii")
    return r


GT = {
    "img_a": [(box(0, 10, 0, 10), 0), (box(15, 25, 15, 25), 1)],
    "img_b": [(box(5, 20, 5, 30), 0)],
    "img_c": [(box(0, 30, 0, 30), 1)],  # gets no predictions in some tests
}


@pytest.fixture(scope="module")
def dataset_name():
    name = f"voc_eval_test_{uuid.uuid4().hex[:8]}"

    def records():
        out = []
        for img_id, anns in GT.items():
            out.append({
                "file_name": f"/nonexistent/{img_id}.jpg", "image_id": img_id,
                "height": H, "width": W,
                "annotations": [
                    {"bbox": [0, 0, 1, 1], "bbox_mode": 1, "category_id": c,
                     "segmentation": _rle(m), "iscrowd": 0}
                    for m, c in anns
                ],
            })
        return out

    DatasetCatalog.register(name, records)
    MetadataCatalog.get(name).set(thing_classes=CLASSES, evaluator_type="voc_instance")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _outputs(masks, classes, scores):
    inst = Instances((H, W))
    inst.pred_masks = torch.from_numpy(stack(*masks))
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    return {"instances": inst}


def _run(evaluator, preds):
    evaluator.reset()
    for img_id, (m, c, s) in preds.items():
        evaluator.process([{"image_id": img_id, "height": H, "width": W}], [_outputs(m, c, s)])
    return evaluator.evaluate()


@pytest.mark.parametrize("distributed", [False, True])
def test_evaluator_gt_as_predictions(dataset_name, distributed, tmp_path):
    assert comm.get_world_size() == 1
    ev_ = VOCInstanceEvaluator(dataset_name, distributed=distributed, output_dir=str(tmp_path))
    preds = {k: ([m for m, _ in v], [c for _, c in v], [0.9] * len(v)) for k, v in GT.items()}
    res = _run(ev_, preds)
    assert list(res) == ["voc_instance"]
    r = res["voc_instance"]
    assert list(r)[:4] == ["mAP25", "mAP50", "mAP70", "mAP75"]
    for k in ("mAP25", "mAP50", "mAP70", "mAP75", "AP50-cat", "AP50-dog"):
        assert r[k] == 100.0 and isinstance(r[k], float)
    assert math.isnan(r["AP50-bird"])  # no GT of "bird"
    saved = json.loads((tmp_path / "voc_instance_metrics.json").read_text())
    assert saved["mAP50"] == 100.0 and saved["AP50-bird"] is None
    dets = json.loads((tmp_path / "voc_instance_predictions.json").read_text())
    assert len(dets) == 4 and {d["image_id"] for d in dets} == set(GT)


def test_evaluator_hand_computed(dataset_name):
    ev_ = VOCInstanceEvaluator(dataset_name, iou_thresholds=(0.5, 0.7), distributed=False)
    # cat: GT a0, b0. Preds: FP .95 (img_a), TP .9 on a0, duplicate .8 on a0 (FP);
    #      img_b prediction with IoU 0.6 with b0 (TP at .5, FP at .7), score .7
    #   @.5: order FP, TP, FP, TP -> prec [0, 1/2, 1/3, 1/2], rec [0, .5, .5, 1] -> .5*.5+.5*.5 = .5
    #   @.7: FP, TP, FP, FP -> prec [0, 1/2, 1/3, 1/4], rec [0, .5, .5, .5] -> .5 * .5 = .25
    # dog: GT a1, c0; pred a1 (.5) exact, img_c has no predictions -> @.5/.7: AP = .5
    # bird: a FP on img_b, no GT -> NaN, excluded
    a0, a1 = GT["img_a"][0][0], GT["img_a"][1][0]
    b0 = GT["img_b"][0][0]  # rows 5-19, cols 5-29: 15 x 25 = 375 px
    b_pred = box(5, 20, 5, 20)  # 15 x 15 = 225 px inside b0 -> IoU .6
    preds = {
        "img_a": ([box(20, 30, 0, 10), a0, box(0, 10, 0, 9), a1], [0, 0, 0, 1], [0.95, 0.9, 0.8, 0.5]),
        "img_b": ([b_pred, box(0, 5, 0, 5)], [0, 2], [0.7, 0.99]),
    }
    assert n_pixels(b0) == 375
    r = _run(ev_, preds)["voc_instance"]
    assert list(r) == ["mAP50", "mAP70", "AP50-cat", "AP50-dog", "AP50-bird"]
    assert r["AP50-cat"] == pytest.approx(50.0, abs=1e-9)
    assert r["AP50-dog"] == pytest.approx(50.0, abs=1e-9)
    assert math.isnan(r["AP50-bird"])
    assert r["mAP50"] == pytest.approx(50.0, abs=1e-9)
    assert r["mAP70"] == pytest.approx((25.0 + 50.0) / 2, abs=1e-9)


def test_evaluator_empty_and_errors(dataset_name):
    ev_ = VOCInstanceEvaluator(dataset_name, distributed=True)
    # nothing processed at all: every GT missed -> 0 where GT exists
    ev_.reset()
    r = ev_.evaluate()["voc_instance"]
    assert r["mAP50"] == 0.0 and r["AP50-cat"] == 0.0 and math.isnan(r["AP50-bird"])
    # images with zero-length Instances
    r = _run(ev_, {k: ([], [], []) for k in GT})["voc_instance"]
    assert r["mAP25"] == 0.0
    # unknown image id -> error naming it
    with pytest.raises(KeyError, match="no_such_image"):
        _run(ev_, {"no_such_image": ([box(0, 5, 0, 5)], [0], [0.5])})
    # no thing_classes
    missing = f"voc_eval_missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="thing_classes"):
        VOCInstanceEvaluator(missing)
    MetadataCatalog.remove(missing)


def test_evaluators_switch_adds_coco_ap_on_a_voc_layout_set(dataset_name, tmp_path, bestie_cfg):
    """Issue 21, item 11: ``TEST.EVALUATORS ["voc_instance", "coco"]`` gives COCO mask AP on a VOC
    set (no COCO json registered: COCOEvaluator converts its records); GT as predictions = 100."""
    from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
    from detectron2.structures import BitMasks

    from bestie_d2.engine.trainer import build_evaluator

    bestie_cfg.MODEL.META_ARCHITECTURE = "BESTIE"
    assert isinstance(build_evaluator(bestie_cfg, dataset_name, str(tmp_path)), VOCInstanceEvaluator)
    bestie_cfg.TEST.EVALUATORS = ["voc_instance", "coco"]
    both = build_evaluator(bestie_cfg, dataset_name, str(tmp_path))
    assert isinstance(both, DatasetEvaluators)
    assert [type(e) for e in both._evaluators] == [VOCInstanceEvaluator, COCOEvaluator]
    both.reset()
    for img_id, v in GT.items():  # the model's outputs: masks, classes, scores and boxes
        out = _outputs([m for m, _ in v], [c for _, c in v], [0.9] * len(v))
        out["instances"].pred_boxes = BitMasks(out["instances"].pred_masks).get_bounding_boxes()
        both.process([{"image_id": img_id, "height": H, "width": W}], [out])
    res = both.evaluate()
    assert res["voc_instance"]["mAP50"] == 100.0
    assert res["segm"]["AP"] == pytest.approx(100.0) and res["segm"]["AP50"] == pytest.approx(100.0)
    bestie_cfg.TEST.EVALUATORS = ["cityscapes"]
    with pytest.raises(NotImplementedError, match="TEST.EVALUATORS"):
        build_evaluator(bestie_cfg, dataset_name, str(tmp_path))

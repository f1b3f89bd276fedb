"""Pseudo-label export (Mask R-CNN refinement, step 1): json format, filters, gathering, CLI.

A stub meta-architecture predicts, per image, the GT masks plus three instances that the filters
must remove (a class outside the image labels, a low score, a tiny mask), so every filter's effect
is known exactly. A tiny random-init BESTIE checks the real model path.
``tests/data/pseudo_coco_before_refactor.json`` holds the jsons (and summaries) that the exporter
before the move to ``bestie_d2.maskrcnn_refinement`` (commit 9f000e3, ``tools/export_pseudo_coco``
with its own loop and shards) wrote for the stub on the test toy set (``info.image_root``
replaced by ``<image_root>``, the only machine-dependent field).
"""
import json
import os
import random

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from torch import nn

import bestie_d2  # noqa: F401
from bestie_d2.maskrcnn_refinement import (
    PseudoLabelWriter,
    export_pseudo_coco,
    merge_entries,
    register_pseudo_coco,
    unregister_pseudo_coco,
)
from bestie_d2.tools.export_pseudo_coco import build_argument_parser
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import BitMasks, Instances

from repo_paths import CONFIG_DIR
BEFORE_REFACTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pseudo_coco_before_refactor.json")
NUM_CLASSES = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _decode(rles, h, w):
    if not rles:
        return np.zeros((0, h, w), bool)
    return mask_util.decode(list(rles)).transpose(2, 0, 1).astype(bool)


def stub_predictions(record):
    """(masks, classes, scores, kind) predicted by the stub for one record."""
    h, w = record["height"], record["width"]
    anns = record["annotations"]
    gt = _decode([a["segmentation"] for a in anns], h, w)
    classes = [int(a["category_id"]) for a in anns]
    scores = [0.9 - 0.01 * i for i in range(len(anns))]
    kinds = ["gt"] * len(anns)
    label = set(record["image_label"])
    absent = [c for c in range(NUM_CLASSES) if c not in label]
    extra = []
    if absent:  # a confident instance of a class that is not in the image
        extra.append((gt[0], absent[0], 0.8, "wrong_class"))
    extra.append((gt[-1], classes[-1], 0.05, "low_score"))  # below the score threshold
    tiny = np.zeros((h, w), bool)
    tiny[0, :3] = True  # 3 pixels
    extra.append((tiny, classes[0], 0.7, "tiny"))
    masks = np.concatenate([gt, np.stack([e[0] for e in extra])], 0)
    return masks, classes + [e[1] for e in extra], scores + [e[2] for e in extra], kinds + [e[3] for e in extra]


if "_PseudoExportStub" not in META_ARCH_REGISTRY:

    @META_ARCH_REGISTRY.register()
    class _PseudoExportStub(nn.Module):
        """Eval-only model: looks its input up in ``DATASETS.TRAIN[0]`` and returns
        :func:`stub_predictions` at the original size (inputs may be resized by the mapper)."""

        def __init__(self, cfg=None, dataset_name=None):
            super().__init__()
            name = dataset_name or cfg.DATASETS.TRAIN[0]
            self.records = {r["image_id"]: r for r in DatasetCatalog.get(name)}
            self.dummy = nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, batched_inputs):
            assert not self.training
            out = []
            for inp in batched_inputs:
                self.calls += 1
                rec = self.records[inp["image_id"]]
                masks, classes, scores, _ = stub_predictions(rec)
                inst = Instances((rec["height"], rec["width"]))
                inst.pred_masks = torch.from_numpy(masks)
                inst.pred_classes = torch.tensor(classes, dtype=torch.long)
                inst.scores = torch.tensor(scores, dtype=torch.float32)
                inst.pred_boxes = BitMasks(inst.pred_masks).get_bounding_boxes()
                out.append({"instances": inst})
            return out


@pytest.fixture(scope="module")
def toy(toy_root):
    records = DatasetCatalog.get("test_toy_train")
    return {"root": toy_root, "records": records, "model": _PseudoExportStub(dataset_name="test_toy_train")}


def _stem(image):
    """The file stem of a json image entry (the VOC-style record id)."""
    return os.path.splitext(os.path.basename(image["file_name"]))[0]


def _subset(name, records):
    """Register ``records`` (a prefix of test_toy_train) as ``name`` with the same metadata."""
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
        meta = MetadataCatalog.get("test_toy_train").as_dict()
        MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    return name


def _expected(records, *, label_filter, score_threshold, min_area):
    out = []
    for r in records:
        masks, classes, scores, kinds = stub_predictions(r)
        keep = []
        for m, c, s, k in zip(masks, classes, scores, kinds):
            if label_filter and c not in r["image_label"]:
                continue
            if s < score_threshold or m.sum() < max(min_area, 1):
                continue
            keep.append((m, c, s, k))
        out.append(keep)
    return out


def test_export_format_and_exact_masks(toy, tmp_path):
    from pycocotools.coco import COCO

    records = toy["records"]
    out = str(tmp_path / "pseudo.json")
    summary = export_pseudo_coco(toy["model"], "test_toy_train", out, score_threshold=0.1, min_area=10)
    coco = COCO(out)  # loads with pycocotools
    with open(out) as f:
        data = json.load(f)
    # integer image ids (the COCO format; issue 21, item 8), the VOC-style id stays the file stem
    assert [im["id"] for im in data["images"]] == list(range(1, len(records) + 1))
    assert [_stem(im) for im in data["images"]] == [r["image_id"] for r in records]
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in data["categories"]] == list(MetadataCatalog.get("test_toy_train").thing_classes)
    assert data["info"]["source_dataset"] == "test_toy_train"
    ids = [a["id"] for a in data["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    expected = _expected(records, label_filter=True, score_threshold=0.1, min_area=10)
    assert all(k == "gt" for exp in expected for *_, k in exp)
    for im, r, exp in zip(data["images"], records, expected):
        assert (im["height"], im["width"]) == (r["height"], r["width"])
        assert os.path.join(data["info"]["image_root"], im["file_name"]) == os.path.abspath(r["file_name"])
        anns = coco.imgToAnns[im["id"]]
        assert len(anns) == len(exp)
        for a, (m, c, s, _) in zip(anns, exp):
            assert isinstance(a["segmentation"]["counts"], str)
            dec = coco.annToMask(a).astype(bool)
            np.testing.assert_array_equal(dec, m)
            assert a["category_id"] == c + 1 and a["iscrowd"] == 0
            assert a["score"] == pytest.approx(s, abs=1e-6)
            assert a["area"] == float(m.sum())
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    n_gt = sum(len(r["annotations"]) for r in records)
    assert summary["instances"] == n_gt == len(data["annotations"])
    assert summary["images"] == len(records)
    assert summary["images_without_instances"] == 0
    assert sum(summary["per_class"].values()) == n_gt
    n_wrong = sum(1 for r in records if len(r["image_label"]) < NUM_CLASSES)
    assert summary["dropped"] == {
        "dropped_label_filter": n_wrong,
        "dropped_min_area": len(records),
        "dropped_score": len(records),
    }


def test_json_identical_to_the_export_before_the_refactor(toy, tmp_path):
    """Same model, same data set, same settings: byte-identical json content and summary (the
    ``info.point_guided`` field, added later, aside: False here; the image ids, str file stems in
    the pinned file, are the integers 1..N in data-set order since issue 21, item 8)."""
    with open(BEFORE_REFACTOR) as f:
        before = json.load(f)
    assert set(before) == {"defaults", "no_label_filter_score0.1_area10"}
    root = os.path.join(toy["root"], "JPEGImages")
    for key, case in before.items():
        out = str(tmp_path / f"{key}.json")
        summary = export_pseudo_coco(toy["model"], "test_toy_train", out, **case["settings"])
        with open(out) as f:
            data = json.load(f)
        assert data["info"]["image_root"] == root
        data["info"]["image_root"] = "<image_root>"
        assert data["info"].pop("point_guided") is False
        new_id = {im["id"]: i + 1 for i, im in enumerate(case["json"]["images"])}
        assert all(_stem(im) == old for im, old in zip(data["images"], new_id))
        for im in case["json"]["images"]:
            im["id"] = new_id[im["id"]]
        for a in case["json"]["annotations"]:
            a["image_id"] = new_id[a["image_id"]]
        assert json.dumps(data) == json.dumps(case["json"]), key
        assert json.loads(json.dumps(summary)) == case["summary"], key
    assert len(before["defaults"]["json"]["annotations"]) > len(toy["records"])  # not a vacuous case


def test_export_json_mode(toy, tmp_path):
    """Issue 16: the json gets the usual file mode (0644 under umask 022, not mkstemp's 0600)."""
    name = _subset("test_toy_train_first3", toy["records"][:3])
    out = tmp_path / "pseudo.json"
    old = os.umask(0o022)
    try:
        export_pseudo_coco(toy["model"], name, str(out))
    finally:
        os.umask(old)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)
    assert sorted(os.listdir(tmp_path)) == ["pseudo.json"]  # no temporary file left


@pytest.mark.parametrize(
    "kwargs,extra_kinds",
    [
        (dict(keep_image_label_classes=False, score_threshold=0.1, min_area=10), {"wrong_class"}),
        (dict(score_threshold=0.0, min_area=10), {"low_score"}),
        (dict(score_threshold=0.1, min_area=0), {"tiny"}),
        (dict(score_threshold=0.95), set()),
    ],
)
def test_filters(toy, tmp_path, kwargs, extra_kinds):
    records = toy["records"][:4]
    out = str(tmp_path / "p.json")
    name = _subset("test_toy_train_first4", records)
    export_pseudo_coco(toy["model"], name, out, **kwargs)
    with open(out) as f:
        data = json.load(f)
    exp = _expected(
        records,
        label_filter=kwargs.get("keep_image_label_classes", True),
        score_threshold=kwargs.get("score_threshold", 0.0),
        min_area=kwargs.get("min_area", 0),
    )
    kinds = {k for e in exp for *_, k in e}
    if kwargs.get("score_threshold") == 0.95:
        assert kinds == set() and data["annotations"] == []
        return
    assert kinds == {"gt"} | extra_kinds
    assert len(data["annotations"]) == sum(len(e) for e in exp)
    got = [(a["image_id"], a["category_id"] - 1, round(a["score"], 5)) for a in data["annotations"]]
    want = [(i + 1, c, round(s, 5)) for i, (r, e) in enumerate(zip(records, exp)) for _, c, s, _ in e]
    assert got == want


def _write(writer, model, records):
    """Feed ``records`` (in the given order) through ``writer`` as inference_on_dataset does."""
    from bestie_d2.data.mappers import BestieDatasetMapper

    mapper = BestieDatasetMapper(is_train=False, num_classes=NUM_CLASSES)
    model.eval()
    writer.reset()
    for r in records:
        inp = mapper(r)
        writer.process([inp], model([inp]))
    return writer.evaluate()


def test_writer_merges_entries_in_dataset_order(toy, tmp_path):
    """Images reach the writer in any order (ranks, samplers): the json is in data-set order,
    annotation ids 1..N; an image seen twice is refused."""
    records = toy["records"]
    kw = dict(score_threshold=0.1, min_area=10)
    in_order = PseudoLabelWriter("test_toy_train", str(tmp_path / "a.json"), **kw)
    mixed = PseudoLabelWriter("test_toy_train", str(tmp_path / "b.json"), **kw)
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    assert shuffled != records
    assert _write(in_order, toy["model"], records) == _write(mixed, toy["model"], shuffled)
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a == b
    assert [im["id"] for im in a["images"]] == list(range(1, len(records) + 1))
    assert [_stem(im) for im in a["images"]] == [r["image_id"] for r in records]
    ids = [ann["id"] for ann in a["annotations"]]
    assert ids == list(range(1, sum(len(r["annotations"]) for r in records) + 1))
    with pytest.raises(ValueError, match="duplicate"):
        merge_entries(mixed._entries + mixed._entries, a["categories"])
    with pytest.raises(ValueError, match="duplicate image ids"):
        PseudoLabelWriter("test_toy_train", str(tmp_path / "c.json"), records=records + records[:1])


def test_registration_round_trip(toy, tmp_path):
    out = str(tmp_path / "pseudo.json")
    export_pseudo_coco(toy["model"], "test_toy_train", out, score_threshold=0.1, min_area=10)
    name = "test_toy_train_pseudo_roundtrip"
    unregister_pseudo_coco(name)
    register_pseudo_coco(name, out, None, MetadataCatalog.get("test_toy_train").thing_classes, source_dataset="test_toy_train")
    register_pseudo_coco(name, out, None, MetadataCatalog.get("test_toy_train").thing_classes)  # same json: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_pseudo_coco(name, str(tmp_path / "other.json"), None, ["a"])
    meta = MetadataCatalog.get(name)
    assert meta.thing_dataset_id_to_contiguous_id == {c + 1: c for c in range(NUM_CLASSES)}
    assert meta.evaluator_type == "coco" and meta.json_file == out
    loaded = DatasetCatalog.get(name)
    src = toy["records"]
    assert [r["image_id"] for r in loaded] == list(range(1, len(src) + 1))
    for r, s in zip(loaded, src):
        assert r["file_name"] == os.path.abspath(s["file_name"])
        assert [a["category_id"] for a in r["annotations"]] == [a["category_id"] for a in s["annotations"]]
        assert all("score" in a for a in r["annotations"])
        for a, b in zip(r["annotations"], s["annotations"]):
            np.testing.assert_array_equal(mask_util.decode(a["segmentation"]), mask_util.decode(b["segmentation"]))
    unregister_pseudo_coco(name)


def _bestie_cfg(tmp_path):
    from cfg_factory import new_bestie_cfg

    cfg = new_bestie_cfg(os.path.join(CONFIG_DIR, "toy", "bestie_image_label.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", ("test_toy_train",),
                         "DATASETS.TEST", ("test_toy_val",), "OUTPUT_DIR", str(tmp_path)])
    return cfg


def _tiny_bestie(tmp_path):
    """A random-init toy BESTIE (seed 0) whose semantic head favours the classes (random init
    predicts background everywhere)."""
    import bestie_d2.modeling.bestie  # noqa: F401  (the BESTIE meta-architecture)
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(_bestie_cfg(tmp_path))
    sem = getattr(model.heads, "sem_predictor", None)
    if sem is not None:  # random init predicts background everywhere: favour the classes
        with torch.no_grad():
            sem.weight.mul_(0.1)
            sem.bias.zero_()
            sem.bias[0] = -3.0
    return model


def test_export_tiny_bestie(toy, tmp_path):
    """The real model path: random-init toy BESTIE + its test mapper, flip TTA and label cleaning
    switched on for the export only; the json holds exactly the model's label-filtered predictions."""
    from bestie_d2.data.mappers import BestieDatasetMapper

    cfg = _bestie_cfg(tmp_path)
    model = _tiny_bestie(tmp_path)
    model.test_min_area = 1
    seen = []
    hook = model.register_forward_hook(
        lambda m, inp, out: seen.append((m.test_flip, m.test_use_image_labels, inp[0][0]["image_id"], out[0]["instances"].to("cpu")))
    )
    records = toy["records"][:2]
    name = _subset("test_toy_train_first2", records)
    out = str(tmp_path / "bestie.json")
    export_pseudo_coco(model, name, out, mapper=BestieDatasetMapper(cfg, is_train=False), flip_tta=True, min_area=20)
    hook.remove()
    assert model.test_flip is False and model.test_use_image_labels is False  # restored
    assert [s[:3] for s in seen] == [(True, True, r["image_id"]) for r in records]
    with open(out) as f:
        data = json.load(f)
    n_pred = 0
    for k, (r, (*_, inst)) in enumerate(zip(records, seen)):
        keep = [i for i in range(len(inst)) if int(inst.pred_masks[i].sum()) >= 20]
        assert all(int(inst.pred_classes[i]) in r["image_label"] for i in keep)  # cleaned by the model
        anns = [a for a in data["annotations"] if a["image_id"] == k + 1]
        assert len(anns) == len(keep)
        n_pred += len(keep)
        for a, i in zip(anns, keep):
            np.testing.assert_array_equal(mask_util.decode(a["segmentation"]).astype(bool), inst.pred_masks[i].numpy())
            assert a["category_id"] == int(inst.pred_classes[i]) + 1
            assert a["score"] == pytest.approx(float(inst.scores[i]), rel=1e-6)
    assert n_pred > 0


@pytest.mark.skipif(
    os.environ.get("BESTIE_TEST_MULTIPROCESS", "0") != "1",
    reason="spawns two processes (~15-30 s on 2 cores); set BESTIE_TEST_MULTIPROCESS=1 to run",
)
def test_cli_two_processes(toy, tmp_path):
    """``--num-gpus 2`` on CPU: two gloo processes, the writer gathers to rank 0, which writes;
    same json as one process. (The merge: test_writer_merges_entries_in_dataset_order.)"""
    from bestie_d2.engine.launch import launch
    from bestie_d2.tools import export_pseudo_coco as tool

    cfg_file = tmp_path / "stub.yaml"
    cfg_file.write_text(
        'MODEL:\n  META_ARCHITECTURE: "_PseudoExportStub"\n  WEIGHTS: ""\n  DEVICE: "cpu"\n'
        'DATASETS:\n  TRAIN: ("test_toy_train",)\n'
    )
    one = str(tmp_path / "one.json")
    two = str(tmp_path / "two.json")
    argv = ["--config-file", str(cfg_file), "--output", one, "--score-threshold", "0.1", "--min-area", "10",
            "--num-workers", "0"]
    tool.main(build_argument_parser().parse_args(argv))
    args = build_argument_parser().parse_args(argv[:3] + [two] + argv[4:] + ["--num-gpus", "2"])
    launch(_spawned_main, 2, dist_url="auto", args=(toy["root"], args))
    with open(one) as f1, open(two) as f2:
        a, b = json.load(f1), json.load(f2)
    assert a == b
    assert not [p for p in os.listdir(tmp_path) if "shard" in p or p.endswith(".tmp")]


def _spawned_main(toy_root, args):
    """Runs in each spawned process: register the session's toy set, then the CLI's main."""
    from conftest import TOY_TEST_KWARGS

    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.tools import export_pseudo_coco as tool

    torch.set_num_threads(1)
    register_toy_dataset("test_toy", toy_root, **TOY_TEST_KWARGS)
    tool.main(args)


def test_export_tiny_bestie_point_guided(toy, tmp_path):
    """``use_points``: the default mapper adds each record's point labels, the model decodes one
    instance per point (at most as many annotations as points, classes of the points, each mask
    equal to the model's point-guided decoding), ``info.point_guided`` is recorded, the switch is
    restored; a model asked for points without them says which image lacks them."""
    from bestie_d2.data.mappers import BestieDatasetMapper
    from bestie_d2.data.points import read_points

    model = _tiny_bestie(tmp_path)
    model.eval()
    records = toy["records"][:3]
    name = _subset("test_toy_train_first3", records)
    out = str(tmp_path / "points.json")
    summary = export_pseudo_coco(model, name, out, use_points=True)
    assert model.test_use_points is False  # restored
    with open(out) as f:
        data = json.load(f)
    assert data["info"]["point_guided"] is True
    mapper = BestieDatasetMapper(is_train=False, num_classes=NUM_CLASSES, supervision="point", test_points=True)
    n = n_points = 0
    for k, r in enumerate(records):
        pts = read_points(r["center_points_file"], NUM_CLASSES)
        n_points += len(np.unique(pts[:, :3], axis=0))
        inp = mapper(r)
        np.testing.assert_array_equal(inp["points"].numpy(), pts[:, [1, 0, 2]].astype(np.int64))
        anns = [a for a in data["annotations"] if a["image_id"] == k + 1]
        assert 0 < len(anns) <= len(pts)
        assert {a["category_id"] - 1 for a in anns} <= {int(c) for c in pts[:, 2]}
        model.test_use_points = model.test_use_image_labels = True
        inst = model.inference([inp])[0]["instances"]
        model.test_use_points = model.test_use_image_labels = False
        assert len(inst) == len(anns)
        for a, m in zip(anns, inst.pred_masks):
            np.testing.assert_array_equal(mask_util.decode(a["segmentation"]).astype(bool), m.numpy())
        n += len(anns)
    assert summary["instances"] == n
    # every labelled point is counted, and those without an instance (issue 21, item 8)
    assert summary["points"] == {"labelled": n_points, "without_instance": n_points - n}
    model.test_use_points = True
    with pytest.raises(ValueError, match="has no 'points'"):
        model.inference([BestieDatasetMapper(is_train=False, num_classes=NUM_CLASSES)(records[0])])


def test_cli_points_flag(toy, tmp_path):
    """``--points``: auto is off for image supervision (the stub exports as before); on asks the
    model for point-guided decoding, which a model without the switch refuses by name."""
    from bestie_d2.tools import export_pseudo_coco as tool

    cfg_file = tmp_path / "stub.yaml"
    cfg_file.write_text(
        'MODEL:\n  META_ARCHITECTURE: "_PseudoExportStub"\n  WEIGHTS: ""\n  DEVICE: "cpu"\n'
        'DATASETS:\n  TRAIN: ("test_toy_train",)\n'
    )
    argv = ["--config-file", str(cfg_file), "--output", str(tmp_path / "a.json"), "--num-workers", "0"]
    summary = tool.main(build_argument_parser().parse_args(argv))
    with open(tmp_path / "a.json") as f:
        assert json.load(f)["info"]["point_guided"] is False
    assert summary["instances"] > 0
    with pytest.raises(ValueError, match="test_use_points"):
        tool.main(build_argument_parser().parse_args(argv + ["--points", "on"]))


def test_point_guided_summary_counts_points_without_instance(toy, tmp_path, caplog):
    """Issue 21, item 8: 6 labelled points, 5 instances -> the summary and the log say that one
    point got no instance (the decoder makes one instance per point that got pixels)."""
    import logging

    from detectron2.structures import Instances

    records = toy["records"][:2]
    writer = PseudoLabelWriter("test_toy_train", str(tmp_path / "p.json"), point_guided=True, records=records)
    writer.reset()
    for r, (n_pts, n_inst) in zip(records, [(4, 4), (2, 1)]):
        inst = Instances((r["height"], r["width"]))
        inst.pred_masks = torch.zeros((n_inst, r["height"], r["width"]), dtype=torch.bool)
        inst.pred_masks[:, :3, :3] = True
        inst.pred_classes = torch.full((n_inst,), int(r["image_label"][0]))
        inst.scores = torch.ones(n_inst)
        pts = torch.tensor([[5 + i, 7, int(r["image_label"][0])] for i in range(n_pts)] + [[5, 7, int(r["image_label"][0])]])
        writer.process([{"image_id": r["image_id"], "height": r["height"], "width": r["width"], "points": pts}],
                       [{"instances": inst}])
    with caplog.at_level(logging.INFO, logger="bestie_d2.maskrcnn_refinement.pseudo_labels"):
        summary = writer.evaluate()
    assert summary["instances"] == 5 and summary["points"] == {"labelled": 6, "without_instance": 1}
    assert "Point labels: 6, of which 1 got no pixels" in caplog.text
    assert "points_labelled" not in summary["dropped"]
    data = json.loads((tmp_path / "p.json").read_text())
    assert [im["id"] for im in data["images"]] == [1, 2] and all(isinstance(a["image_id"], int) for a in data["annotations"])

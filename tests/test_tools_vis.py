"""Visualisation tools: drawing helpers, ``visualize`` (mapper samples), ``demo_grid``, ``predict``."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.utils import vis

from conftest import scaled_timeout
from repo_paths import REPO as ROOT
CFG_IMAGE = os.path.join(ROOT, "configs", "toy", "bestie_image_label.yaml")
CFG_POINT = os.path.join(ROOT, "configs", "toy", "bestie_point_label.yaml")
PAD = 4  # vis.compose_grid default
DS_OPTS = ["DATASETS.TRAIN", "('test_toy_train',)", "DATASETS.TEST", "('test_toy_val',)"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cue_dirs(toy_root, tmp_path_factory):
    """WSSS maps = the GT class maps; PAM-like cues = the GT center points at conf 0.9, plus a
    decoy at conf 0.5 per image (below BESTIE.DATA.CUE_THRESHOLD = 0.7, so it must be dropped)."""
    from bestie_d2.data.datasets import read_label_map, write_label_map
    from bestie_d2.data.points import read_points, write_points
    from detectron2.data import DatasetCatalog

    base = tmp_path_factory.mktemp("vis_inputs")
    wsss, cues = str(base / "wsss"), str(base / "cues")
    for r in DatasetCatalog.get("test_toy_train"):
        sem = read_label_map(os.path.join(toy_root, "SegmentationClass", r["image_id"] + ".png"))
        write_label_map(os.path.join(wsss, r["image_id"] + ".png"), sem)
        pts = read_points(r["center_points_file"], 5)
        pts[:, 3] = 0.9
        decoy = np.array([[1, 1, pts[0, 2], 0.5]], np.float32)
        write_points(os.path.join(cues, r["image_id"] + ".txt"), np.concatenate([pts, decoy]))
    return {"wsss": wsss, "cues": cues, "empty": str(base / "empty")}


def _read_rgb(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, path
    return img[..., ::-1]


def _tiny_model(opts=()):
    """Random-init toy BESTIE; the semantic head favours the classes so that decoding finds a few
    instances (a random head predicts background everywhere)."""
    from bestie_d2.utils.cli import setup_cfg
    from detectron2.modeling import build_model

    cfg = setup_cfg(CFG_IMAGE, DS_OPTS + ["MODEL.BESTIE.TEST.MIN_AREA", "5"] + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.heads.sem_predictor.weight.mul_(0.1)
        model.heads.sem_predictor.bias.zero_()
        model.heads.sem_predictor.bias[0] = -3.0
    return cfg, model


# ------------------------------------------------------------------------------------------------
# drawing helpers
# ------------------------------------------------------------------------------------------------
def test_vis_helpers():
    sem = np.array([[0, 1], [2, 255]])
    col = vis.colorize_semantic(sem)
    assert col.dtype == np.uint8 and col.shape == (2, 2, 3)
    np.testing.assert_array_equal(col[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(col[0, 1], vis.class_colors(2)[0])
    np.testing.assert_array_equal(col[1, 0], vis.class_colors(2)[1])
    np.testing.assert_array_equal(col[1, 1], vis.IGNORE_COLOR)

    center = np.zeros((3, 8, 8), np.float32)
    center[2, 4, 4] = 1.0
    hm = vis.center_heatmap(torch.from_numpy(center))
    assert hm.shape == (8, 8, 3) and (hm[4, 4] != hm[0, 0]).any()

    off = np.zeros((2, 4, 4), np.float32)
    off[1, 0, 0] = 3.0  # dx > 0: pointing right = red
    off[0, 1, 1] = 4.0  # dy > 0: pointing down
    d = vis.offset_direction_image(off)
    np.testing.assert_array_equal(d[3, 3], [0, 0, 0])
    assert d[0, 0, 0] > 150 and d[0, 0, 1] < 80 and d[0, 0, 2] < 80
    np.testing.assert_allclose(vis.offset_magnitude(off)[1, 1], 4.0)
    assert len({tuple(c) for c in vis.instance_colors(12)}) == 12

    lines = vis.wrap_text("a fairly long title that has to wrap over several lines", 60)
    assert len(lines) > 2 and all(cv2.getTextSize(s, vis.FONT, 0.4, 1)[0][0] <= 60 for s in lines)

    panels = [np.zeros((10, 20, 3), np.uint8), np.zeros((30, 12, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)]
    g = vis.compose_grid([panels, "a banner", panels[:2]], [["x", "y", "z"], None, None])
    assert g.shape[1] == 20 + 12 + 5 + 4 * PAD
    g2 = vis.compose_grid([panels], None, cell_size=(16, 16), pad=2)
    assert g2.shape == (2 + 16 + 2, 3 * 16 + 4 * 2, 3)


def test_save_png_atomic(tmp_path):
    p = str(tmp_path / "sub" / "x.png")
    img = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    vis.save_png(p, img)
    np.testing.assert_array_equal(_read_rgb(p), img)
    assert os.listdir(tmp_path / "sub") == ["x.png"]


# ------------------------------------------------------------------------------------------------
# visualize: mapper samples
# ------------------------------------------------------------------------------------------------
def test_visualize_image_route(cue_dirs, tmp_path):
    from bestie_d2.tools import visualize
    from bestie_d2.visualization.training_sample import NUM_PANELS

    out = str(tmp_path / "vis")
    args = ["--config-file", CFG_IMAGE, "--dataset", "test_toy_train", "--output", out,
            "--index", "0", "3", "--seed", "1", "--panel-size", "96",
            "BESTIE.DATA.PEAK_POINTS_DIR", cue_dirs["cues"], "BESTIE.DATA.WSSS_DIR", cue_dirs["wsss"]]
    paths = visualize.main(args)
    assert [os.path.basename(p) for p in paths] == ["00000_toy_train_000000.png", "00003_toy_train_000003.png"]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths)
    for p in paths:
        img = _read_rgb(p)
        assert img.shape[1] == NUM_PANELS * 96 + (NUM_PANELS + 1) * PAD
        assert 96 + 2 * PAD < img.shape[0] < 96 + 120
    first = open(paths[0], "rb").read()
    visualize.main(args)  # same seed: same pixels
    assert open(paths[0], "rb").read() == first


def test_visualize_point_route_and_render(cue_dirs, tmp_path, toy_root):
    from bestie_d2.data.mappers import BestieDatasetMapper
    from bestie_d2.tools import visualize
    from bestie_d2.utils.cli import setup_cfg
    from bestie_d2.visualization.training_sample import NUM_PANELS, render_training_sample
    from detectron2.data import DatasetCatalog

    out = str(tmp_path / "vis_point")
    paths = visualize.main(["--config-file", CFG_POINT, "--output", out, "--num", "1", "--panel-size", "0",
                            "BESTIE.DATA.WSSS_DIR", cue_dirs["wsss"]] + DS_OPTS)
    assert len(paths) == 1
    crop = 128  # configs/toy: BESTIE.INPUT.CROP_SIZE
    assert _read_rgb(paths[0]).shape[1] == NUM_PANELS * crop + (NUM_PANELS + 1) * PAD

    # the semantic panel shows the mapper's sem_seg in the class colours
    cfg = setup_cfg(CFG_POINT, ["BESTIE.DATA.WSSS_DIR", cue_dirs["wsss"]])
    mapper = BestieDatasetMapper(cfg, is_train=True)
    mapper.rng = np.random.default_rng(0)
    sample = mapper(DatasetCatalog.get("test_toy_train")[1])
    grid = render_training_sample(sample, class_names=["a", "b", "c", "d", "e"], panel_size=0)
    assert grid.shape[1] == NUM_PANELS * crop + (NUM_PANELS + 1) * PAD
    sem_panel = grid[-PAD - crop:-PAD, 2 * PAD + crop:2 * PAD + 2 * crop]
    np.testing.assert_array_equal(sem_panel, vis.colorize_semantic(sample["sem_seg"]))


def test_visualize_errors(cue_dirs, tmp_path, capsys):
    from bestie_d2.tools import visualize

    base = ["--config-file", CFG_IMAGE, "--output", str(tmp_path / "o"), "--num", "1"]
    with pytest.raises(SystemExit) as e:
        visualize.main(base + ["--dataset", "test_toy_trian"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'test_toy_trian' is not registered" in err and "test_toy_train" in err

    os.makedirs(cue_dirs["empty"], exist_ok=True)
    with pytest.raises(SystemExit) as e:
        visualize.main(base + ["--dataset", "test_toy_train", "BESTIE.DATA.PEAK_POINTS_DIR", cue_dirs["empty"],
                               "BESTIE.DATA.WSSS_DIR", cue_dirs["wsss"]])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "toy_train_000000" in err and os.path.join(cue_dirs["empty"], "toy_train_000000.txt") in err
    assert "PEAK_POINTS_DIR" in err and "extract_cues" in err

    with pytest.raises(SystemExit) as e:
        visualize.main(base + ["--dataset", "test_toy_train", "--index", "99"])
    assert e.value.code == 2 and "out of range" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


def test_split_config_opts():
    from bestie_d2.utils.cli import split_config_opts

    assert split_config_opts(["--index", "3", "17", "MODEL.WEIGHTS", "w.pth", "SEED", "1"]) == (
        ["--index", "3", "17"], ["MODEL.WEIGHTS", "w.pth", "SEED", "1"])
    assert split_config_opts(["--output", "OUT.DIR", "--num", "2"]) == (["--output", "OUT.DIR", "--num", "2"], [])


# ------------------------------------------------------------------------------------------------
# demo grid and pseudo labels
# ------------------------------------------------------------------------------------------------
def test_pseudo_label_instances(cue_dirs):
    from bestie_d2.utils.cli import setup_cfg
    from bestie_d2.visualization.pseudo_labels import pseudo_label_instances
    from detectron2.data import DatasetCatalog

    cfg = setup_cfg(CFG_IMAGE, [])
    n_total = 0
    for rec in DatasetCatalog.get("test_toy_train")[:4]:
        pl = pseudo_label_instances(cfg, rec, wsss_dir=cue_dirs["wsss"], cues_dir=cue_dirs["cues"])
        inst, sem, pts = pl["instances"], pl["sem"], pl["points"]
        assert inst.shape == (rec["height"], rec["width"])
        assert (pts[:, 2] >= 0).all() and len(pts) == len(open(rec["center_points_file"]).read().split("\n")) - 1
        for k, c in enumerate(pl["classes"], start=1):
            region = inst == k
            assert region.sum() >= cfg.BESTIE.INPUT.MIN_INSTANCE_AREA
            assert (sem[region] == c + 1).all()
            inside = region[pts[:, 0], pts[:, 1]] & (pts[:, 2] == c)
            assert inside.sum() == 1  # exactly one cue of its class
        n_total += len(pl["classes"])
    assert n_total > 0


def test_demo_grid(cue_dirs, tmp_path):
    from bestie_d2.visualization.demo_grid import demo_grid

    cfg, model = _tiny_model()
    model.train()
    path = str(tmp_path / "grid.png")
    out = demo_grid(cfg, model, "test_toy_val", path, num_images=2, train_dataset="test_toy_train",
                    wsss_dir=cue_dirs["wsss"], cues_dir=cue_dirs["cues"], num_train_images=1, panel_size=64)
    assert out == path
    img = _read_rgb(path)
    assert img.shape[1] == 5 * 64 + 6 * PAD
    assert img.shape[0] > 3 * 64  # 3 image rows + 2 banners
    assert model.training and model.return_maps is False  # restored

    # a train row whose WSSS map is missing still draws (with a note)
    path2 = str(tmp_path / "grid2.png")
    demo_grid(cfg, model, "test_toy_val", path2, num_images=0, train_dataset="test_toy_train",
              wsss_dir=cue_dirs["empty"], cues_dir=None, num_train_images=1, panel_size=48)
    assert _read_rgb(path2).shape[1] == 5 * 48 + 6 * PAD


# ------------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory):
    from bestie_d2.engine.checkpoint import SafeCheckpointer

    d = tmp_path_factory.mktemp("weights")
    _, model = _tiny_model()
    SafeCheckpointer(model, save_dir=str(d)).save("model_tiny")
    return str(d / "model_tiny.pth")


def test_predict_folder(toy_root, trained_weights, tmp_path):
    import pycocotools.mask as mask_util
    from pycocotools.coco import COCO

    from bestie_d2.tools import predict

    src = tmp_path / "images"
    src.mkdir()
    ids = ["toy_val_000000", "toy_val_000001", "toy_val_000002"]
    for i in ids:
        shutil.copy(os.path.join(toy_root, "JPEGImages", i + ".jpg"), src / (i + ".jpg"))
    (src / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "pred"
    summary = predict.main(["--config-file", CFG_IMAGE, "--input", str(src), "--output", str(out),
                            "--score-threshold", "0", "MODEL.WEIGHTS", trained_weights,
                            "MODEL.BESTIE.TEST.MIN_AREA", "5"] + DS_OPTS)
    assert summary["images"] == 4 and summary["predicted"] == 3 and summary["skipped"] == 1
    assert sorted(os.listdir(out / "overlays")) == [i + ".png" for i in ids]
    assert sorted(os.listdir(out)) == ["overlays", "predictions.json"]  # no temporary files left
    with open(out / "predictions.json") as f:
        res = json.load(f)
    assert len(res) == summary["instances"] > 0
    for r in res:
        assert r["image_id"] in ids and r["file_name"] == r["image_id"] + ".jpg"
        assert isinstance(r["segmentation"]["counts"], str) and 1 <= r["category_id"] <= 5
        assert len(r["bbox"]) == 4 and 0.0 <= r["score"] <= 1.0
        m = mask_util.decode(r["segmentation"])
        img = cv2.imread(str(src / r["file_name"]))
        assert m.shape == img.shape[:2] and m.sum() == r["area"] >= 5
    gt = COCO(os.path.join(toy_root, "annotations", "instances_val.json"))
    dt = gt.loadRes(str(out / "predictions.json"))
    assert len(dt.getAnnIds()) == len(res)

    # the same run with a glob and flip TTA; a threshold above every score leaves an empty list
    out2 = tmp_path / "pred2"
    s2 = predict.main(["--config-file", CFG_IMAGE, "--input", str(src / "toy_val_00000[01].jpg"),
                       "--output", str(out2), "--flip", "--score-threshold", "1.01", "--no-overlays",
                       "MODEL.WEIGHTS", trained_weights] + DS_OPTS)
    assert s2["predicted"] == 2 and s2["instances"] == 0 and not os.path.exists(out2 / "overlays")
    assert json.loads((out2 / "predictions.json").read_text()) == []


def test_predict_console_script_exit_status_and_file_modes(toy_root, trained_weights, tmp_path):
    """Issue 16: the installed bestie-predict exits 0 after a successful run (its target used to
    return the summary dict, which the wrapper prints and turns into status 1), and the json and
    overlays get the usual file mode (0644 under umask 022; the atomic writer left 0600)."""
    import subprocess
    import sys

    src = tmp_path / "images"
    src.mkdir()
    shutil.copy(os.path.join(toy_root, "JPEGImages", "toy_val_000000.jpg"), src / "a.jpg")
    out = tmp_path / "pred"
    script = os.path.join(os.path.dirname(sys.executable), "bestie-predict")
    old = os.umask(0o022)  # inherited by the child
    try:
        p = subprocess.run([script, "--config-file", CFG_IMAGE, "--input", str(src), "--output", str(out),
                            "--score-threshold", "0", "MODEL.WEIGHTS", trained_weights],
                           capture_output=True, text=True, timeout=scaled_timeout(300))
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr[-2000:]
    for f in (out / "predictions.json", out / "overlays" / "a.png"):
        assert oct(os.stat(f).st_mode & 0o777) == oct(0o644), f


def test_predict_errors(trained_weights, tmp_path, capsys):
    from bestie_d2.tools import predict

    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--config-file", CFG_IMAGE, "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        predict.main(base + ["--input", str(empty), "MODEL.WEIGHTS", trained_weights])
    assert e.value.code == 2 and "no images found" in capsys.readouterr().err

    (empty / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SystemExit) as e:
        predict.main(base + ["--input", str(empty), "MODEL.WEIGHTS", str(tmp_path / "missing.pth")])
    assert e.value.code == 2 and "weights file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        predict.main(base + ["--input", str(empty)])
    assert e.value.code == 2 and "MODEL.WEIGHTS is empty" in capsys.readouterr().err

    with pytest.raises(SystemExit) as e:
        predict.main(base + ["--input", str(empty), "MODEL.WEIGHTS", trained_weights] + DS_OPTS)
    assert e.value.code == 1 and "could be read" in capsys.readouterr().err

"""The data check and the one WSSS reader (issue 16, items 2-3).

Each wrong-convention / bad-map case is checked through training (the mapper on one sample, and
the up-front check that ``Trainer.build_train_loader`` runs) and through the data check
(``check_training_inputs`` and the ``check_data`` tool): the error or warning must name the file
and the likely cause. Data: copies of the 16 toy training images with their GT class maps as WSSS
maps and their GT center points as point labels (the point route), which pass as they are.
"""
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import bestie_d2  # noqa: F401
from bestie_d2.config import load_config
from bestie_d2.data.datasets import read_label_map, write_label_map
from bestie_d2.utils.label_png import voc_colormap
from bestie_d2.data.errors import (
    BestieDataError,
    ClassIdError,
    DataCheckError,
    LabelConventionError,
    WSSSMapError,
)
from bestie_d2.data.input_check import check_training_inputs, label_convention_flags
from bestie_d2.data.mappers import BestieDatasetMapper
from bestie_d2.data.points import read_points, write_points
from bestie_d2.data.wsss import read_wsss_map
from detectron2.data import DatasetCatalog, MetadataCatalog

from repo_paths import REPO
CFG = os.path.join(REPO, "configs/toy/bestie_point_label.yaml")
C = 5


@pytest.fixture()
def data(toy_root, tmp_path):
    """16 records whose WSSS maps / point files are copies in tmp_path, registered as a data set."""
    for sub in ("wsss", "points"):
        os.makedirs(tmp_path / sub)
    records = [dict(r) for r in DatasetCatalog.get("test_toy_train")]
    for r in records:
        iid = r["image_id"]
        shutil.copy(os.path.join(toy_root, "SegmentationClass", f"{iid}.png"), tmp_path / "wsss" / f"{iid}.png")
        shutil.copy(os.path.join(toy_root, "Center_points", f"{iid}.txt"), tmp_path / "points" / f"{iid}.txt")
    name = f"test_data_check_{tmp_path.name}"
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(thing_classes=list(MetadataCatalog.get("test_toy_train").thing_classes),
                                  evaluator_type="voc_instance")
    opts = ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
            "BESTIE.DATA.WSSS_DIR", str(tmp_path / "wsss"), "BESTIE.DATA.CENTER_POINTS_DIR", str(tmp_path / "points"),
            "OUTPUT_DIR", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0"]
    yield {"records": records, "tmp": tmp_path, "name": name, "opts": opts,
           "wsss": lambda iid: tmp_path / "wsss" / f"{iid}.png",
           "points": lambda iid: tmp_path / "points" / f"{iid}.txt"}
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _cfg(data, *extra):
    return load_config(CFG, data["opts"] + list(extra))


def _mapper(data, *extra):
    return BestieDatasetMapper(_cfg(data, *extra), is_train=True)


def _check(data, *extra, **kw):
    cfg = _cfg(data, *extra)
    d = cfg.BESTIE.DATA
    return check_training_inputs({data["name"]: data["records"]}, BestieDatasetMapper(cfg, is_train=True),
                                 d.MISSING_INPUT, check=d.CHECK_INPUTS,
                                 max_mismatch_fraction=d.MAX_LABEL_MISMATCH_FRACTION,
                                 max_outside_fraction=d.MAX_CUES_OUTSIDE_FRACTION, **kw)


def _train_loader_error(data, exc=BestieDataError, *extra):
    """The up-front check at the start of training (Trainer.build_train_loader)."""
    from bestie_d2.engine.trainer import Trainer

    with pytest.raises(exc) as e:
        Trainer.build_train_loader(_cfg(data, *extra))
    return str(e.value)


def _check_data_tool(data, capsys, *extra):
    """The check_data tool: (exit status, stderr)."""
    from bestie_d2.tools import check_data

    # the tool configures the "bestie_d2" logger (a handler on the captured stdout, no
    # propagation): undo that so later tests' caplog still sees bestie_d2's records
    lg = logging.getLogger("bestie_d2")
    saved = (list(lg.handlers), lg.propagate, lg.level)
    try:
        check_data.main(["--config-file", CFG] + data["opts"] + list(extra))
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        lg.handlers[:] = saved[0]
        lg.propagate, lg.level = saved[1], saved[2]
    cap = capsys.readouterr()
    return code, cap.err + cap.out


def _shift_points(data, delta, records=None):
    for r in records or data["records"]:
        p = data["points"](r["image_id"])
        pts = read_points(p, C + 1)  # allow the shifted class C
        pts[:, 2] += delta
        write_points(p, pts)


def test_clean_copies_pass(data, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="bestie_d2"):
        kept = _check(data)
    assert len(kept) == 16 and not caplog.records
    code, out = _check_data_tool(data, capsys)
    assert code == 0 and "OK: 16 of 16" in out


# ------------------------------------------------------------------------------------------------
# 1-based class ids in the point files
# ------------------------------------------------------------------------------------------------
def test_one_based_points(data, capsys, caplog):
    recs = data["records"]
    in_range = [r for r in recs if max(r["image_label"]) < C - 1]  # c+1 stays a valid class id
    top = [r for r in recs if max(r["image_label"]) == C - 1]
    assert in_range and top
    _shift_points(data, +1)
    # data check: the files whose class became C are invalid (hint), the others disagree with the labels
    with pytest.raises(DataCheckError) as e:
        _check(data)
    msg = str(e.value)
    assert "1-based class ids?" in msg
    assert str(data["points"](top[0]["image_id"])) in msg and "line" in msg
    assert "most cues have classes absent from the image label" in msg
    assert any(str(data["points"](r["image_id"])) in msg for r in in_range)
    # only shifted files that stay in range: a pure class-convention error
    _shift_points(data, -1, top)
    with pytest.raises(LabelConventionError) as e:
        _check(data)
    msg = str(e.value)
    assert "1-based class ids in the cue/point files?" in msg and str(data["points"](in_range[0]["image_id"])) in msg
    assert "of 16 images" in msg
    # training: the up-front check stops it ...
    msg = _train_loader_error(data, LabelConventionError)
    assert "1-based class ids" in msg and data["name"] in msg
    assert os.path.isfile(data["tmp"] / "out" / "data_check_problems.txt")
    # ... and the mapper warns on the sample (once per process), naming the file and the cause
    mapper = _mapper(data)
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.mappers"):
        mapper(in_range[0])
        mapper(in_range[1])
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "bestie_d2.data.mappers" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(data["points"](in_range[0]["image_id"])) in warnings[0] and "1-based class ids" in warnings[0]
    # the check_data tool
    code, out = _check_data_tool(data, capsys)
    assert code == 1 and "1-based class ids" in out and str(data["points"](in_range[0]["image_id"])) in out


def test_one_based_points_below_threshold_warn(data, caplog):
    r = next(r for r in data["records"] if max(r["image_label"]) < C - 1)
    _shift_points(data, +1, [r])  # 1 of 16 images = 6.25 %
    with pytest.raises(LabelConventionError):
        _check(data)
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.input_check"):
        kept = _check(data, "BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION", "0.1")
    assert len(kept) == 16
    assert "1-based class ids" in caplog.text and str(data["points"](r["image_id"])) in caplog.text


def test_one_based_points_with_the_shifted_class_in_the_image(data, capsys):
    """Issue 21, item 2: (bus, bus, car) written 1-based as 6 6 7 in an image labelled {bus, car}:
    only one cue's class (7) is absent from the label, so the label test passes; the cues then
    lie in the regions of their class minus one. Named "1-based class ids?" and an error at 1 of
    16 images (it was a "cues outside their regions" warning, so training ran on wrong classes)."""
    r = data["records"][4]
    r["image_label"] = [1, 2]  # 0-based: two objects of class 1, one of class 2 (bus, bus, car)
    sem = np.zeros((r["height"], r["width"]), np.uint8)
    sem[5:25, 5:25] = 2
    sem[5:25, 40:60] = 2
    sem[40:60, 5:25] = 3
    write_label_map(str(data["wsss"](r["image_id"])), sem)
    write_points(str(data["points"](r["image_id"])), np.array([[15, 15, 2, 1.0], [50, 15, 2, 1.0], [15, 50, 3, 1.0]],
                                                              np.float32))  # 1-based classes
    flags = label_convention_flags(read_points(data["points"](r["image_id"]), C), sem, r["image_label"])
    assert flags == {"cue_shift": {"cues": 3, "in_shifted_region": 3, "in_own_region": 0}}
    with pytest.raises(LabelConventionError) as e:
        _check(data)
    msg = str(e.value)
    assert "1-based class ids?" in msg and str(data["points"](r["image_id"])) in msg and "1 of 16 images" in msg
    assert "lie in the WSSS region of the class one below theirs" in msg
    assert "no kept cue lies in the WSSS region" not in msg  # not the coordinates diagnosis
    code, out = _check_data_tool(data, capsys)
    assert code == 1 and "1-based class ids?" in out


def test_class_out_of_range_hint_in_points_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("1 1 0 1.0\n2 2 5 1.0\n")
    with pytest.raises(ClassIdError) as e:
        read_points(p, 5)
    assert str(p) in str(e.value) and "line 2" in str(e.value) and "1-based class ids?" in str(e.value)


# ------------------------------------------------------------------------------------------------
# 0-based WSSS maps (no background shift)
# ------------------------------------------------------------------------------------------------
def _zero_based_maps(data):
    for r in data["records"]:
        p = data["wsss"](r["image_id"])
        sem = read_label_map(p)
        fg = (sem > 0) & (sem < 255)
        sem[fg] -= 1
        write_label_map(p, sem)


def test_zero_based_wsss(data, capsys, caplog):
    _zero_based_maps(data)
    with pytest.raises(LabelConventionError) as e:
        _check(data)
    msg = str(e.value)
    assert "0-based class values in the WSSS maps (no background shift)?" in msg
    assert "most of the WSSS foreground has classes absent from the image label" in msg
    flagged = [r for r in data["records"] if str(data["wsss"](r["image_id"])) in msg]
    assert flagged
    msg = _train_loader_error(data, LabelConventionError)
    assert "0-based class values" in msg
    mapper = _mapper(data)
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.mappers"):
        mapper(flagged[0])
    assert str(data["wsss"](flagged[0]["image_id"])) in caplog.text and "0-based class values" in caplog.text
    code, out = _check_data_tool(data, capsys)
    assert code == 1 and "0-based class values" in out


def test_cues_outside_their_regions(data):
    """x/y swapped on square-enough toy images keeps points inside but off their objects."""
    for r in data["records"]:
        p = data["points"](r["image_id"])
        pts = read_points(p, C)
        pts[:, :2] = np.minimum(pts[:, [1, 0]], [r["width"] - 1, r["height"] - 1])
        pts[:, :2] = (pts[:, :2] + 37) % [r["width"], r["height"]]  # move them off the objects
        write_points(p, pts)
    with pytest.raises(LabelConventionError) as e:
        _check(data)
    assert "no kept cue lies in the WSSS region of its class" in str(e.value)
    assert "x/y swapped" in str(e.value) and "MAX_CUES_OUTSIDE_FRACTION=0.3" in str(e.value)
    assert _check(data, "BESTIE.DATA.MAX_CUES_OUTSIDE_FRACTION", "1.0")  # a warning only


def test_label_convention_flags_unit():
    sem = np.zeros((10, 10), np.uint8)
    sem[2:6, 2:6] = 3  # class 2
    pts = np.array([[3, 3, 2, 1.0]], np.float32)
    assert label_convention_flags(pts, sem, [2]) == {}
    assert label_convention_flags(pts, sem, []) == {}  # nothing to compare with
    one_based = label_convention_flags(pts + [0, 0, 1, 0], sem, [2])
    assert one_based["cue_class"] == {"classes": [3], "shift": 1.0}
    zero_based = label_convention_flags(pts, sem - (sem > 0), [2])  # values 2 = class 1
    assert zero_based["wsss_class"] == {"values": [2], "shift": 1.0}
    outside = label_convention_flags(np.array([[8, 8, 2, 1.0]], np.float32), sem, [2])
    assert outside == {"cues_outside": {"cues": 1}}
    # both classes in the image: the cues of a 1-based file lie in the regions of c - 1
    sem2 = sem.copy()
    sem2[6:9, 6:9] = 2  # an object of class 1 next to the one of class 2
    right = np.array([[3, 3, 2, 1.0], [7, 7, 1, 1.0]], np.float32)
    assert label_convention_flags(right, sem2, [1, 2]) == {}
    one_based_both = label_convention_flags(right + [0, 0, 1, 0], sem2, [1, 2])  # class 3: 1 of 2 absent
    assert one_based_both == {"cue_shift": {"cues": 2, "in_shifted_region": 2, "in_own_region": 0}}
    # a cue below the confidence threshold does not count; a few stray WSSS pixels do not flag
    assert label_convention_flags(np.array([[8, 8, 2, 0.5]], np.float32), sem, [2], 0.7) == {}
    sem[0, 0] = 5
    assert label_convention_flags(pts, sem, [2]) == {}


# ------------------------------------------------------------------------------------------------
# WSSS value out of range; RGB maps
# ------------------------------------------------------------------------------------------------
def test_wsss_value_out_of_range(data, capsys):
    r = data["records"][3]
    p = data["wsss"](r["image_id"])
    sem = read_label_map(p)
    sem[:4, :4] = 30
    write_label_map(p, sem)
    with pytest.raises(ClassIdError) as e:  # training: the mapper (not an IndexError in the loss)
        _mapper(data)(r)
    msg = str(e.value)
    assert str(p) in msg and "30" in msg and "1..5" in msg and "Likely cause" in msg
    with pytest.raises(DataCheckError) as e:
        _check(data)
    assert str(p) in str(e.value) and "out of range" in str(e.value)
    msg = _train_loader_error(data, DataCheckError)
    assert str(p) in msg
    code, out = _check_data_tool(data, capsys)
    assert code == 1 and str(p) in out
    # the visualize tool reads it with the same reader
    from bestie_d2.visualization.pseudo_labels import pseudo_label_instances

    with pytest.raises(ClassIdError, match="out of range"):
        pseudo_label_instances(_cfg(data), r)


def test_rgb_wsss_in_the_voc_palette_is_mapped_back(data, caplog):
    r = data["records"][2]
    p = data["wsss"](r["image_id"])
    sem = read_label_map(p)
    mapper = _mapper(data)
    mapper.rng = np.random.default_rng(0)
    ref = mapper(r)
    Image.fromarray(voc_colormap()[sem]).save(p)  # RGB, VOC palette colours
    assert Image.open(p).mode == "RGB"
    with caplog.at_level(logging.WARNING, logger="bestie_d2"):
        np.testing.assert_array_equal(read_wsss_map(p, C), sem)
        mapper.rng = np.random.default_rng(0)
        out = mapper(r)
        assert len(_check(data)) == 16
    np.testing.assert_array_equal(out["sem_seg"].numpy(), ref["sem_seg"].numpy())
    assert "1 of 16 WSSS maps" in caplog.text and "VOC palette" in caplog.text


def test_rgb_wsss_with_other_colours_is_refused(data, capsys):
    r = data["records"][5]
    p = data["wsss"](r["image_id"])
    rgb = voc_colormap()[read_label_map(p)]
    rgb[0, 0] = (10, 200, 30)
    Image.fromarray(rgb).save(p)
    with pytest.raises(WSSSMapError) as e:
        _mapper(data)(r)
    assert str(p) in str(e.value) and "RGB(10, 200, 30) is not a VOC palette colour" in str(e.value)
    with pytest.raises(DataCheckError) as e:
        _check(data)
    assert str(p) in str(e.value) and "not a VOC palette colour" in str(e.value)
    assert str(p) in _train_loader_error(data, DataCheckError)
    code, out = _check_data_tool(data, capsys)
    assert code == 1 and "not a VOC palette colour" in out


def test_wsss_mode_and_size(tmp_path):
    p = tmp_path / "m.png"
    Image.fromarray(np.zeros((4, 6, 2), np.uint8), mode="LA").save(p)
    with pytest.raises(WSSSMapError, match="unsupported image mode 'LA'"):
        read_wsss_map(p, C)
    write_label_map(p, np.zeros((4, 6), np.uint8))
    with pytest.raises(BestieDataError) as e:
        read_wsss_map(p, C, image_size=(4, 7), image_path="img.jpg")
    assert str(p) in str(e.value) and "6x4" in str(e.value) and "img.jpg" in str(e.value)
    Image.fromarray(np.full((4, 6), 2, np.uint16)).save(p)  # 16-bit grey: values are read
    assert read_wsss_map(p, C).max() == 2 and read_wsss_map(p, C).dtype == np.uint8


# ------------------------------------------------------------------------------------------------
# all bad files in one error
# ------------------------------------------------------------------------------------------------
def test_all_bad_files_listed_in_one_error(data):
    recs = data["records"]
    with open(data["points"](recs[0]["image_id"]), "a") as f:
        f.write("1 2 3\n")
    n1 = len(open(data["points"](recs[0]["image_id"])).read().splitlines())
    with open(data["points"](recs[1]["image_id"]), "w") as f:
        f.write("1 1 0 1.0\n1 1 0 1.0\nnan 1 0 1.0\n")
    open(data["wsss"](recs[2]["image_id"]), "wb").write(b"\x89PNG broken")
    os.remove(data["wsss"](recs[3]["image_id"]))
    report = str(data["tmp"] / "report.txt")
    with pytest.raises(DataCheckError) as e:
        _check(data, report_file=report)
    msg = str(e.value)
    assert f"{data['points'](recs[0]['image_id'])}, line {n1}" in msg
    assert f"{data['points'](recs[1]['image_id'])}, line 3" in msg
    assert str(data["wsss"](recs[2]["image_id"])) in msg
    assert "1 of 16 images" in msg and str(data["wsss"](recs[3]["image_id"])) in msg
    assert "3 input files" in msg and len(e.value.problems) == 4
    assert len(open(report).read().splitlines()) == 4 and report in msg
    # 'skip' drops the record with a missing file, but bad files stay an error
    with pytest.raises(DataCheckError):
        _check(data, "BESTIE.DATA.MISSING_INPUT", "skip")
    # "exists" only looks for the files
    kept = _check(data, "BESTIE.DATA.MISSING_INPUT", "skip", "BESTIE.DATA.CHECK_INPUTS", "exists")
    assert len(kept) == 15


# ------------------------------------------------------------------------------------------------
# Issue 21, item 1: a VOC-layout root with many kinds of bad files, a missing image among them
# ------------------------------------------------------------------------------------------------
def _voc_root_copy(toy_root, tmp_path, n=6):
    """The first ``n`` toy train images in the VOC layout under ``tmp_path`` (WSSS maps = copies of
    ``SegmentationClass``, as a user without a WSSS method would try), registered by name."""
    from bestie_d2.data.datasets import register_voc_layout
    from bestie_d2.data.toy import TOY_CLASSES

    recs = DatasetCatalog.get("test_toy_train")[:n]
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Center_points", "WSSS_maps",
                "ImageSets/Segmentation", "cls_labels"):
        os.makedirs(root / sub)
    for r in recs:
        i = r["image_id"]
        shutil.copy(r["file_name"], root / "JPEGImages" / f"{i}.jpg")
        for sub in ("SegmentationClass", "SegmentationObject"):
            shutil.copy(os.path.join(toy_root, sub, f"{i}.png"), root / sub / f"{i}.png")
        shutil.copy(os.path.join(toy_root, "SegmentationClass", f"{i}.png"), root / "WSSS_maps" / f"{i}.png")
        shutil.copy(os.path.join(toy_root, "Center_points", f"{i}.txt"), root / "Center_points" / f"{i}.txt")
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(r["image_id"] + "\n" for r in recs))
    (root / "cls_labels/train_cls.txt").write_text(
        "".join(r["image_id"] + " " + " ".join(map(str, r["image_label"])) + "\n" for r in recs))
    name = f"test_voc_root_{tmp_path.name}"
    register_voc_layout(name, str(root), "ImageSets/Segmentation/train.txt", "cls_labels/train_cls.txt",
                        TOY_CLASSES, overwrite=True)
    return name, root, recs


def test_every_problem_of_a_root_listed_in_one_run_and_skip_drops_the_missing_image(toy_root, tmp_path, capsys,
                                                                                      caplog):
    name, root, recs = _voc_root_copy(toy_root, tmp_path)
    ids = [r["image_id"] for r in recs]
    shifted = next(i for i, r in enumerate(recs) if i >= 4 and max(r["image_label"]) < C - 1)
    os.remove(root / "JPEGImages" / f"{ids[0]}.jpg")  # 1. a missing image
    os.remove(root / "WSSS_maps" / f"{ids[1]}.png")  # 2. a missing WSSS map
    with open(root / "Center_points" / f"{ids[2]}.txt", "a") as f:  # 3. a malformed cue line
        f.write("1 2 3\n")
    sem = read_label_map(root / "WSSS_maps" / f"{ids[3]}.png")
    sem[:4, :4] = 30  # 4. a WSSS value out of range
    write_label_map(str(root / "WSSS_maps" / f"{ids[3]}.png"), sem)
    pts = read_points(root / "Center_points" / f"{ids[shifted]}.txt", C)
    pts[:, 2] += 1  # 5. 1-based classes
    write_points(str(root / "Center_points" / f"{ids[shifted]}.txt"), pts)
    other = next(i for i in range(4, len(recs)) if i != shifted)
    small = read_label_map(root / "WSSS_maps" / f"{ids[other]}.png")[:-3]  # 6. a map of another size
    write_label_map(str(root / "WSSS_maps" / f"{ids[other]}.png"), small)
    opts = ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out")]
    code, out = _check_data_tool({"opts": opts}, capsys)
    assert code == 1
    for must in (f"{ids[0]}: image {root / 'JPEGImages' / ids[0]}.jpg", f"{ids[1]}: WSSS map",
                 f"{root / 'Center_points' / ids[2]}.txt, line", f"{root / 'WSSS_maps' / ids[3]}.png",
                 "1-based class ids", f"{root / 'Center_points' / ids[shifted]}.txt",
                 f"{root / 'WSSS_maps' / ids[other]}.png"):
        assert must in out, (must, out)
    assert "2 of 6 images" in out and "3 input files" in out
    # the same through the start of training
    from bestie_d2.engine.trainer import Trainer

    with pytest.raises(DataCheckError) as e:
        Trainer.build_train_loader(load_config(CFG, opts))
    assert f"{ids[0]}.jpg" in str(e.value) and "1-based class ids" in str(e.value)
    # the other files repaired: 'skip' drops the missing image (and the one without a WSSS map), counted
    shutil.copy(os.path.join(toy_root, "SegmentationClass", f"{ids[1]}.png"), root / "WSSS_maps" / f"{ids[1]}.png")
    shutil.copy(os.path.join(toy_root, "Center_points", f"{ids[2]}.txt"), root / "Center_points" / f"{ids[2]}.txt")
    for i in (3, other):
        shutil.copy(os.path.join(toy_root, "SegmentationClass", f"{ids[i]}.png"), root / "WSSS_maps" / f"{ids[i]}.png")
    shutil.copy(os.path.join(toy_root, "Center_points", f"{ids[shifted]}.txt"),
                root / "Center_points" / f"{ids[shifted]}.txt")
    code, out = _check_data_tool({"opts": opts}, capsys)
    assert code == 1 and f"{ids[0]}.jpg" in out and "MISSING_INPUT skip" in out and "Restore the missing images" in out
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.input_check"):
        code, out = _check_data_tool({"opts": opts + ["BESTIE.DATA.MISSING_INPUT", "skip"]}, capsys)
    assert code == 0 and "OK: 5 of 6 training images" in out
    assert "Skipped 1 of 6 images" in caplog.text + out and f"{ids[0]}.jpg" in caplog.text + out


def test_steps_that_read_only_images_list_every_missing_one(toy_root, tmp_path, caplog):
    """Evaluation, the PAM classifier, the CAM tools and the export read only the images: every
    missing one in one error before any worker starts (evaluation never skips), or skipped with a
    count (``BESTIE.DATA.MISSING_INPUT skip``)."""
    from bestie_d2.data.errors import MissingDataError
    from bestie_d2.data.input_check import check_images
    from bestie_d2.engine.trainer import Trainer

    name, root, recs = _voc_root_copy(toy_root, tmp_path)
    for r in recs[1:3]:
        os.remove(root / "JPEGImages" / f"{r['image_id']}.jpg")
    cfg = load_config(CFG, ["DATASETS.TEST", f"('{name}',)", "DATALOADER.NUM_WORKERS", "0"])
    with pytest.raises(MissingDataError) as e:
        Trainer.build_test_loader(cfg, name)
    assert all(f"{r['image_id']}.jpg" in str(e.value) for r in recs[1:3]) and "2 of 6 images" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.input_check"):
        kept = check_images(DatasetCatalog.get(name), "skip", [name])
    assert [r["image_id"] for r in kept] == [recs[0]["image_id"]] + [r["image_id"] for r in recs[3:]]
    assert "Skipped 2 of 6 images" in caplog.text
    pam = load_config(os.path.join(REPO, "configs/toy/pam.yaml"), ["DATASETS.TRAIN", f"('{name}',)",
                                                                   "DATALOADER.NUM_WORKERS", "0"])
    with pytest.raises(MissingDataError, match="2 of 6 images"):
        Trainer.build_train_loader(pam)

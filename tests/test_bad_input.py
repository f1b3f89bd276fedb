"""Corrupted inputs: each gives a clear error naming the file (and line), or a documented,
logged skip (issue 8)."""
import logging
import os
import shutil

import numpy as np
import pytest

import bestie_d2  # noqa: F401
from bestie_d2.data.errors import BestieDataError, MissingDataError
from bestie_d2.data.input_check import check_training_inputs
from bestie_d2.data.mappers import BestieDatasetMapper
from detectron2.data import DatasetCatalog

from cfg_factory import new_bestie_cfg


@pytest.fixture()
def setup(toy_root, tmp_path):
    """A mapper (point route, GT class maps as simulated WSSS maps) and copies of 3 records whose
    files live in tmp_path, so each test can corrupt them."""
    cfg = new_bestie_cfg("configs/toy/bestie_point_label.yaml")
    cfg.BESTIE.DATA.WSSS_DIR = str(tmp_path / "wsss")
    cfg.BESTIE.DATA.CENTER_POINTS_DIR = str(tmp_path / "points")
    os.makedirs(tmp_path / "wsss")
    os.makedirs(tmp_path / "points")
    os.makedirs(tmp_path / "img")
    records = [dict(r) for r in DatasetCatalog.get("test_toy_train")[:3]]
    for r in records:
        iid = r["image_id"]
        shutil.copy(r["file_name"], tmp_path / "img" / f"{iid}.jpg")
        r["file_name"] = str(tmp_path / "img" / f"{iid}.jpg")
        shutil.copy(os.path.join(toy_root, "SegmentationClass", f"{iid}.png"), tmp_path / "wsss" / f"{iid}.png")
        shutil.copy(os.path.join(toy_root, "Center_points", f"{iid}.txt"), tmp_path / "points" / f"{iid}.txt")
    mapper = BestieDatasetMapper(cfg, is_train=True)
    mapper(records[0])  # sanity: the clean copy maps
    return mapper, records, tmp_path


def _err(mapper, record):
    with pytest.raises(BestieDataError) as e:
        mapper(record)
    return str(e.value)


def test_truncated_jpeg(setup):
    mapper, records, tmp = setup
    path = records[0]["file_name"]
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    msg = _err(mapper, records[0])
    assert records[0]["image_id"] in msg and path in msg


def test_unreadable_image_file(setup):
    mapper, records, tmp = setup
    open(records[1]["file_name"], "wb").write(b"this is not an image")
    msg = _err(mapper, records[1])
    assert records[1]["file_name"] in msg


def test_semantic_png_of_wrong_size(setup):
    import cv2

    mapper, records, tmp = setup
    wsss = tmp / "wsss" / f"{records[0]['image_id']}.png"
    cv2.imwrite(str(wsss), np.zeros((10, 12), np.uint8))
    msg = _err(mapper, records[0])
    assert str(wsss) in msg and "12x10" in msg


def test_corrupt_semantic_png(setup):
    mapper, records, tmp = setup
    wsss = tmp / "wsss" / f"{records[0]['image_id']}.png"
    open(wsss, "wb").write(b"\x89PNG garbage")
    msg = _err(mapper, records[0])
    assert str(wsss) in msg


@pytest.mark.parametrize(
    "line, words",
    [
        ("nan 5 0 1.0", ["line 2", "finite"]),
        ("-3 5 0 1.0", ["line 2"]),
        ("100000 5 0 1.0", ["line 2"]),
        ("5 5 17 1.0", ["line 2", "class"]),
        ("5 5 0", ["line 2"]),
    ],
)
def test_bad_cue_lines(setup, line, words):
    mapper, records, tmp = setup
    p = tmp / "points" / f"{records[2]['image_id']}.txt"
    first = open(p).read().splitlines()[0]
    open(p, "w").write(first + "\n" + line + "\n")
    msg = _err(mapper, records[2])
    assert str(p) in msg
    for w in words:
        assert w in msg.lower() or w in msg


def test_missing_inputs_error_or_logged_skip(setup, caplog):
    mapper, records, tmp = setup
    os.remove(tmp / "points" / f"{records[1]['image_id']}.txt")
    os.remove(tmp / "wsss" / f"{records[2]['image_id']}.png")
    with pytest.raises(MissingDataError) as e:
        check_training_inputs(records, mapper, "error", ["demo_set"])
    assert "2 of 3" in str(e.value) and records[1]["image_id"] in str(e.value)
    with caplog.at_level(logging.WARNING):
        kept = check_training_inputs(records, mapper, "skip", ["demo_set"])
    assert [r["image_id"] for r in kept] == [records[0]["image_id"]]
    assert "Skipped 2 of 3 images" in caplog.text
    os.remove(records[0]["file_name"])
    with pytest.raises(MissingDataError, match="nothing left"):
        check_training_inputs(records, mapper, "skip", ["demo_set"])


def test_empty_image_list_and_duplicate_ids(tmp_path):
    from bestie_d2.data.datasets import load_voc_instances
    from bestie_d2.data.errors import ListFileError

    root = tmp_path / "VOC"
    os.makedirs(root / "ImageSets" / "Segmentation")
    os.makedirs(root / "JPEGImages")
    lst = root / "ImageSets" / "Segmentation" / "train.txt"
    lst.write_text("")
    with pytest.raises(ListFileError) as e:
        load_voc_instances(str(root), "ImageSets/Segmentation/train.txt", with_gt=False)
    assert str(lst) in str(e.value)
    lst.write_text("a\nb\na\n")
    with pytest.raises(ListFileError) as e:
        load_voc_instances(str(root), "ImageSets/Segmentation/train.txt", with_gt=False)
    assert "line 3" in str(e.value) and str(lst) in str(e.value)

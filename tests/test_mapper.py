"""BESTIE augmentation (docs/method.md §1.2); BestieDatasetMapper on a tiny VOC-layout folder."""
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.data.errors import BestieDataError, ImageSizeMismatchError, MissingDataError
from bestie_d2.data.mappers import BestieDatasetMapper, inference_input, record_classes
from bestie_d2.data.transforms import (
    BestieAugmentation,
    PhotometricDistort,
    apply_to_points,
    bestie_resize_shape,
)

from cfg_factory import new_bestie_cfg

C = 20


# ------------------------------------------------------------------------------------------------
# transforms
# ------------------------------------------------------------------------------------------------
def test_resize_rule_examples():
    # (h, w) -> (new_h, new_w): 500x375 (WxH) -> 449x353, 500x333 -> 449x321
    assert bestie_resize_shape(375, 500) == (353, 449)
    assert bestie_resize_shape(333, 500) == (321, 449)
    assert bestie_resize_shape(500, 375) == (449, 353)
    assert bestie_resize_shape(90, 120) == (353, 449)
    assert bestie_resize_shape(500, 500) == (449, 449)
    # a side that would round up past the maximum goes down by the factor
    assert bestie_resize_shape(499, 500, long_side=449, factor=32) == (449, 449)
    for h, w in [(375, 500), (281, 500), (500, 312), (64, 37)]:
        nh, nw = bestie_resize_shape(h, w)
        assert (nh - 1) % 32 == 0 and (nw - 1) % 32 == 0 and max(nh, nw) == 449


def test_map_interpolation_modes():
    """``BESTIE.INPUT.MAP_INTERPOLATION`` (issue 21, item 14): the row 0..6 resized to 6 px is
    0 1 2 4 5 6 with ``nearest_exact`` (the default, pixel centres aligned with the bilinear
    image) and 0 1 2 3 4 5 with the authors' ``nearest``."""
    from bestie_d2.data.transforms import CV2ResizeTransform, MAP_INTERPOLATIONS

    row = np.arange(7, dtype=np.uint8)[None].repeat(2, 0)
    got = {m: CV2ResizeTransform(2, 7, 2, 6, seg_interp=f).apply_segmentation(row)[0].tolist()
           for m, f in MAP_INTERPOLATIONS.items()}
    assert got == {"nearest_exact": [0, 1, 2, 4, 5, 6], "nearest": [0, 1, 2, 3, 4, 5]}
    cfg = new_bestie_cfg()
    assert cfg.BESTIE.INPUT.MAP_INTERPOLATION == "nearest_exact"
    sem = np.tile(np.arange(7, dtype=np.uint8), (7, 1))
    for mode in MAP_INTERPOLATIONS:
        cfg.BESTIE.INPUT.MAP_INTERPOLATION = mode
        aug = BestieAugmentation.from_config(cfg)
        assert aug.resize_transform(7, 7).apply_segmentation(sem).shape == bestie_resize_shape(7, 7, 449, 32)
        t = aug.resize_transform(449 * 2, 7 * 2)
        assert t.seg_interp == MAP_INTERPOLATIONS[mode]
    cfg.BESTIE.INPUT.MAP_INTERPOLATION = "linear"
    with pytest.raises(ValueError, match="MAP_INTERPOLATION"):
        BestieAugmentation.from_config(cfg)


def test_photometric_distort_deterministic_and_bounded():
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    pd = PhotometricDistort(16, (0.5, 1.5), 36)
    outs = [pd(img, np.random.default_rng(s)) for s in range(12)]
    assert all(o.dtype == np.uint8 and o.shape == img.shape for o in outs)
    np.testing.assert_array_equal(outs[3], pd(img, np.random.default_rng(3)))
    assert any(not np.array_equal(o, img) for o in outs)
    # zero-strength jitter (incl. an HSV round trip) leaves the image (almost) unchanged
    same = PhotometricDistort(0, (1.0, 1.0), 0)
    for s in range(4):
        assert np.abs(same(img, np.random.default_rng(s)).astype(int) - img).max() <= 1


def _block_sample(h=375, w=500):
    """A map of 4x5 blocks with labels 1..20 and one point per block, 15+ px inside it."""
    sem = np.zeros((h, w), np.uint8)
    pts = []
    bh, bw = h // 4, w // 5
    for i in range(4):
        for j in range(5):
            c = i * 5 + j
            sem[i * bh + 2 : (i + 1) * bh - 2, j * bw + 2 : (j + 1) * bw - 2] = c + 1
            for dy, dx in [(20, 20), (bh // 2, bw // 2), (bh - 22, bw - 22)]:
                pts.append([j * bw + dx, i * bh + dy, c, 1.0])
    return sem, np.asarray(pts, np.float32)


def test_augmentation_keeps_points_on_their_labels():
    sem, pts = _block_sample()
    img = np.repeat((sem * 10)[..., None], 3, axis=2).astype(np.uint8)
    aug = BestieAugmentation(photometric=False, pad_value=(0, 0, 0))
    flipped = padded = 0
    for seed in range(16):
        im, s, p, tf = aug(img, sem, pts, np.random.default_rng(seed))
        assert im.shape == (416, 416, 3) and im.dtype == np.uint8 and s.shape == (416, 416)
        assert im.flags.c_contiguous and s.flags.c_contiguous
        assert p.shape[1] == 4 and len(p) > 0
        assert np.all(p[:, :2] == np.trunc(p[:, :2]))
        x, y, c = p[:, 0].astype(int), p[:, 1].astype(int), p[:, 2].astype(int)
        assert np.all((x >= 0) & (x < 416) & (y >= 0) & (y < 416))
        np.testing.assert_array_equal(s[y, x], c + 1)  # every point still on its own label
        np.testing.assert_array_equal(im[y, x, 0], (c + 1) * 10)
        # image and map stay aligned: equal away from label borders
        k = np.ones((5, 5), np.uint8)
        interior = cv2.erode(s, k) == cv2.dilate(s, k)
        interior[:2], interior[-2:], interior[:, :2], interior[:, -2:] = False, False, False, False
        assert interior.mean() > 0.6
        np.testing.assert_array_equal(im[..., 0][interior], s[interior] * 10)
        names = [type(t).__name__ for t in tf.transforms]
        flipped += "HFlipTransform" in names
        padded += "ColorPadTransform" in names
    assert 0 < flipped < 16 and padded > 0


def test_points_outside_crop_dropped_and_flip_index():
    sem, pts = _block_sample()
    aug = BestieAugmentation(photometric=False, scales=(1.3,), flip=False)
    _, _, p, tf = aug(np.zeros(sem.shape + (3,), np.uint8), sem, pts, np.random.default_rng(0))
    assert 0 < len(p) < len(pts)  # 584x459 -> 416 crop loses some points
    from fvcore.transforms.transform import HFlipTransform

    np.testing.assert_array_equal(apply_to_points(HFlipTransform(10), [[0, 3], [9, 4]]),
                                  [[9, 3], [0, 4]])


def test_random_pad_values():
    sem = np.ones((40, 60), np.uint8)
    img = np.full((40, 60, 3), 7, np.uint8)
    aug = BestieAugmentation(photometric=False, resize_long=65, scales=(1.0,), crop_size=100,
                             pad_value=(123, 116, 103), flip=False)
    offsets = set()
    for seed in range(6):
        im, s, p, _ = aug(img, sem, np.zeros((0, 4)), np.random.default_rng(seed))
        assert im.shape == (100, 100, 3) and p.shape == (0, 4)
        fg = s == 1
        assert fg.sum() == 65 * 65 or fg.sum() == 65 * 33  # 40x60 -> 33x65 (h, w)
        np.testing.assert_array_equal(im[~fg], np.broadcast_to([123, 116, 103], im[~fg].shape))
        assert np.all(im[fg] == 7)
        offsets.add(tuple(np.argwhere(fg).min(0)))
    assert len(offsets) > 1  # the image is placed randomly inside the padding


# ------------------------------------------------------------------------------------------------
# mapper on a tiny VOC-layout folder
# ------------------------------------------------------------------------------------------------
H, W = 90, 120


def _write_palette_png(path, arr):
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "WSSS_maps", "Peak_points", "Center_points"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / "JPEGImages" / "2007_000001.jpg")
    sem = np.zeros((H, W), np.uint8)
    sem[10:50, 10:50] = 15  # person (class 14), one instance
    sem[55:85, 60:110] = 7  # car (class 6), two cues -> rejected in the image route
    _write_palette_png(root / "WSSS_maps" / "2007_000001.png", sem)
    (root / "Peak_points" / "2007_000001.txt").write_text(
        "30 30 14 0.950\n70 70 6 0.800\n100 80 6 0.900\n5 5 14 0.500\n"
    )
    (root / "Center_points" / "2007_000001.txt").write_text("29 31 14 1.000\n85 70 6 1.000\n")
    return root


def _record(root, image_id="2007_000001"):
    return {
        "file_name": str(root / "JPEGImages" / f"{image_id}.jpg"),
        "image_id": image_id,
        "height": H,
        "width": W,
        "image_label": [6, 14],
        "peak_points_file": str(root / "Peak_points" / f"{image_id}.txt"),
        "center_points_file": str(root / "Center_points" / f"{image_id}.txt"),
        "wsss_file": str(root / "WSSS_maps" / f"{image_id}.png"),
    }


def _cfg(supervision="image", root=None):
    cfg = new_bestie_cfg()
    cfg.BESTIE.SUPERVISION = supervision
    cfg.INPUT.FORMAT = "RGB"  # as configs/Base-BESTIE.yaml
    if root is not None:
        cfg.BESTIE.DATA.WSSS_DIR = str(root / "WSSS_maps")
        cfg.BESTIE.DATA.PEAK_POINTS_DIR = str(root / "Peak_points")
        cfg.BESTIE.DATA.CENTER_POINTS_DIR = str(root / "Center_points")
    return cfg


def _check_train_output(out, crop=416):
    assert set(out) == {"image", "sem_seg", "center", "offset", "weight", "points", "image_label",
                        "height", "width", "image_id", "file_name"}
    assert out["image"].shape == (3, crop, crop) and out["image"].dtype == torch.uint8
    assert out["sem_seg"].shape == (crop, crop) and out["sem_seg"].dtype == torch.long
    assert out["center"].shape == (C, crop, crop) and out["center"].dtype == torch.float32
    assert out["offset"].shape == (2, crop, crop) and out["offset"].dtype == torch.float32
    assert out["weight"].shape == (crop, crop) and out["weight"].dtype == torch.float32
    assert out["points"].ndim == 2 and out["points"].shape[1] == 3
    assert out["points"].dtype == torch.long
    assert out["image_label"].shape == (C,) and out["image_label"].dtype == torch.float32
    assert out["image_label"].nonzero().flatten().tolist() == [6, 14]
    assert (out["height"], out["width"], out["image_id"]) == (H, W, "2007_000001")
    assert set(out["sem_seg"].unique().tolist()) <= {0, 7, 15}


def test_mapper_image_route(voc_root):
    # scale fixed at 0.8: the whole resized image (359x270) fits inside the 416 crop
    cfg = _cfg("image", voc_root)
    cfg.BESTIE.INPUT.SCALES = [0.8]
    mapper = BestieDatasetMapper(cfg, is_train=True)
    assert mapper.augmentation.scales == (0.8,)
    mapper.rng = np.random.default_rng(0)
    out = mapper(_record(voc_root))
    _check_train_output(out)
    pts = out["points"].numpy()
    assert sorted(pts[:, 2].tolist()) == [6, 6, 14]  # the 0.5-confidence cue is filtered out
    y, x = pts[:, 0], pts[:, 1]
    assert np.all(out["sem_seg"].numpy()[y, x] == pts[:, 2] + 1)
    w = out["weight"].numpy()
    person = out["sem_seg"].numpy() == 15
    assert np.array_equal(w > 0, person)  # person accepted, car (two cues) rejected
    center = out["center"].numpy()
    assert center[14].max() == 1.0 and center[6].max() == 0
    cy, cx = np.unravel_index(center[14].argmax(), w.shape)
    off = out["offset"].numpy()
    yy, xx = np.nonzero(w)
    np.testing.assert_array_equal(yy + off[0, yy, xx], cy)
    np.testing.assert_array_equal(xx + off[1, yy, xx], cx)


def test_mapper_point_route_record_paths_and_defaults(voc_root):
    cfg = _cfg("point")  # no folders: the record's file paths are used
    mapper = BestieDatasetMapper(cfg, is_train=True)
    mapper.rng = np.random.default_rng(1)
    for _ in range(2):
        out = mapper(_record(voc_root))
        _check_train_output(out)
        pts = out["points"].numpy()
        center = out["center"].numpy()
        for y, x, c in pts:  # point route: Gaussians at the points
            assert center[c, y, x] == 1.0
        assert set(pts[:, 2].tolist()) <= {6, 14}
    # deterministic given the generator
    m2 = BestieDatasetMapper(cfg, is_train=True)
    m2.rng = np.random.default_rng(7)
    mapper.rng = np.random.default_rng(7)
    a, b = mapper(_record(voc_root)), m2(_record(voc_root))
    for k in ("image", "sem_seg", "center", "offset", "weight", "points"):
        assert torch.equal(a[k], b[k]), k
    pickle.loads(pickle.dumps(mapper))  # spawn-based data-loader workers


def test_mapper_test_mode(voc_root):
    mapper = BestieDatasetMapper(_cfg("image", voc_root), is_train=False)
    out = mapper(_record(voc_root))
    assert set(out) == {"image", "image_label", "height", "width", "image_id", "file_name"}
    assert out["image"].shape == (3, H, W) and out["image"].dtype == torch.uint8
    assert out["image_label"].nonzero().flatten().tolist() == [6, 14]
    # the record is not modified
    rec = _record(voc_root)
    mapper(rec)
    assert rec == _record(voc_root)


def test_inference_input_is_the_mappers_test_input(voc_root):
    """The one test-input path: an image array through inference_input gives the mapper's dict;
    without a record only the image and its size (or the given size)."""
    from detectron2.data import detection_utils as utils

    rec = _record(voc_root)
    out = BestieDatasetMapper(_cfg("image", voc_root), is_train=False)(rec)
    image = utils.read_image(rec["file_name"], format="RGB")
    label = np.zeros(C, np.float32)
    label[[6, 14]] = 1
    same = inference_input(image, label, image_id=rec["image_id"], file_name=rec["file_name"])
    assert list(same) == list(out)
    for k in out:
        assert torch.equal(same[k], out[k]) if torch.is_tensor(out[k]) else same[k] == out[k], k
    assert out["image_label"].dtype == torch.float32
    bare = inference_input(image[:20, :30], height=H, width=W)
    assert set(bare) == {"image", "height", "width"} and bare["image"].shape == (3, 20, 30)
    assert (bare["height"], bare["width"]) == (H, W)
    assert inference_input(image[:20, :30])["height"] == 20


def test_record_classes():
    assert record_classes({"image_label": [14, 6, 6]}) == [6, 14]
    anns = [{"category_id": 3}, {"category_id": 1, "iscrowd": 1}, {"category_id": 3}]
    assert record_classes({"annotations": anns}) == [1, 3]
    assert record_classes({"image_label": [], "annotations": anns}) == []  # image_label wins
    with pytest.raises(KeyError, match="neither"):
        record_classes({"image_id": "x"})


def test_mapper_errors_name_the_files(voc_root):
    mapper = BestieDatasetMapper(_cfg("image", voc_root), is_train=True)
    # WSSS map of the wrong size
    wsss = voc_root / "WSSS_maps" / "2007_000001.png"
    _write_palette_png(wsss, np.zeros((H + 1, W), np.uint8))
    with pytest.raises(ImageSizeMismatchError) as ei:
        mapper(_record(voc_root))
    msg = str(ei.value)
    assert str(wsss) in msg and "2007_000001" in msg and "JPEGImages" in msg
    # RGB WSSS map: VOC palette colours are mapped back (issue 16), other colours are refused
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(wsss)
    mapper(_record(voc_root))
    Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(wsss)
    with pytest.raises(BestieDataError, match="not a VOC palette colour") as ei:
        mapper(_record(voc_root))
    assert str(wsss) in str(ei.value)
    _write_palette_png(wsss, np.zeros((H, W), np.uint8))
    # missing cue file
    os.remove(voc_root / "Peak_points" / "2007_000001.txt")
    with pytest.raises(MissingDataError) as ei:
        mapper(_record(voc_root))
    assert "Peak_points" in str(ei.value) and "2007_000001" in str(ei.value)
    # cue outside the image
    (voc_root / "Peak_points" / "2007_000001.txt").write_text(f"{W} 3 14 0.9\n")
    with pytest.raises(BestieDataError, match="line 1"):
        mapper(_record(voc_root))
    # class of the image label out of range
    rec = _record(voc_root)
    rec["image_label"] = [25]
    with pytest.raises(BestieDataError, match="2007_000001"):
        mapper(rec)
    # missing image
    rec = _record(voc_root)
    rec["file_name"] = str(voc_root / "JPEGImages" / "nope.jpg")
    with pytest.raises(BestieDataError, match="nope.jpg"):
        mapper(rec)

"""GrabCut refinement of CAM semantic maps (bestie_d2.modeling.cam_grabcut).

Determinism across calls (OpenCV's RNG re-seeded per call) is checked end to end by
tests/test_cues.py::test_extract_cues_and_semantic_cli: extract_cues and cam_to_semantic must write
identical maps although they process the images after different amounts of earlier work (that
test fails without the re-seeding).
"""
import numpy as np
import pytest
import torch

from bestie_d2.modeling.cam import cams_to_semantic
from bestie_d2.modeling.cam_grabcut import grabcut_semantic


def _scene(seed=0):
    """A noisy grey-green textured background with a red square (class 1) and a blue disc (class 3)."""
    rng = np.random.default_rng(seed)
    H, W = 120, 160
    img = np.clip(rng.normal(110, 25, (H, W, 3)), 0, 255).astype(np.uint8)
    img[..., 1] = np.clip(img[..., 1].astype(int) + 30, 0, 255)
    yy, xx = np.mgrid[:H, :W]
    square = (yy >= 20) & (yy < 70) & (xx >= 15) & (xx < 65)
    disc = (yy - 75) ** 2 + (xx - 115) ** 2 <= 28 ** 2
    img[square] = (220, 40, 40)
    img[disc] = (40, 40, 220)

    def blob(cy, cx, s):  # a peaky CAM on the object's centre, far smaller than the object
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s ** 2)).astype(np.float32)

    cam = np.stack([blob(45, 40, 7), blob(75, 115, 7)])
    return img, cam, np.array([1, 3]), square, disc


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_grabcut_recovers_the_objects_that_the_cam_under_segments():
    img, cam, classes, square, disc = _scene()
    plain = cams_to_semantic(torch.from_numpy(cam), torch.from_numpy(classes), 0.1)
    refined = grabcut_semantic(img, cam, classes, 0.5, 0.1, 0.0, 3)
    assert refined.shape == square.shape and refined.dtype == np.uint8
    assert set(np.unique(refined).tolist()) <= {0, 2, 4}
    assert _iou(plain == 2, square) < 0.5 and _iou(plain == 4, disc) < 0.6  # the CAM blob alone
    assert _iou(refined == 2, square) > 0.9
    assert _iou(refined == 4, disc) > 0.9


def test_class_without_a_sure_foreground_seed_gets_no_pixel():
    img, cam, classes, square, _ = _scene()
    cam[1] *= 0.4  # the disc's CAM never reaches FG_THRESHOLD 0.5
    refined = grabcut_semantic(img, cam, classes, 0.5, 0.1, 0.0, 2)
    assert not (refined == 4).any()
    assert _iou(refined == 2, square) > 0.9


def test_no_class_and_bad_arguments():
    out = grabcut_semantic(np.zeros((5, 7, 3), np.uint8), np.zeros((0, 5, 7)), np.zeros(0), size=(5, 7))
    assert out.shape == (5, 7) and not out.any()
    img, cam, classes, _, _ = _scene()
    with pytest.raises(ValueError, match="PROBABLE_FG_THRESHOLD <= FG_THRESHOLD"):
        grabcut_semantic(img, cam, classes, 0.2, 0.5)
    with pytest.raises(ValueError, match="image must be"):
        grabcut_semantic(img[:60], cam, classes)
    with pytest.raises(ValueError, match="K = len"):
        grabcut_semantic(img, cam, classes[:1])
    with pytest.raises(ValueError, match="iteration"):
        grabcut_semantic(img, cam, classes, iterations=0)


def test_semantic_refine_mode_is_validated(bestie_cfg):
    from bestie_d2.tools.extract_cues import semantic_from_cams

    cfg = bestie_cfg
    img, cam, classes, square, _ = _scene()
    cam_t, cls_t = torch.from_numpy(cam), torch.from_numpy(classes)
    assert np.array_equal(semantic_from_cams(cfg.PAM_CUES, cam_t, cls_t, img.shape[:2]),
                          cams_to_semantic(cam_t, cls_t, cfg.PAM_CUES.BG_THRESHOLD))
    cfg.PAM_CUES.SEMANTIC_REFINE = "grabcut"
    assert _iou(semantic_from_cams(cfg.PAM_CUES, cam_t, cls_t, img.shape[:2], img) == 2, square) > 0.9
    cfg.PAM_CUES.SEMANTIC_REFINE = "crf"
    with pytest.raises(ValueError, match="SEMANTIC_REFINE"):
        semantic_from_cams(cfg.PAM_CUES, cam_t, cls_t, img.shape[:2], img)


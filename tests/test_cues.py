"""CAM inference, peak finding, semantic maps and the extract_cues / cam_to_semantic CLIs."""
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bestie_d2  # noqa: F401
from bestie_d2.data.points import read_points, write_points
from bestie_d2.modeling.cam import (
    cams_to_semantic,
    compute_cams,
    find_peaks,
    normalize_cams,
    resize_for_cam,
)

from repo_paths import REPO as ROOT


def gaussian_map(h, w, peaks, sigma):
    """Sum-free max of Gaussians: value `amp` at each (x, y) peak."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for x, y, amp in peaks:
        out = np.maximum(out, amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
    return out


# ------------------------------------------------------------------------------------------------
# Peak finding on a given CAM
# ------------------------------------------------------------------------------------------------
def test_find_peaks_known_peaks():
    H, W = 60, 80
    peaks0 = [(10, 12, 1.0), (50, 40, 0.8), (70, 8, 0.3), (14, 15, 0.95)]  # last one within NMS
    peaks1 = [(30, 30, 0.9), (5, 55, 0.05)]  # second below the confidence threshold
    cam = torch.from_numpy(np.stack([gaussian_map(H, W, peaks0, 3.0), gaussian_map(H, W, peaks1, 3.0)]))
    classes = torch.tensor([4, 1])
    pts = find_peaks(cam, classes, smooth_kernel=1, nms_kernel=15, top_k=25, conf_threshold=0.1)
    assert pts.dtype == np.float32 and pts.shape[1] == 4
    got = [(int(x), int(y), int(c)) for x, y, c, _ in pts]
    # class 4 first (descending conf), (14, 15) suppressed by (10, 12) within the 15x15 window
    assert got == [(10, 12, 4), (50, 40, 4), (70, 8, 4), (30, 30, 1)]
    np.testing.assert_allclose(pts[:, 3], [1.0, 0.8, 0.3, 0.9], atol=1e-5)
    # top_k and threshold
    pts = find_peaks(cam, classes, smooth_kernel=1, nms_kernel=15, top_k=1, conf_threshold=0.1)
    assert [(int(x), int(y), int(c)) for x, y, c, _ in pts] == [(10, 12, 4), (30, 30, 1)]
    pts = find_peaks(cam, classes, smooth_kernel=1, nms_kernel=15, top_k=25, conf_threshold=0.85)
    assert [(int(x), int(y)) for x, y, _, _ in pts] == [(10, 12), (30, 30)]
    # a smaller NMS window keeps the close peak
    pts = find_peaks(cam, classes, smooth_kernel=1, nms_kernel=3, top_k=25, conf_threshold=0.1)
    assert (14, 15) in [(int(x), int(y)) for x, y, _, _ in pts]
    # 3x3 smoothing keeps a smooth peak in place and lowers it to its 3x3 mean
    pts = find_peaks(cam, classes, smooth_kernel=3, nms_kernel=15, top_k=25, conf_threshold=0.1)
    assert (int(pts[0, 0]), int(pts[0, 1])) == (10, 12)
    expected = cam[0, 11:14, 9:12].mean().item()
    assert pts[0, 3] == pytest.approx(expected, abs=1e-5) and expected < 1.0
    # a plateau (exact ties, e.g. clamped border rows of an upsampled CAM) gives one peak
    flat = torch.zeros(1, 20, 20)
    flat[0, 0:4, 9] = 0.8
    flat[0, 10:13, 3:6] = 0.6
    pts = find_peaks(flat, torch.tensor([2]), 1, 5, 25, 0.1)
    assert [(int(x), int(y)) for x, y, _, _ in pts] == [(9, 0), (3, 10)]
    # nothing to find
    assert find_peaks(torch.zeros(0, 5, 5), torch.zeros(0, dtype=torch.long)).shape == (0, 4)


def test_normalize_cams_and_semantic():
    raw = torch.zeros(3, 4, 4)
    raw[0, 0, 0] = 2.0
    raw[2, 3, 3] = 5.0
    raw[1] = -1.0
    cam = normalize_cams(raw, torch.tensor([0, 2]), (8, 8))
    assert cam.shape == (2, 8, 8)
    assert cam.min() >= 0 and cam.flatten(1).amax(1).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    c = torch.zeros(2, 5, 6)
    c[0, :, :2] = 0.9
    c[1, :, 1:4] = 0.6
    c[:, :, 5] = 0.1
    sem = cams_to_semantic(c, torch.tensor([1, 3]), bg_threshold=0.25)
    assert sem.dtype == np.uint8 and sem.shape == (5, 6)
    assert sem[0].tolist() == [2, 2, 4, 4, 0, 0]
    assert cams_to_semantic(torch.zeros(0, 5, 6), torch.zeros(0, dtype=torch.long), 0.25, (5, 6)).sum() == 0


class _BlobCAM(torch.nn.Module):
    """Fake classifier: CAM class k = the image's channel k, average-pooled to ``stride``."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def cams(self, images):
        x = images.float() / 255.0
        return F.avg_pool2d(x, self.stride) if self.stride > 1 else x


@pytest.mark.parametrize(
    "stride,objs",
    [
        (1, [(40, 30, 0), (150, 80, 0), (100, 60, 2)]),
        # stride 8: objects at feature-cell centres (of the 96x96 resize), so the coarse CAM can
        # represent them exactly
        (8, [(41, 24, 0), (158, 84, 0), (108, 54, 2)]),
    ],
)
def test_peaks_through_resize_and_flip_land_in_the_original_frame(stride, objs):
    H, W = 120, 200  # not square: the CAM goes through a 96x96 resize and back
    img = np.zeros((H, W, 3), np.float32)
    for x, y, ch in objs:  # (x, y, channel = class)
        img[..., ch] = np.maximum(img[..., ch], gaussian_map(H, W, [(x, y, 255.0)], 10.0))
    img = img.astype(np.uint8)
    batch = resize_for_cam(img, 96)[None]
    assert batch.shape == (1, 3, 96, 96)
    for flip in (True, False):
        (classes, cam), = compute_cams(_BlobCAM(stride), batch, [(H, W)], [[2, 0]], flip=flip)
        assert classes.tolist() == [0, 2] and cam.shape == (2, H, W)
        assert cam.max() <= 1.0
        pts = find_peaks(cam, classes, 3, 15, 25, 0.5)
        found = sorted((int(c), int(x), int(y)) for x, y, c, _ in pts)
        expected = sorted((ch, x, y) for x, y, ch in objs)
        # exactly the known peaks (a CAM flipped the wrong way would add mirrored peaks)
        assert len(found) == len(expected), (found, expected)
        for (c, x, y), (ce, xe, ye) in zip(found, expected):
            assert c == ce and abs(x - xe) <= 1 and abs(y - ye) <= 1, (found, expected)


def test_flip_branch_is_flipped_back():
    class LeftOnly(torch.nn.Module):
        """CAM = 1 on the left quarter of whatever it is given (not flip-equivariant)."""

        def cams(self, images):
            n, _, h, w = images.shape
            out = torch.zeros(n, 1, h // 8, w // 8)
            out[..., : w // 32] = 1.0
            return out

    img = np.zeros((64, 64, 3), np.uint8)
    (_, cam), = compute_cams(LeftOnly(), resize_for_cam(img, 64)[None], [(64, 64)], [[0]])
    # un-flipped branch: left quarter; flipped branch flipped back: right quarter; both at 0.5
    assert cam[0, 32, 2] == pytest.approx(0.5, abs=1e-3) and cam[0, 32, 61] == pytest.approx(0.5, abs=1e-3)
    assert cam[0, 32, 32] == pytest.approx(0.0, abs=1e-3)


def test_peak_files_round_trip(tmp_path):
    cam = torch.from_numpy(gaussian_map(40, 50, [(7, 9, 0.93), (40, 30, 0.512)], 2.0))[None]
    pts = find_peaks(cam, torch.tensor([3]), 1, 5, 25, 0.1)
    path = str(tmp_path / "img_1.txt")
    write_points(path, pts)
    back = read_points(path, num_classes=5, image_size=(40, 50))
    assert back.shape == pts.shape
    np.testing.assert_array_equal(back[:, :3], pts[:, :3])
    np.testing.assert_allclose(back[:, 3], pts[:, 3], atol=5e-4)
    assert open(path).read().splitlines()[0] == "7 9 3 0.930"


# ------------------------------------------------------------------------------------------------
# CLIs on the toy fixture
# ------------------------------------------------------------------------------------------------
def _tiny_opts(weights):
    return [
        "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", "MODEL.VGG.WIDTH_MULT", "0.125",
        "MODEL.PAM.EXTRA_CHANNELS", "16", "INPUT.PAM.TEST_SIZE", "64",
        "PAM_CUES.CONF_THRESHOLD", "0.05", "PAM_CUES.BG_THRESHOLD", "0.3",
    ]


def test_extract_cues_and_semantic_cli(toy_root, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from bestie_d2.tools import cam_to_semantic, extract_cues

    # a random tiny classifier, saved and reloaded through MODEL.WEIGHTS
    cfg_args = extract_cues.build_parser().parse_args(
        ["--config-file", os.path.join(ROOT, "configs/toy/pam.yaml"), "--dataset", "x", "--output", "y"]
        + _tiny_opts("")
    )
    cfg = extract_cues.setup_cfg(cfg_args)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # make some classes fire on bright pixels so maps are not all background
        model.cam_conv.bias.fill_(0.0)
    weights = str(tmp_path / "pam_tiny.pth")
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("pam_tiny")
    model.eval()

    cues_dir, sem_dir = str(tmp_path / "cues"), str(tmp_path / "sem")
    argv = ["--config-file", os.path.join(ROOT, "configs/toy/pam.yaml"), "--dataset", "test_toy_val",
            "--output", cues_dir, "--sem-output", sem_dir, "--num-workers", "0", "--batch-size", "3"]
    args = extract_cues.build_parser().parse_args(argv + _tiny_opts(weights))
    stats = extract_cues.main(args)
    records = DatasetCatalog.get("test_toy_val")
    n = len(records)
    assert stats["images"] == n and stats["skipped"] == 0
    total = 0
    for r in records:
        pts = read_points(os.path.join(cues_dir, f"{r['image_id']}.txt"), 5, (r["height"], r["width"]))
        total += len(pts)
        assert set(pts[:, 2].astype(int).tolist()) <= set(r["image_label"])
        sem = cv2.imread(os.path.join(sem_dir, f"{r['image_id']}.png"), cv2.IMREAD_UNCHANGED)
        assert sem.shape == (r["height"], r["width"]) and sem.dtype == np.uint8
        assert set(np.unique(sem).tolist()) <= {0} | {c + 1 for c in r["image_label"]}
    assert total == stats["points"]

    # same cues as running the library functions directly with the same weights
    r = records[0]
    img = cv2.imread(r["file_name"])[:, :, ::-1]
    (classes, cam), = compute_cams(model, resize_for_cam(img, 64)[None], [img.shape[:2]], [r["image_label"]])
    direct = find_peaks(cam, classes, 3, 15, 25, 0.05)
    from_file = read_points(os.path.join(cues_dir, f"{r['image_id']}.txt"), 5)
    np.testing.assert_array_equal(from_file[:, :3], direct[:, :3])

    # resumable: nothing to do the second time; --force redoes everything
    assert extract_cues.main(args)["skipped"] == n
    args = extract_cues.build_parser().parse_args(argv + ["--force"] + _tiny_opts(weights))
    assert extract_cues.main(args)["images"] == n

    # cam_to_semantic writes the same maps
    sem_only = str(tmp_path / "sem_only")
    args = cam_to_semantic.build_parser("semantic").parse_args(
        ["--config-file", os.path.join(ROOT, "configs/toy/pam.yaml"), "--dataset", "test_toy_val",
         "--output", sem_only, "--num-workers", "0"] + _tiny_opts(weights)
    )
    stats = cam_to_semantic.main(args, mode="semantic")
    assert stats["images"] == n and stats["points"] == 0
    for r in records:
        a = cv2.imread(os.path.join(sem_dir, f"{r['image_id']}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(os.path.join(sem_only, f"{r['image_id']}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, b)
    assert not [f for f in os.listdir(sem_only) if f.endswith(".tmp")]

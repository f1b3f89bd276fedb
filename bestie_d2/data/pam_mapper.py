"""Dataset mapper of the PAM classifier (docs/method.md §8.2).

Training: square resize to ``INPUT.PAM.RESIZE`` (aspect ratio not kept, bilinear) -> horizontal
flip (p = 0.5) -> colour jitter (torchvision ``ColorJitter`` semantics: brightness, contrast,
saturation factors drawn from ``[max(0, 1 - v), 1 + v]``, hue shift from ``[-h, h]`` of a full
turn, applied in a random order) -> random ``INPUT.PAM.CROP`` square crop.
Test: square resize to ``INPUT.PAM.TEST_SIZE``.

Output: ``image`` (3, H, W) uint8 tensor in ``INPUT.FORMAT``, ``image_label`` (C,) float multi-hot,
plus ``height``/``width`` (original size), ``image_id`` and ``file_name``.
"""
import copy
import logging
from typing import Sequence

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils

__all__ = ["PAMDatasetMapper", "color_jitter", "labels_to_multi_hot"]

logger = logging.getLogger(__name__)


def labels_to_multi_hot(labels, num_classes: int) -> torch.Tensor:
    """list of class ids -> (C,) float multi-hot tensor."""
    out = torch.zeros(num_classes, dtype=torch.float32)
    if labels is not None and len(labels):
        idx = torch.as_tensor(list(labels), dtype=torch.long)
        if int(idx.min()) < 0 or int(idx.max()) >= num_classes:
            raise ValueError(f"image_label {list(labels)} out of range for {num_classes} classes")
        out[idx] = 1.0
    return out


def _gray(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> (H, W, 1) luma (ITU-R 601, as torchvision)."""
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])[..., None]


def color_jitter(img: np.ndarray, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                 rng=np.random, rgb: bool = True) -> np.ndarray:
    """Random colour jitter of a uint8 (H, W, 3) image, returned as uint8.

    Args:
        brightness, contrast, saturation: factor ranges ``[max(0, 1 - v), 1 + v]``.
        hue: shift in ``[-hue, hue]`` of a full turn (``hue <= 0.5``).
        rng: ``numpy.random`` module or a ``RandomState``.
        rgb: channel order of ``img`` (False = BGR).
    """
    x = img.astype(np.float32)
    if not rgb:
        x = x[..., ::-1]
    ops = []
    if brightness > 0:
        ops.append(("b", rng.uniform(max(0.0, 1 - brightness), 1 + brightness)))
    if contrast > 0:
        ops.append(("c", rng.uniform(max(0.0, 1 - contrast), 1 + contrast)))
    if saturation > 0:
        ops.append(("s", rng.uniform(max(0.0, 1 - saturation), 1 + saturation)))
    if hue > 0:
        ops.append(("h", rng.uniform(-hue, hue)))
    for i in rng.permutation(len(ops)):
        kind, f = ops[i]
        if kind == "b":
            x = x * f
        elif kind == "c":
            x = f * x + (1 - f) * float(_gray(x).mean())
        elif kind == "s":
            x = f * x + (1 - f) * _gray(x)
        else:
            hsv = cv2.cvtColor(np.ascontiguousarray(x / 255.0, dtype=np.float32), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = np.mod(hsv[..., 0] + f * 360.0, 360.0)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        x = np.clip(x, 0.0, 255.0)
    if not rgb:
        x = x[..., ::-1]
    return np.ascontiguousarray(np.round(x).astype(np.uint8))


class PAMDatasetMapper:
    """Maps a data set record to the PAM classifier's input (see the module docstring)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        num_classes: int,
        image_format: str = "RGB",
        resize: int = 384,
        crop: int = 321,
        color_jitter: Sequence[float] = (0.3, 0.3, 0.3, 0.1),
        flip: bool = True,
        test_size: int = 321,
    ):
        """
        NOTE: this interface is experimental.

        Args:
            is_train: training (augmentation) or test (square resize) mode.
            num_classes: C, length of ``image_label``.
            image_format: format passed to ``read_image`` ("RGB" or "BGR").
            resize: training square resize side.
            crop: training random crop side (the image is zero-padded if smaller).
            color_jitter: (brightness, contrast, saturation, hue); zeros disable.
            flip: random horizontal flip in training.
            test_size: test square resize side.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"PAMDatasetMapper supports RGB or BGR, got {image_format!r}")
        self.is_train = is_train
        self.num_classes = int(num_classes)
        self.image_format = image_format
        self.resize = int(resize)
        self.crop = int(crop)
        self.color_jitter = tuple(float(v) for v in color_jitter)
        if len(self.color_jitter) != 4:
            raise ValueError("INPUT.PAM.COLOR_JITTER needs 4 values (b, c, s, h)")
        self.flip = bool(flip)
        self.test_size = int(test_size)
        mode = "training" if is_train else "inference"
        logger.info(
            f"[PAMDatasetMapper] {mode}: resize {self.resize if is_train else self.test_size}"
            + (f", flip {self.flip}, jitter {self.color_jitter}, crop {self.crop}" if is_train else "")
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "num_classes": cfg.MODEL.PAM.NUM_CLASSES,
            "image_format": cfg.INPUT.FORMAT,
            "resize": cfg.INPUT.PAM.RESIZE,
            "crop": cfg.INPUT.PAM.CROP,
            "color_jitter": list(cfg.INPUT.PAM.COLOR_JITTER),
            "flip": cfg.INPUT.RANDOM_FLIP != "none",
            "test_size": cfg.INPUT.PAM.TEST_SIZE,
        }

    def _augment(self, img: np.ndarray) -> np.ndarray:
        img = cv2.resize(img, (self.resize, self.resize), interpolation=cv2.INTER_LINEAR)
        if self.flip and np.random.rand() < 0.5:
            img = img[:, ::-1]
        b, c, s, h = self.color_jitter
        if b > 0 or c > 0 or s > 0 or h > 0:
            img = color_jitter(img, b, c, s, h, rgb=self.image_format == "RGB")
        H, W = img.shape[:2]
        if H < self.crop or W < self.crop:
            padded = np.zeros((max(H, self.crop), max(W, self.crop), 3), dtype=img.dtype)
            padded[:H, :W] = img
            img, H, W = padded, padded.shape[0], padded.shape[1]
        y0 = np.random.randint(0, H - self.crop + 1)
        x0 = np.random.randint(0, W - self.crop + 1)
        return img[y0 : y0 + self.crop, x0 : x0 + self.crop]

    def __call__(self, dataset_dict):
        d = copy.deepcopy(dataset_dict)
        img = utils.read_image(d["file_name"], format=self.image_format)
        utils.check_image_size(d, img)
        d["height"], d["width"] = img.shape[:2]
        if self.is_train:
            img = self._augment(img)
        else:
            s = self.test_size
            img = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
        d["image"] = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
        labels = d.get("image_label")
        if labels is None and "annotations" in d:  # records without image labels but with GT
            labels = sorted({int(a["category_id"]) for a in d["annotations"]})
        d["image_label"] = labels_to_multi_hot(labels, self.num_classes)
        d.pop("annotations", None)
        return d

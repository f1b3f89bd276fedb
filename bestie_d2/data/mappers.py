"""``BestieDatasetMapper``: dataset record -> BESTIE training sample (or test input).

Training (docs/method.md §1.1, §1.2, §2):

1. read the image (``file_name``), the WSSS map (``wsss_file``, or ``<wsss_dir>/<image_id>.png``)
   and the instance cues (image route: ``peak_points_file`` / ``<peak_points_dir>/<id>.txt``;
   point route: ``center_points_file`` / ``<center_points_dir>/<id>.txt``), keeping cues with
   ``conf > cue_threshold`` (both routes, as the authors' loader; GT points have conf 1.0);
2. run :class:`~bestie_d2.data.transforms.BestieAugmentation` on image, map and cues;
3. build the pseudo targets on the crop with :func:`~bestie_d2.data.target_generator.make_pseudo_targets`.

Output (DEVELOPING.md "Mapper output"): ``image`` (3,H,W) uint8 in ``image_format`` (RGB, as
``configs/Base-BESTIE.yaml`` sets ``INPUT.FORMAT``), ``sem_seg`` (H,W) long (the WSSS crop,
padding = 0), ``center`` (C,H,W), ``offset`` (2,H,W), ``weight`` (H,W) float,
``points`` (K,3) long ``[y, x, c]`` in crop pixels (at most ``max_points_per_class`` per class),
``image_label`` (C,) float, and the record's ``height``, ``width`` (original size), ``image_id``,
``file_name``.

Test (``is_train=False``): ``image`` at the original size, ``image_label``, ``height``, ``width``,
``image_id``, ``file_name``; the model resizes internally. This is the one test-input path:
:func:`inference_input` builds the dict from an image array (``tools/predict``,
``tools/visualize`` and the pseudo-label export use it, or the mapper itself for records), and
:func:`record_classes` is the one helper turning a record into its class list.

Any failure while mapping a record is raised as ``BestieDataError`` naming the image id and the
files involved.
"""
import copy
import logging
import os

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils

from .errors import BestieDataError, ClassIdError
from .points import filter_by_confidence, read_points
from .target_generator import SUPERVISION_TYPES, make_pseudo_targets
from .transforms import BestieAugmentation
from .wsss import read_wsss_map  # the one WSSS reader (also bestie_d2.data.datasets.read_wsss_map)

__all__ = ["BestieDatasetMapper", "read_wsss_map", "image_label_vector", "record_classes", "inference_input"]

logger = logging.getLogger(__name__)


def image_label_vector(labels, num_classes):
    """``list[int]`` class ids -> ``(C,)`` float32 multi-hot; ids must lie in ``0..C-1``."""
    vec = np.zeros(num_classes, dtype=np.float32)
    ids = np.asarray(list(labels), dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ClassIdError(f"image_label {ids.tolist()} has classes outside 0..{num_classes - 1}")
    vec[ids] = 1.0
    return vec


def record_classes(record):
    """The classes of a dataset record, ``list[int]`` sorted unique ids ``0..C-1``: its
    ``image_label``, else the ``category_id`` of its ``annotations``. Raises ``KeyError`` when the
    record has neither."""
    if "image_label" in record:
        return sorted({int(c) for c in record["image_label"]})
    if "annotations" in record:
        return sorted({int(a["category_id"]) for a in record["annotations"]})
    raise KeyError(f"record {record.get('image_id')!r} has neither 'image_label' nor 'annotations'")


def inference_input(image, image_label=None, **fields):
    """The model input of one image at test time (DEVELOPING.md "Mapper output", test mode).

    Args:
        image: ``(H, W, 3)`` uint8 array in the model's ``INPUT.FORMAT``, at the size the model
            gets (BESTIE: the original image; it resizes internally).
        image_label: optional ``(C,)`` multi-hot (:func:`image_label_vector`) -> float32 tensor.
        fields: ``height``, ``width`` (the output size; default the image's), ``image_id``,
            ``file_name`` and any other key, copied as given.

    Returns:
        ``{"image": (3, H, W) uint8 tensor, ["image_label": (C,) float32], "height", "width", ...}``.
    """
    out = {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))}
    if image_label is not None:
        out["image_label"] = torch.as_tensor(np.asarray(image_label, dtype=np.float32))
    out["height"] = fields.pop("height", image.shape[0])
    out["width"] = fields.pop("width", image.shape[1])
    out.update(fields)
    return out


class BestieDatasetMapper:
    """Map a BESTIE dataset record (DEVELOPING.md "Dataset records") to a model input.

    NOTE: this interface is experimental.
    """

    @configurable
    def __init__(
        self,
        is_train=True,
        *,
        num_classes,
        supervision="image",
        cue_threshold=0.7,
        augmentation=None,
        sigma=6.0,
        min_area=50,
        max_points_per_class=128,
        peak_points_dir="",
        center_points_dir="",
        wsss_dir="",
        image_format="RGB",
        test_points=False,
    ):
        """
        Args:
            is_train: training sample (augmented crop + pseudo targets) or test input.
            num_classes: number of thing classes C.
            supervision: "image" (PAM peak cues) or "point" (GT center points).
            cue_threshold: keep a cue only if its confidence is strictly greater.
            augmentation: the training :class:`BestieAugmentation` (docs/method.md §1.2);
                from_config: ``BestieAugmentation.from_config(cfg)`` (``cfg.BESTIE.INPUT``);
                None = its defaults in ``image_format``.
            sigma, min_area: pseudo-target Gaussian sigma and minimum component area (§2).
            max_points_per_class: cap on the ``points`` carried to the model, per class.
            peak_points_dir, center_points_dir, wsss_dir: if set, ``<dir>/<image_id>.txt|png``
                replace the record's ``peak_points_file``, ``center_points_file``, ``wsss_file``.
            image_format: "RGB" (the BESTIE configs) or "BGR"; from_config: ``INPUT.FORMAT``.
            test_points: test inputs also carry ``points`` (K, 3) long ``[y, x, c]`` in original
                pixels, read from the record's points file of ``supervision`` (cues with
                ``conf > cue_threshold``), for point-guided decoding; from_config:
                ``MODEL.BESTIE.TEST.USE_POINTS``.
        """
        if supervision not in SUPERVISION_TYPES:
            raise ValueError(f"supervision must be one of {SUPERVISION_TYPES}, got {supervision!r}")
        self.is_train = bool(is_train)
        self.num_classes = int(num_classes)
        self.supervision = supervision
        self.cue_threshold = float(cue_threshold)
        if augmentation is None:
            augmentation = BestieAugmentation(image_format=image_format)
        self.augmentation = augmentation
        self.sigma = float(sigma)
        self.min_area = int(min_area)
        self.max_points_per_class = int(max_points_per_class)
        self.peak_points_dir = peak_points_dir or ""
        self.center_points_dir = center_points_dir or ""
        self.wsss_dir = wsss_dir or ""
        self.image_format = image_format
        self.test_points = bool(test_points)
        self._rng = None
        self._rng_pid = None
        mode = "training" if self.is_train else "inference"
        logger.info(
            f"[BestieDatasetMapper] {mode}, supervision={supervision}, cue_threshold="
            f"{self.cue_threshold}, crop={getattr(augmentation, 'crop_size', None)}"
        )

    @classmethod
    def from_config(cls, cfg, is_train=True):
        i, d = cfg.BESTIE.INPUT, cfg.BESTIE.DATA
        return {
            "is_train": is_train,
            "num_classes": cfg.BESTIE.NUM_CLASSES,
            "supervision": cfg.BESTIE.SUPERVISION,
            "cue_threshold": d.CUE_THRESHOLD,
            "augmentation": BestieAugmentation.from_config(cfg),
            "sigma": i.GAUSSIAN_SIGMA,
            "min_area": i.MIN_INSTANCE_AREA,
            "max_points_per_class": i.MAX_POINTS_PER_CLASS,
            "peak_points_dir": d.PEAK_POINTS_DIR,
            "center_points_dir": d.CENTER_POINTS_DIR,
            "wsss_dir": d.WSSS_DIR,
            # configs/Base-BESTIE.yaml sets "RGB" (the model's contract); follows the model's
            # PIXEL_MEAN order like every Detectron2 mapper
            "image_format": cfg.INPUT.FORMAT,
            "test_points": cfg.MODEL.BESTIE.TEST.USE_POINTS,
        }

    # ------------------------------------------------------------------------------------------
    @property
    def rng(self):
        """A ``numpy.random.Generator`` per process, seeded from numpy's global RNG on first use
        in that process (Detectron2 seeds numpy differently in each data-loader worker)."""
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            self._rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
            self._rng_pid = pid
        return self._rng

    @rng.setter
    def rng(self, generator):
        self._rng = generator
        self._rng_pid = os.getpid()

    def _path(self, record, key, folder, ext):
        if folder:
            return os.path.join(folder, f"{record['image_id']}{ext}")
        path = record.get(key)
        if not path:
            raise BestieDataError(f"record has no '{key}' and the config gives no folder for it")
        return path

    def wsss_path(self, record):
        return self._path(record, "wsss_file", self.wsss_dir, ".png")

    def points_path(self, record):
        if self.supervision == "image":
            return self._path(record, "peak_points_file", self.peak_points_dir, ".txt")
        return self._path(record, "center_points_file", self.center_points_dir, ".txt")

    def _image_label(self, record):
        if "image_label" in record or (not self.is_train and "annotations" in record):
            return image_label_vector(record_classes(record), self.num_classes)
        raise BestieDataError("record has no 'image_label'")

    # ------------------------------------------------------------------------------------------
    def __call__(self, dataset_dict):
        record = copy.deepcopy(dataset_dict)
        try:
            return self._map_train(record) if self.is_train else self._map_test(record)
        except Exception as e:
            where = (f"BestieDatasetMapper failed on image {record.get('image_id', '?')!r} "
                     f"({record.get('file_name', '?')})")
            if isinstance(e, BestieDataError):  # keep the specific type (e.g. MissingDataError)
                raise type(e)(f"{where}: {e}") from e
            raise BestieDataError(f"{where}: {type(e).__name__}: {e}") from e

    def _read_image(self, record):
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        return image

    def _map_test(self, record):
        image = self._read_image(record)
        fields = {}
        if self.test_points:
            h, w = image.shape[:2]
            pts = filter_by_confidence(read_points(self.points_path(record), self.num_classes, image_size=(h, w)),
                                       self.cue_threshold)
            fields["points"] = torch.as_tensor(pts[:, [1, 0, 2]].astype(np.int64).reshape(-1, 3))  # [y, x, c]
        return inference_input(
            image, self._image_label(record), height=record["height"], width=record["width"],
            image_id=record["image_id"], file_name=record["file_name"], **fields,
        )

    def _map_train(self, record):
        label = self._image_label(record)
        image = self._read_image(record)
        h, w = image.shape[:2]

        wsss_file = self.wsss_path(record)
        sem = read_wsss_map(wsss_file, self.num_classes, image_size=(h, w), image_path=record["file_name"])

        points_file = self.points_path(record)
        pts = read_points(points_file, self.num_classes, image_size=(h, w))
        self._warn_label_convention(record, pts, sem, points_file, wsss_file)
        pts = filter_by_confidence(pts, self.cue_threshold)

        image, sem, pts, _ = self.augmentation(image, sem, pts, self.rng)
        points = pts[:, [1, 0, 2]].astype(np.int64)  # [y, x, c]

        targets = make_pseudo_targets(
            sem, points, label,
            num_classes=self.num_classes, supervision=self.supervision,
            sigma=self.sigma, min_area=self.min_area,
        )
        points = self._cap_points(points)
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "sem_seg": torch.as_tensor(sem.astype(np.int64)),
            "center": torch.as_tensor(targets["center"]),
            "offset": torch.as_tensor(targets["offset"]),
            "weight": torch.as_tensor(targets["weight"]),
            "points": torch.as_tensor(points),
            "image_label": torch.as_tensor(label),
            "height": record["height"] if "height" in record else h,
            "width": record["width"] if "width" in record else w,
            "image_id": record["image_id"],
            "file_name": record["file_name"],
        }

    def _warn_label_convention(self, record, pts, sem, points_file, wsss_file):
        """Log once per process and kind when a sample's cues / WSSS map disagree with its image
        label (:func:`~bestie_d2.data.input_check.label_convention_flags`); the data check at the
        start of training counts them per data set and fails above a threshold."""
        from .input_check import CONVENTION_CHECKS, label_convention_flags

        flags = label_convention_flags(pts, sem, record.get("image_label", ()), self.cue_threshold)
        warned = self.__dict__.setdefault("_convention_warned", set())
        for kind, details in flags.items():
            if (kind, os.getpid()) in warned:
                continue
            warned.add((kind, os.getpid()))
            found, cause = CONVENTION_CHECKS[kind]
            path = wsss_file if kind == "wsss_class" else points_file
            logger.warning(
                f"{path} (image {record.get('image_id')!r}, label {list(record.get('image_label', ()))}): "
                f"{found} ({details}). Likely cause: {cause}. Logged once per process; the data check "
                "(bestie-check-data) counts such images"
            )

    def _cap_points(self, points):
        """Keep at most ``max_points_per_class`` points per class (the first ones, order kept)."""
        m = self.max_points_per_class
        if m <= 0 or len(points) <= m:
            return points.reshape(-1, 3)
        keep = np.zeros(len(points), dtype=bool)
        for c in np.unique(points[:, 2]):
            keep[np.flatnonzero(points[:, 2] == c)[:m]] = True
        return points[keep]

"""The pseudo instances of semantic knowledge transfer (docs/method.md §2) of one record, for pictures.

Training builds pseudo targets on an augmented crop (:class:`~bestie_d2.data.mappers.BestieDatasetMapper`);
:func:`pseudo_label_instances` builds them at the record's original resolution with the same
pieces: the mapper's file resolution (``wsss_path`` / ``points_path``) and settings (cue
threshold, sigma, minimum area, route), the one WSSS reader, the one cue reader and
:func:`~bestie_d2.data.target_generator.make_pseudo_targets`. It then labels the supervised pixels by the
instance their offsets point to. :func:`pseudo_label_panel` draws the result.
"""
from typing import Dict, Optional, Tuple

import numpy as np

from ..data.mappers import BestieDatasetMapper, image_label_vector
from ..data.points import filter_by_confidence, read_points
from ..data.target_generator import make_pseudo_targets
from ..data.wsss import read_wsss_map
from ..utils import vis

__all__ = ["offset_targets", "pseudo_label_instances", "pseudo_label_panel", "scale_pseudo_labels"]

#: Colour of WSSS foreground that no pseudo instance accepted (grey).
REJECTED_COLOR = (150, 150, 150)


def offset_targets(offset, weight) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixels with ``weight > 0`` and where their offsets point.

    Args:
        offset: ``(2, H, W)`` [dy, dx] in pixels (array or tensor).
        weight: ``(H, W)`` or ``(1, H, W)``.

    Returns:
        ``(ys, xs, cy, cx)`` int64 ``(K,)`` each: pixel rows / columns and ``round(p + offset(p))``.
    """
    o, w = vis.to_numpy(offset), vis.to_numpy(weight)
    if w.ndim == 3:
        w = w[0]
    ys, xs = np.nonzero(w > 0)
    cy = np.round(ys + o[0, ys, xs]).astype(np.int64)
    cx = np.round(xs + o[1, ys, xs]).astype(np.int64)
    return ys, xs, cy, cx


def _mapper_for(cfg, wsss_dir: Optional[str], cues_dir: Optional[str]) -> BestieDatasetMapper:
    """The training mapper of ``cfg`` with the WSSS / cue folders replaced when given."""
    d = cfg.BESTIE.DATA
    cue_key = "peak_points_dir" if cfg.BESTIE.SUPERVISION == "image" else "center_points_dir"
    cue_default = d.PEAK_POINTS_DIR if cfg.BESTIE.SUPERVISION == "image" else d.CENTER_POINTS_DIR
    return BestieDatasetMapper(cfg, is_train=True, wsss_dir=wsss_dir or d.WSSS_DIR,
                               **{cue_key: cues_dir or cue_default})


def pseudo_label_instances(cfg, record: dict, *, wsss_dir: Optional[str] = None,
                           cues_dir: Optional[str] = None) -> Dict[str, np.ndarray]:
    """The pseudo instances of ``record`` at its original resolution (module doc).

    WSSS map: ``<wsss_dir>/<id>.png``, else ``BESTIE.DATA.WSSS_DIR``, else the record's
    ``wsss_file``. Cues (route ``BESTIE.SUPERVISION``): ``<cues_dir>/<id>.txt``, else
    ``BESTIE.DATA.PEAK_POINTS_DIR`` / ``CENTER_POINTS_DIR``, else the record's
    ``peak_points_file`` / ``center_points_file``; kept when ``conf > BESTIE.DATA.CUE_THRESHOLD``.
    Targets with ``BESTIE.INPUT.GAUSSIAN_SIGMA`` and ``MIN_INSTANCE_AREA`` (at this resolution).

    Returns ``instances`` (H, W) int32 (0 = none, k = instance k, grouped by class and the
    centroid the offsets point to), ``classes`` (N,) class of instance k+1, ``centroids`` (N, 2)
    (y, x), ``points`` (K, 3) [y, x, c] kept cues, ``sem`` (H, W) the WSSS map, ``weight`` (H, W).
    """
    m = _mapper_for(cfg, wsss_dir, cues_dir)
    C = m.num_classes
    size = (record["height"], record["width"]) if "height" in record and "width" in record else None
    sem = read_wsss_map(m.wsss_path(record), C, image_size=size, image_path=record.get("file_name"))
    H, W = sem.shape
    pts = filter_by_confidence(read_points(m.points_path(record), C, image_size=(H, W)), m.cue_threshold)
    points = pts[:, [1, 0, 2]].astype(np.int64)
    label = image_label_vector(record.get("image_label", []), C)
    t = make_pseudo_targets(sem, points, label, num_classes=C, supervision=m.supervision,
                            sigma=m.sigma, min_area=m.min_area)
    ys, xs, cy, cx = offset_targets(t["offset"], t["weight"])
    inst = np.zeros((H, W), np.int32)
    classes = np.zeros((0,), np.int64)
    cents = np.zeros((0, 2), np.int64)
    if len(ys):
        cls = sem[ys, xs].astype(np.int64) - 1
        uniq, inv = np.unique(np.stack([cls, cy, cx], 1), axis=0, return_inverse=True)
        inst[ys, xs] = inv.reshape(-1) + 1
        classes, cents = uniq[:, 0], uniq[:, 1:]
    return {"instances": inst, "classes": classes, "centroids": cents, "points": points,
            "sem": sem, "weight": t["weight"]}


def _resize_nearest(arr, shape) -> np.ndarray:
    import cv2

    a = np.asarray(arr)
    if tuple(a.shape[:2]) == tuple(shape):
        return a
    return cv2.resize(a.astype(np.float32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_NEAREST).astype(a.dtype)


def scale_pseudo_labels(pl: Dict[str, np.ndarray], shape: Tuple[int, int], scale: float) -> Dict[str, np.ndarray]:
    """:func:`pseudo_label_instances` output for a ``(h, w)`` panel drawn at ``scale`` panel pixels
    per image pixel (maps: nearest neighbour; points and centroids: pixel centres scaled)."""
    out = dict(pl)
    out["instances"] = _resize_nearest(pl["instances"], shape)
    out["sem"] = _resize_nearest(pl["sem"], shape)
    out["points"] = np.concatenate([(pl["points"][:, :2] + 0.5) * scale - 0.5, pl["points"][:, 2:]], 1)
    out["centroids"] = (pl["centroids"] + 0.5) * scale - 0.5
    return out


def pseudo_label_panel(image, pl: Dict[str, np.ndarray], num_classes: int, radius: int) -> np.ndarray:
    """Accepted instances coloured per instance, rejected WSSS foreground grey, kept cues as dots
    (class colours), centroids as ``x``; ``pl`` at the size of ``image`` (:func:`scale_pseudo_labels`)."""
    C = int(num_classes)
    n = len(pl["classes"])
    lab = pl["instances"].astype(np.int64)
    rejected = (pl["sem"] > 0) & (pl["sem"] <= C) & (lab == 0)
    lab = np.where(rejected, n + 1, lab)
    colors = np.concatenate([vis.instance_colors(n), np.array([REJECTED_COLOR], np.uint8)])
    out = vis.overlay_label_map(image, lab, colors, alpha=0.6)
    out = vis.draw_points(out, pl["points"][:, :2], pl["points"][:, 2], vis.class_colors(C), radius=radius)
    return vis.draw_crosses(out, pl["centroids"], size=radius + 2)

"""What :class:`~bestie_d2.data.mappers.BestieDatasetMapper` feeds BESTIE, one PNG per training sample.

Each PNG has a header (data set, index, image id, route, image labels, seed) and :data:`NUM_PANELS`
titled panels: the augmented crop with the cues the model receives (dots in the class colour), the
semantic target (WSSS crop, VOC colours), the center target (max over classes, fixed 0..1 scale),
the offset target length, the offset direction (hue = direction, brightness = length, ``x`` = the
instance centroids the offsets point to) and the IAG weight (white = supervised).

The augmentation of sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a PNG is
reproducible whatever other samples are picked.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog

from ..data.datasets.catalog import check_dataset
from ..data.mappers import BestieDatasetMapper
from ..utils import vis
from .names import class_names as dataset_class_names
from .names import label_names
from .pseudo_labels import offset_targets

__all__ = ["NUM_PANELS", "centroids_from_offsets", "render_training_sample", "select_records",
           "visualize_dataset"]

logger = logging.getLogger(__name__)

#: Panels of a training-sample PNG (see the module docstring).
NUM_PANELS = 6


def _to_rgb(image_chw, image_format: str) -> np.ndarray:
    img = vis.to_numpy(image_chw).transpose(1, 2, 0)
    if image_format == "BGR":
        img = img[..., ::-1]
    return np.ascontiguousarray(img.astype(np.uint8))


def centroids_from_offsets(offset, weight) -> np.ndarray:
    """``(K, 2)`` distinct ``(y, x)`` targets ``p + offset(p)`` of the weighted pixels, int64."""
    ys, _, cy, cx = offset_targets(offset, weight)
    if len(ys) == 0:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.stack([cy, cx], 1), axis=0)


def render_training_sample(
    sample: Dict,
    *,
    class_names: Sequence[str],
    image_format: str = "RGB",
    panel_size: int = 256,
    header: Optional[str] = None,
) -> np.ndarray:
    """One training sample (BestieDatasetMapper output) -> an RGB grid of :data:`NUM_PANELS`
    titled panels (one row, ``panel_size`` cells; 0 = the crop size), with an optional header."""
    image = _to_rgb(sample["image"], image_format)
    sem = vis.to_numpy(sample["sem_seg"]).astype(np.int64)
    center = vis.to_numpy(sample["center"]).astype(np.float32)
    offset = vis.to_numpy(sample["offset"]).astype(np.float32)
    weight = vis.to_numpy(sample["weight"]).astype(np.float32)
    if weight.ndim == 3:
        weight = weight[0]
    points = vis.to_numpy(sample.get("points", np.zeros((0, 3)))).reshape(-1, 3).astype(np.int64)
    C = center.shape[0]
    names = list(class_names) + [f"class {c}" for c in range(len(class_names), C)]
    colors = vis.class_colors(C)

    h, w = image.shape[:2]
    size = int(panel_size) if panel_size else max(h, w)
    scale = size / max(h, w)
    big = vis.fit_panel(image, size)
    pts_scaled = (points[:, :2].astype(np.float64) + 0.5) * scale - 0.5
    radius = max(2, int(round(2 * max(scale, 1.0))))
    img_panel = vis.draw_points(big, pts_scaled, points[:, 2], colors, radius=radius)

    sem_classes = [int(v) for v in np.unique(sem) if 0 < v <= C]
    sem_title = "semantic target: " + (", ".join(names[v - 1] for v in sem_classes) or "background only")
    if (sem == 255).any():
        sem_title += " (+ignore)"
    mag = vis.offset_magnitude(offset)
    cents = centroids_from_offsets(offset, weight)
    direction = vis.fit_panel(vis.offset_direction_image(offset), size, nearest=True)
    direction = vis.draw_crosses(direction, (cents.astype(np.float64) + 0.5) * scale - 0.5, size=max(3, radius + 1))

    panels = [
        img_panel,
        vis.fit_panel(vis.colorize_semantic(sem), size, nearest=True),
        vis.fit_panel(vis.center_heatmap(center, vmax=1.0), size),
        vis.fit_panel(vis.offset_magnitude_image(offset), size, nearest=True),
        direction,
        vis.fit_panel(vis.weight_image(weight), size, nearest=True),
    ]
    titles = [
        f"input crop {w}x{h}, cues: {len(points)}",
        sem_title,
        f"center target (max over {C} classes), peak {float(center.max()) if center.size else 0.0:.2f}",
        f"offset target |(dy,dx)|, max {float(mag.max()) if mag.size else 0.0:.0f} px",
        f"offset direction (hue), x = {len(cents)} centroids",
        f"IAG weight: {100.0 * float((weight > 0).mean()):.0f}% of pixels",
    ]
    rows, row_titles = [panels], [titles]
    if header:
        rows, row_titles = [header] + rows, [None] + row_titles
    return vis.compose_grid(rows, row_titles, cell_size=(size, size))


def select_records(records: List[dict], num: int, indices=None, image_ids=None) -> List[int]:
    """Record indices to draw: ``indices`` (negative = from the end) then ``image_ids``, without
    repeats; neither given: the first ``num``. Raises ``IndexError`` / ``KeyError`` naming the bad one."""
    n = len(records)
    chosen: List[int] = []
    for i in indices or []:
        j = int(i)
        if not -n <= j < n:
            raise IndexError(f"--index {j} is out of range: the data set has {n} records (0..{n - 1})")
        chosen.append(j % n)
    if image_ids:
        where = {r.get("image_id"): k for k, r in enumerate(records)}
        for iid in image_ids:
            if iid not in where:
                raise KeyError(f"--image-id {iid!r} is not in the data set")
            chosen.append(where[iid])
    if not indices and not image_ids:
        chosen = list(range(min(max(int(num), 0), n)))
    return list(dict.fromkeys(chosen))


def visualize_dataset(
    cfg,
    dataset_name: str,
    output_dir: str,
    *,
    num: int = 4,
    indices: Optional[Sequence[int]] = None,
    image_ids: Optional[Sequence[str]] = None,
    seed: int = 0,
    panel_size: int = 256,
    keep_going: bool = False,
) -> List[str]:
    """Write ``<output_dir>/<index>_<image_id>.png`` for the chosen records of ``dataset_name``
    (:func:`select_records`; layout: module docstring) and return the paths.

    Raises ``KeyError`` (unknown data set / image id), ``IndexError`` (bad index) and the mapper's
    :class:`~bestie_d2.data.errors.BestieDataError` (e.g. ``MissingDataError`` for a missing cue
    file or WSSS map, naming the image and the file). With ``keep_going`` a failing sample is
    logged and skipped instead; the error is raised only if every sample failed.
    """
    check_dataset(dataset_name)
    records = DatasetCatalog.get(dataset_name)
    if not records:
        raise ValueError(f"data set {dataset_name!r} has no records")
    chosen = select_records(records, num, indices, image_ids)
    if not chosen:
        raise ValueError("no sample selected (--num 0?)")
    mapper = BestieDatasetMapper(cfg, is_train=True)
    names = dataset_class_names(dataset_name, cfg.BESTIE.NUM_CLASSES)
    os.makedirs(output_dir, exist_ok=True)
    paths, errors = [], []
    for i in chosen:
        rec = records[i]
        mapper.rng = np.random.default_rng([int(seed), int(i)])
        try:
            sample = mapper(rec)
        except Exception as e:
            if not keep_going:
                raise
            logger.error(f"sample {i} ({rec.get('image_id')}): {e}")
            errors.append(e)
            continue
        header = (f"{dataset_name} #{i}  {rec.get('image_id')}  |  {cfg.BESTIE.SUPERVISION}-label route  |  "
                  f"labels: {label_names(sample['image_label'], names)}  |  seed {seed}")
        grid = render_training_sample(sample, class_names=names, image_format=cfg.INPUT.FORMAT,
                                      panel_size=panel_size, header=header)
        safe_id = str(rec.get("image_id", i)).replace(os.sep, "_")
        paths.append(vis.save_png(os.path.join(output_dir, f"{i:05d}_{safe_id}.png"), grid))
    if errors:
        logger.warning(f"{len(errors)} of {len(chosen)} samples failed")
        if not paths:
            raise errors[0]
    logger.info(f"wrote {len(paths)} PNGs to {output_dir}")
    return paths

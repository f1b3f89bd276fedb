"""Training pictures in TensorBoard (issue 14, item 5): ``VIS_PERIOD > 0`` (detectron2's key).

Every ``VIS_PERIOD`` iterations (iterations ``0, P, 2P, ...``, detectron2's ``storage.iter % P == 0``
convention) :class:`TrainingVisHook` writes one picture through ``EventStorage.put_image`` under
the tag :data:`TAG`; detectron2's ``TensorboardXWriter`` sends it to TensorBoard when the periodic
writer next runs (and then clears it from the storage). The picture shows the first sample of
that iteration's batch (the training crop) in four panels:

1. **pseudo labels**: the pseudo instances of the mapper's targets (each pixel with ``weight > 0``
   belongs to the center its target offset points to; class = its WSSS label), drawn by
   detectron2's ``Visualizer``, with the instance cues (dots) and the instance centers (crosses);
2. **refined labels**: the same for the self-refinement targets of that step (when refinement is
   active; otherwise a note saying from which iteration it starts), with their mean confidence;
3. **predicted center map**: max over the classes, colour scale fixed to ``[0, 1]``;
4. **predicted offset magnitude** ``sqrt(dy² + dx²)``, scaled to its maximum (given in the title).

Cost: nothing when ``VIS_PERIOD`` is 0 (the hook is not registered; the model only tests a boolean).
Otherwise **no second forward pass**: before a visualised step the hook sets the model's
``vis_capture``; that step's training forward keeps detached CPU copies of its first sample's input,
targets and output maps in ``model.last_vis``, and after the step the hook draws them (0.02-0.08 s
on a CPU for a 128-px crop) and clears them. Drawing never touches the global RNGs (numpy's state is
restored, the colours are fixed), so training with and without pictures is identical. A drawing
failure is logged once and never stops the training.
"""
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
from detectron2.engine import HookBase

from .hooks import unwrap_model

__all__ = ["TAG", "TrainingVisHook", "instances_from_targets", "render_training_vis"]

logger = logging.getLogger(__name__)

#: The ``put_image`` name (TensorBoard tag) of the training picture.
TAG = "train/bestie_labels_and_maps"


def instances_from_targets(offset, weight, sem_seg) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instances encoded by IAG targets: pixels with ``weight > 0`` grouped by the center their
    offset points to (``round(p + offset(p))``) and their semantic label.

    Args:
        offset: ``(2, H, W)`` (dy, dx); weight: ``(H, W)``; sem_seg: ``(H, W)`` labels (c + 1).
    Returns:
        ``masks`` ``(N, H, W)`` bool, ``classes`` ``(N,)`` int64 (``label - 1``; -1 for a pixel group
        without a class label), ``centers`` ``(N, 2)`` int64 ``(y, x)``.
    """
    off = np.asarray(offset, dtype=np.float32)
    w = np.asarray(weight, dtype=np.float32)
    sem = np.asarray(sem_seg).astype(np.int64)
    H, Wd = w.shape
    ys, xs = np.nonzero(w > 0)
    if ys.size == 0:
        return np.zeros((0, H, Wd), bool), np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    vy = np.rint(ys + off[0, ys, xs]).astype(np.int64)
    vx = np.rint(xs + off[1, ys, xs]).astype(np.int64)
    keys = np.stack([sem[ys, xs], vy, vx], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    lab = np.zeros((H, Wd), np.int64)
    lab[ys, xs] = inv.reshape(-1) + 1
    n = len(uniq)
    masks = lab[None] == np.arange(1, n + 1).reshape(n, 1, 1)
    cls = uniq[:, 0] - 1
    return masks, cls, uniq[:, 1:]


def _label_names(classes, class_names: Optional[Sequence[str]]) -> List[str]:
    out = []
    for c in classes.tolist():
        if class_names is not None and 0 <= c < len(class_names):
            out.append(str(class_names[c]))
        else:
            out.append("?" if c < 0 else str(c))
    return out


def _instance_panel(image, masks, classes, class_names, scale, points=None, centers=None) -> np.ndarray:
    from detectron2.utils.visualizer import Visualizer

    from ..utils.vis import class_colors, draw_crosses, draw_points

    n = len(masks)
    vis = Visualizer(image, metadata=None, scale=scale)
    if n:
        cols = class_colors(max(len(class_names or ()), int(classes.max()) + 1, 1))
        colors = [tuple(float(v) / 255.0 for v in cols[c]) if c >= 0 else (0.6, 0.6, 0.6) for c in classes.tolist()]
        out = vis.overlay_instances(masks=masks, labels=_label_names(classes, class_names), assigned_colors=colors)
    else:
        out = vis.output
    panel = np.ascontiguousarray(out.get_image())
    if centers is not None and len(centers):
        panel = draw_crosses(panel, np.asarray(centers, np.float64) * scale)
    if points is not None and len(points):
        pts = np.asarray(points)
        panel = draw_points(panel, pts[:, :2] * scale, pts[:, 2], class_colors(max(int(pts[:, 2].max()) + 1, 1)))
    return panel


def render_training_vis(snapshot: dict, class_names: Optional[Sequence[str]] = None, *, input_format: str = "RGB",
                        scale: float = 2.0, iteration: Optional[int] = None,
                        refine_note: str = "refinement not active") -> np.ndarray:
    """The training picture of one captured sample (``BESTIE.last_vis``) as ``(H, W, 3)`` uint8 RGB."""
    from detectron2.data.detection_utils import convert_image_to_rgb

    from ..utils.vis import (
        center_heatmap, compose_grid, fit_panel, offset_magnitude, offset_magnitude_image, text_panel,
    )

    img = snapshot["image"].numpy().transpose(1, 2, 0)
    img = np.ascontiguousarray(convert_image_to_rgb(img, input_format).astype(np.uint8))
    h, w = img.shape[:2]
    size = int(round(max(h, w) * scale))
    pseudo, refined, pred = snapshot["pseudo"], snapshot.get("refined"), snapshot["pred"]
    sem = pseudo["sem_seg"].numpy()

    pm, pc, pctr = instances_from_targets(pseudo["offset"].numpy(), pseudo["weight"].numpy(), sem)
    pts = snapshot.get("points")
    pts = None if pts is None else pts.numpy().astype(np.float64)  # (K, 3) [y, x, c]
    panels = [_instance_panel(img, pm, pc, class_names, scale, pts, pctr)]
    titles = [f"pseudo labels: {len(pm)} inst., {0 if pts is None else len(pts)} cues"]
    if refined is not None:
        rw = refined["weight"].numpy()
        rm, rc, rctr = instances_from_targets(refined["offset"].numpy(), rw, sem)
        conf = float(rw[rw > 0].mean()) if (rw > 0).any() else 0.0
        panels.append(_instance_panel(img, rm, rc, class_names, scale, None, rctr))
        titles.append(f"refined labels: {len(rm)} inst., mean conf {conf:.2f}")
    else:
        panels.append(text_panel(refine_note, (int(round(h * scale)), size)))
        titles.append("refined labels")
    panels.append(fit_panel(center_heatmap(pred["center"].numpy(), vmax=1.0), size))
    titles.append(f"pred. center (max {float(pred['center'].max()):.2f}, scale 0-1)")
    mag = offset_magnitude(pred["offset"].numpy())
    panels.append(fit_panel(offset_magnitude_image(pred["offset"].numpy()), size))
    titles.append(f"pred. |offset| (max {float(mag.max()):.3g} px)")
    rows: list = [[fit_panel(p, size) for p in panels]]
    row_titles: list = [titles]
    head = " ".join(s for s in (f"iter {iteration}" if iteration is not None else "",
                               f"image {snapshot.get('image_id')}" if snapshot.get("image_id") else "",
                               f"({snapshot.get('supervision', '')} supervision)") if s)
    return compose_grid([head] + rows, [None] + row_titles)


class TrainingVisHook(HookBase):
    """Writes :func:`render_training_vis` of one training sample every ``period`` iterations
    (module docstring). Register it only for BESTIE models and on the main process (the trainer
    does), before the ``PeriodicWriter``."""

    def __init__(self, period: int, class_names: Optional[Sequence[str]] = None, input_format: str = "RGB",
                 refine_enabled: bool = True, refine_start_iter: int = 0, scale: float = 2.0):
        self.period = int(period)
        if self.period <= 0:
            raise ValueError(f"TrainingVisHook needs a period > 0, got {period}")
        self.class_names = None if class_names is None else list(class_names)
        self.input_format = input_format
        self.scale = float(scale)
        self.refine_note = (f"refinement not active (starts at iteration {int(refine_start_iter)})"
                            if refine_enabled else "refinement off (MODEL.BESTIE.REFINE.ENABLED False)")
        self._failed = False

    @classmethod
    def from_config(cls, cfg):
        from detectron2.data import MetadataCatalog

        names = None
        if len(cfg.DATASETS.TRAIN):
            names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", None)
        r = cfg.MODEL.BESTIE.REFINE
        return cls(cfg.VIS_PERIOD, names, cfg.INPUT.FORMAT, r.ENABLED, r.START_ITER)

    def before_step(self):
        model = unwrap_model(self.trainer.model)
        model.vis_capture = self.trainer.iter % self.period == 0

    def after_step(self):
        model = unwrap_model(self.trainer.model)
        snap = getattr(model, "last_vis", None)
        model.vis_capture = False
        model.last_vis = None
        if snap is None:
            return
        state = np.random.get_state()
        try:
            img = render_training_vis(snap, self.class_names, input_format=self.input_format, scale=self.scale,
                                      iteration=self.trainer.iter, refine_note=self.refine_note)
        except Exception as e:  # a picture is never worth a crashed training
            if not self._failed:
                self._failed = True
                logger.warning(f"TrainingVisHook: could not draw the training picture "
                               f"({type(e).__name__}: {e}); training continues", exc_info=True)
            return
        finally:
            np.random.set_state(state)
        self.trainer.storage.put_image(TAG, np.ascontiguousarray(img.transpose(2, 0, 1)))  # (3, H, W) uint8

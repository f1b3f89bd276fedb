"""The CAM stages: ``cues`` (PAM peaks, one ``<id>.txt`` per image) and ``maps`` (CAM semantic maps,
one ``<id>.png``), with :mod:`bestie_d2.tools.extract_cues`'s inference (docs/method.md §8.3).

Runs in every process: each rank takes every ``world_size``-th training image. Images whose output
exists are skipped, so a killed stage continues where it stopped. The main process then measures
the outputs against the ground truth where the training records have it (toy set, VOC images with
``SegmentationObject``): cue statistics (:func:`~bestie_d2.evaluation.cue_stats.cue_statistics`)
and the maps' mIoU (:func:`~bestie_d2.evaluation.semantic_maps.semantic_map_miou`).
"""
from typing import Optional

import torch
from detectron2.data import DatasetCatalog
from detectron2.utils import comm

from ...evaluation.cue_stats import cue_statistics
from ...evaluation.semantic_maps import semantic_map_miou
from ...tools.extract_cues import build_cam_model, run_cam_inference

__all__ = ["cam_stage"]


def cam_stage(cfg, dataset: str, *, cues_dir: Optional[str] = None, maps_dir: Optional[str] = None,
              cue_threshold: float = 0.0) -> dict:
    """Write the cues (``cues_dir``) or maps (``maps_dir``) of every image of ``dataset`` with the
    PAM classifier of ``cfg`` (``MODEL.WEIGHTS``); ``cue_threshold``: the BESTIE config's
    ``BESTIE.DATA.CUE_THRESHOLD``, applied in the cue statistics as in training.

    Returns ``{"cues_dir" | "wsss_dir", "images", "skipped", "points", "empty"}`` plus
    ``pam_cues`` (cue statistics) or ``semantic_miou`` (None without ground truth).
    """
    records = DatasetCatalog.get(dataset)
    ids = [r["image_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"data set '{dataset}' has duplicate image ids: the outputs would collide")
    model = build_cam_model(cfg)
    shard = records[comm.get_rank()::comm.get_world_size()]
    with torch.no_grad():
        counts = run_cam_inference(cfg, model, shard, cues_dir=cues_dir, sem_dir=maps_dir,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)
    comm.synchronize()
    total = {k: sum(c[k] for c in comm.all_gather(counts)) for k in counts}
    if not comm.is_main_process():
        return {}
    if cues_dir is not None:
        num_classes = int(cfg.BESTIE.NUM_CLASSES)
        stats = cue_statistics(records, cues_dir, num_classes, threshold=cue_threshold)
        return {"cues_dir": cues_dir, **total, "pam_cues": stats}
    return {"wsss_dir": maps_dir, **total, "semantic_miou": semantic_map_miou(records, maps_dir)}

"""The ``export`` stage: the trained BESTIE's predictions on the training split as a COCO json
(:func:`bestie_d2.maskrcnn_refinement.export_pseudo_coco`, docs/method.md §9), and the helper that
loads a trained model for it and for the ``grid`` stage."""
from detectron2.modeling import build_model
from detectron2.utils import comm

from ...engine.checkpoint import SafeCheckpointer
from ...engine.trainer import Trainer
from ...maskrcnn_refinement import export_pseudo_coco

__all__ = ["export_stage", "load_trained_model"]


def load_trained_model(cfg):
    """``build_model(cfg)`` with ``cfg.MODEL.WEIGHTS`` loaded, in eval mode."""
    model = build_model(cfg)
    SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    return model


def export_stage(cfg, dataset: str, output_json: str, *, score_threshold: float = 0.0, min_area: int = 0) -> dict:
    """Write the pseudo labels of ``dataset`` to ``output_json`` with the BESTIE of ``cfg``.

    Point-guided decoding (one pseudo instance per point label) follows
    ``cfg.MODEL.BESTIE.TEST.USE_POINTS``; only each image's labelled classes are kept; instances
    scoring below ``score_threshold`` or smaller than ``min_area`` pixels are dropped. Every rank
    predicts its share of the images, the main process writes the json. Returns
    ``{"json", "summary"}`` (the summary of :func:`export_pseudo_coco`: images, instances, per class).
    """
    model = load_trained_model(cfg)
    summary = export_pseudo_coco(
        model, dataset, output_json, mapper=Trainer.build_mapper(cfg, is_train=False),
        score_threshold=score_threshold, min_area=min_area, use_points=bool(cfg.MODEL.BESTIE.TEST.USE_POINTS),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    return {"json": output_json, "summary": summary} if comm.is_main_process() else {}

"""Command line of the pseudo-label export (Mask R-CNN refinement, step 1).

    python -m bestie_d2.tools.export_pseudo_coco \\
        --config-file configs/VOC/bestie_HRNet48_image_label.yaml \\
        --dataset voc_2012_train_aug --output output/pseudo/voc_train_aug.json \\
        [--score-threshold T] [--no-label-filter] [--min-area A] [--flip] [--points {auto,on,off}] \\
        [--num-gpus N] \\
        MODEL.WEIGHTS output/bestie/model_final.pth

Builds the config's model and test mapper, loads ``MODEL.WEIGHTS`` and runs
:func:`bestie_d2.maskrcnn_refinement.export_pseudo_coco` (filters, json format: that module).
With ``--num-gpus N`` (N CPU processes without CUDA) the images are split over the processes and
the main process writes the json. With point labels (``BESTIE.SUPERVISION point``, or
``--points on``) each image's instances are decoded from its points, one per point (its
``center_points_file``), instead of from predicted centers. Step 2 trains Detectron2's Mask R-CNN on it
(``configs/*/mask_rcnn_*refine.yaml``).
"""
import logging
import sys
from typing import Optional

import bestie_d2  # noqa: F401  (prepares detectron2, registers everything)
from detectron2.utils import comm

from ..maskrcnn_refinement import export_pseudo_coco, register_pseudo_coco_from_config
from ..utils.cli import exit_on_user_error, launcher_argument_parser, load_config_or_exit

__all__ = ["build_argument_parser", "build_test_mapper", "main", "invoke_main", "cli"]

logger = logging.getLogger(__name__)


def build_argument_parser():
    """The multi-process tool parser (``--config-file``, ``--num-gpus``, ``--num-machines``,
    ``--machine-rank``, ``--dist-url``, opts; :func:`~bestie_d2.utils.cli.launcher_argument_parser`)
    plus the export's flags."""
    p = launcher_argument_parser("Export a trained model's predictions on a training split as COCO pseudo labels.",
                                 epilog=__doc__.split("\n\n")[1])
    p.add_argument("--dataset", default="", help="registered split to predict on (default: first of DATASETS.TRAIN)")
    p.add_argument("--output", required=True, help="output json path")
    p.add_argument("--score-threshold", type=float, default=0.0, help="drop instances scoring below this")
    p.add_argument("--no-label-filter", action="store_true", help="keep classes outside the image labels")
    p.add_argument("--min-area", type=int, default=0, help="drop instances with fewer pixels")
    p.add_argument("--flip", action="store_true", help="flip TTA (default: the config's MODEL.BESTIE.TEST.FLIP)")
    p.add_argument("--points", choices=("auto", "on", "off"), default="auto",
                   help="point-guided decoding, one instance per point label (auto: on when BESTIE.SUPERVISION is point)")
    p.add_argument("--num-workers", type=int, default=2, help="data-loading workers per process")
    return p


def setup(args):
    """Config (file + opts, CPU fallback), loggers. Unlike training, nothing is written to OUTPUT_DIR."""
    from detectron2.utils.logger import setup_logger

    from ..config import load_config

    cfg = load_config(args.config_file, args.opts)
    rank = comm.get_rank()
    setup_logger(distributed_rank=rank, name="detectron2")
    setup_logger(distributed_rank=rank, name="bestie_d2", abbrev_name="bestie")
    return cfg


def build_test_mapper(cfg):
    """The model's own test-time mapper (BESTIE, PAM) or detectron2's DatasetMapper."""
    from detectron2.data import DatasetMapper

    from ..engine.trainer import Trainer

    mapper = Trainer.build_mapper(cfg, is_train=False)
    return mapper if mapper is not None else DatasetMapper(cfg, is_train=False)


def main(args) -> Optional[dict]:
    from detectron2.modeling import build_model

    from ..engine.checkpoint import SafeCheckpointer

    cfg = setup(args)
    register_pseudo_coco_from_config(cfg)
    dataset = args.dataset or (cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else "")
    if not dataset:
        raise ValueError("no --dataset given and DATASETS.TRAIN is empty")
    use_points = {"on": True, "off": False}.get(args.points, cfg.BESTIE.SUPERVISION == "point")
    if use_points:
        cfg.defrost()
        cfg.MODEL.BESTIE.TEST.USE_POINTS = True  # the model decodes with the points the mapper adds
        if cfg.BESTIE.SUPERVISION != "point":
            logger.warning("--points on with BESTIE.SUPERVISION image: the points come from the peak cue files")
        cfg.freeze()
    logger.info(f"point-guided decoding: {'on' if use_points else 'off'}")
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting the predictions of a randomly initialised model")
    return export_pseudo_coco(
        model,
        dataset,
        args.output,
        mapper=build_test_mapper(cfg),
        score_threshold=args.score_threshold,
        keep_image_label_classes=not args.no_label_filter,
        min_area=args.min_area,
        flip_tta=True if args.flip else None,
        use_points=use_points,
        num_workers=args.num_workers,
        missing_input=cfg.BESTIE.DATA.MISSING_INPUT,
    )


def invoke_main(argv=None):
    from ..engine.launch import launch_from_args

    parser = build_argument_parser()
    args = parser.parse_args(argv)
    load_config_or_exit(parser, "export_pseudo_coco", args.config_file, args.opts)
    return exit_on_user_error("export_pseudo_coco", launch_from_args, main, args)


def cli(argv=None) -> int:
    """Console script ``bestie-export-pseudo-coco``: parse ``argv`` (default ``sys.argv[1:]``), run, exit 0."""
    invoke_main(argv)
    return 0


if __name__ == "__main__":
    invoke_main(sys.argv[1:])  # pragma: no cover

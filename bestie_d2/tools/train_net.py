"""Detectron2-style launcher for every bestie_d2 stage (PAM classifier, BESTIE, Mask R-CNN).

    python train_net.py --config-file configs/toy/bestie_image_label.yaml
    python train_net.py --config-file configs/VOC/bestie_HRNet48_image_label.yaml --num-gpus 4
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume          # continue from OUTPUT_DIR/last_checkpoint

Standard detectron2 flags: --config-file, --eval-only, --resume, --num-gpus, --num-machines,
--machine-rank, --dist-url, trailing KEY VALUE opts. Without CUDA, --num-gpus N starts N CPU
processes with the gloo backend.
"""
import logging

import bestie_d2  # noqa: F401  (prepares detectron2, registers everything)
from bestie_d2.config import load_config
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..maskrcnn_refinement import register_pseudo_coco_from_config
from ..engine.checkpoint import SafeCheckpointer
from ..engine.launch import launch_from_args
from ..engine.trainer import Trainer
from ..utils.cli import exit_on_user_error, load_config_or_exit
from ..utils.env import environment_info, format_environment

__all__ = ["setup", "main", "invoke_main"]

logger = logging.getLogger("bestie_d2")


def setup(args):
    """load_config (file, opts, CPU fallback, freeze) → pseudo-COCO registration → default_setup
    → the ``bestie_d2`` logger (console + ``OUTPUT_DIR/log.txt``, as default_setup does for
    detectron2's) → one log line describing the environment."""
    cfg = load_config(args.config_file, args.opts)
    default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers only; ours would stay silent
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="bestie_d2", abbrev_name="bestie")
    register_pseudo_coco_from_config(cfg)  # BESTIE.PSEUDO_COCO (Mask R-CNN refinement stage)
    logger.info("Environment: " + format_environment(environment_info(seed=cfg.SEED)))
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main(argv=None):
    """Detectron2's ``default_argument_parser``; the config is checked before any process starts
    (an unknown key or an option among the overrides: one line and exit 2); a data error of the
    run (e.g. the data check, an empty pseudo-label json) ends with one line and exit 1."""
    parser = default_argument_parser()
    args = parser.parse_args(argv)
    load_config_or_exit(parser, "train_net", args.config_file, args.opts)
    print("Command Line Args:", args)
    return exit_on_user_error("train_net", launch_from_args, main, args)


if __name__ == "__main__":
    invoke_main()  # pragma: no cover

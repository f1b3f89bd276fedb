"""bestie-pipeline: one command from a data set to refined instance masks.

    bestie-pipeline --supervision image                      # VOC 2012, R50, image labels
    bestie-pipeline --supervision point --backbone HRNet48   # VOC 2012, point labels
    bestie-pipeline --preset coco --supervision image        # COCO 2017
    bestie-pipeline --preset toy                             # the demo (make demo), CPU, minutes
    bestie-pipeline ... --dataset my_train my_val --bestie-opts SOLVER.MAX_ITER 20000 --num-gpus 4

(also ``python -m bestie_d2.tools.pipeline``). Every stage writes into its folder of the run folder
<output>/<supervision>/ and leaves a record (stage.json). A rerun skips the finished stages, continues
a killed stage from its last checkpoint, and reruns a stage whose config (file + overrides), settings
or inputs changed, together with every later stage that reads its outputs. At the end: a table of
mAP25/50/70/75 (VOC) or mask AP (COCO) per evaluated stage, the cue statistics, the pseudo-label
counts and the time per stage; results.json holds them with the environment.
"""
import argparse
import os
import sys

import bestie_d2  # noqa: F401  (prepares detectron2, registers models and data sets)

from ..data.errors import BestieDataError
from ..pipeline import PRESETS, REFINERS, STAGE_HELP, STAGES, OptionsError, PipelineOptions, run_pipeline

__all__ = ["build_parser", "main", "cli"]


def _stage_epilog() -> str:
    lines = ["stages (in this order; the point route leaves out cues, and pam/maps when WSSS maps are given):"]
    lines += [f"  {s:<7} {STAGE_HELP[s]}" for s in STAGES]
    lines.append("\ntorch uses every core for its threads (the demo's numbers depend on the count) unless "
                 "OMP_NUM_THREADS is set.")
    lines.append("\nconfig files per preset (configs/<VOC|COCO|toy>/): pam = pam_vgg16.yaml (toy: pam.yaml), "
                 "bestie = bestie_<backbone>_<supervision>_label.yaml (toy: bestie_<supervision>_label.yaml), "
                 "refine = mask_rcnn_R50_FPN_refine.yaml | pointrend_R50_FPN_refine.yaml "
                 "(toy: mask_rcnn_refine.yaml | pointrend_refine.yaml). The cues and maps stages use the PAM config.")
    return "\n".join(lines)


def build_parser(**defaults) -> argparse.ArgumentParser:
    """The ``bestie-pipeline`` parser; ``defaults`` replace flag defaults (a preset's, e.g. the demo's)."""
    p = argparse.ArgumentParser(prog="bestie-pipeline", description=__doc__, epilog=_stage_epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_flags(p)
    _add_input_flags(p)
    _add_stage_flags(p)
    p.set_defaults(**defaults)
    return p


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """What to run, where, resuming, processes."""
    g = p.add_argument_group("what to run")
    g.add_argument("--preset", choices=tuple(PRESETS), default="voc",
                   help="config family of the stage configs: voc (default), coco, or toy (the demo: "
                        "embedded toy set, tiny CPU models, --output output/demo, --seed 1)")
    g.add_argument("--supervision", choices=("image", "point"), default="image",
                   help="image-level labels (PAM cues + maps; default) or one point label per instance")
    g.add_argument("--backbone", default=None, help="BESTIE backbone of the voc / coco presets: R50 (default) or HRNet48")
    g.add_argument("--dataset", nargs=2, metavar=("TRAIN", "TEST"), default=None,
                   help="registered training and test data sets (default: the BESTIE config's DATASETS); the "
                        "class count of every stage follows TRAIN's thing_classes")
    g.add_argument("--refiner", choices=REFINERS, default="maskrcnn",
                   help="refinement network trained on the pseudo labels: maskrcnn (default) or pointrend; each "
                        "has its own folder refine_<refiner>, so both can be trained on one export")
    g.add_argument("--output", default=None,
                   help="results root; the run folder is <output>/<supervision> (default: the preset's, "
                        "output/pipeline/<voc|coco> or output/demo)")
    g.add_argument("--seed", type=int, default=None,
                   help="SEED of every training stage (default: the preset's, else each config's own SEED)")
    g = p.add_argument_group("resuming")
    g.add_argument("--force", action="store_true", help="rerun every stage from an empty folder")
    g.add_argument("--force-from", choices=STAGES, default=None, help="rerun this stage and every later one")
    g.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    g = p.add_argument_group("processes (Detectron2's launch; training and inference stages)")
    g.add_argument("--num-gpus", type=int, default=1,
                   help="processes per machine, one per GPU (without CUDA: CPU processes with gloo)")
    g.add_argument("--num-machines", type=int, default=1,
                   help="machines; run the same command on each, with --output on a shared file system")
    g.add_argument("--machine-rank", type=int, default=0, help="this machine's rank (machine 0 writes the records)")
    g.add_argument("--dist-url", default="auto", help="initialisation URL of the process group (auto: a free local port)")


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    """Outputs of stages the user already has."""
    g = p.add_argument_group("inputs you already have (each leaves out the stage that makes it)")
    g.add_argument("--cues-dir", default=None, help="image route: a folder of cue files <id>.txt (x y c conf); leaves out cues")
    g.add_argument("--wsss-dir", default=None,
                   help="WSSS maps <id>.png (0 bg, c+1 class c, 255 ignore) from any method; leaves out maps "
                        "(and pam when no cues are to be made)")
    g.add_argument("--points-dir", default=None,
                   help="point route: point-label files <id>.txt (default: the records' Center_points)")
    g.add_argument("--pam-weights", default=None, help="a trained PAM classifier; leaves out pam")
    g.add_argument("--bestie-weights", default=None,
                   help="a trained BESTIE (e.g. converted with bestie-convert-weights); leaves out pam, cues, maps, bestie")


def _add_stage_flags(p: argparse.ArgumentParser) -> None:
    """Config files and overrides per stage, the export's filters, the refiner's init, the grid."""
    g = p.add_argument_group("stage configs: each --<stage>-opts takes KEY VALUE pairs applied after the pipeline's settings")
    g.add_argument("--pam-config", default=None, help="PAM classifier config (also used by cues and maps)")
    g.add_argument("--bestie-config", default=None, help="BESTIE config")
    g.add_argument("--refine-config", default=None, help="refinement config (Mask R-CNN or PointRend)")
    for stage, what in (("pam", "PAM training, cues and maps"), ("cues", "cue extraction (e.g. PAM_CUES.TOP_K)"),
                        ("maps", "map making (e.g. PAM_CUES.SEMANTIC_REFINE grabcut)"), ("bestie", "BESTIE training"),
                        ("export", "the export's model (e.g. MODEL.BESTIE.TEST.FLIP True)"),
                        ("refine", "the refiner (e.g. MODEL.WEIGHTS R-50.pkl)")):
        g.add_argument(f"--{stage}-opts", nargs="*", default=[], metavar="KEY VALUE", help=f"overrides of {what}")
    g = p.add_argument_group("export and refinement")
    g.add_argument("--pseudo-score-threshold", type=float, default=0.0,
                   help="pseudo labels scoring below this are not exported (default 0: every prediction of a labelled class)")
    g.add_argument("--pseudo-min-area", type=int, default=0, help="pseudo labels with fewer pixels are not exported")
    g.add_argument("--refine-init", choices=("config", "bestie"), default="config",
                   help="refiner backbone init: the config's MODEL.WEIGHTS (default; random when empty) or the "
                        "trained BESTIE's ResNet (no ImageNet weights at hand)")
    g.add_argument("--grid-images", type=int, default=4, help="images per row group of grid.png")


def main(argv=None, **defaults) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the results dict. A setting that
    cannot work (a flag, a config key, a data set) exits with status 2 and one
    ``bestie-pipeline: error:`` line; a data error found by a stage (a missing or malformed file,
    named with its path) exits with status 1 and that line."""
    import torch

    parser = build_parser(**defaults)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # torch's intra-op threads: every core (the demo's fixed setting: its numbers depend on it),
    # unless OMP_NUM_THREADS says otherwise (torch then follows it already)
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        return run_pipeline(PipelineOptions.from_namespace(args))
    except OptionsError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except BestieDataError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")


def cli(argv=None) -> int:
    """Console script ``bestie-pipeline``: parse ``argv`` (default ``sys.argv[1:]``), run, exit 0."""
    main(argv)
    return 0


if __name__ == "__main__":
    cli()

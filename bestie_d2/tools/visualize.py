"""``bestie-visualize``: see what BESTIE is trained on, one PNG per training sample::

    python -m bestie_d2.tools.visualize --config-file configs/toy/bestie_image_label.yaml \\
        --dataset bestie_toy_train --output output/vis [--num 4] [--index 3 17 ...] \\
        [--image-id ID ...] [--seed 0] [--panel-size 256] [--keep-going] [KEY VALUE ...]

The PNG layout (six titled target panels of a mapper sample) is described in
:mod:`bestie_d2.visualization.training_sample`; the demo grid (labels vs. a model's output) in
:mod:`bestie_d2.visualization.demo_grid`. Without ``--index``/``--image-id`` the first ``--num``
records are shown. Trailing ``KEY VALUE`` pairs override the config (e.g.
``BESTIE.DATA.PEAK_POINTS_DIR``, ``BESTIE.DATA.WSSS_DIR``, ``BESTIE.INPUT.CROP_SIZE``).
"""
import argparse
import sys
from typing import List

import bestie_d2  # noqa: F401  (prepares detectron2, registers models and data sets)

from ..data.errors import BestieDataError, MissingDataError
from ..utils.cli import parse_and_load_config, tool_argument_parser
from ..visualization.training_sample import visualize_dataset

__all__ = ["build_parser", "main", "cli"]


def build_parser() -> argparse.ArgumentParser:
    p = tool_argument_parser(
        "Draw what BestieDatasetMapper feeds BESTIE (augmented crop + cues, semantic, "
        "center, offset and IAG-weight targets), one PNG per sample."
    )
    p.add_argument("--dataset", default=None, help="registered data set (default: DATASETS.TRAIN[0])")
    p.add_argument("--output", required=True, help="folder for the PNGs")
    p.add_argument("--num", type=int, default=4, help="first N records (without --index/--image-id)")
    p.add_argument("--index", type=int, nargs="+", default=None, help="record indices to draw")
    p.add_argument("--image-id", nargs="+", default=None, help="image ids to draw")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (per sample: [seed, index])")
    p.add_argument("--panel-size", type=int, default=256, help="panel side in px (0 = crop size)")
    p.add_argument("--keep-going", action="store_true", help="skip samples whose inputs fail")
    return p


def _hint(cfg, err) -> str:
    if not isinstance(err, MissingDataError):
        return ""
    d = cfg.BESTIE.DATA
    key = "PEAK_POINTS_DIR" if cfg.BESTIE.SUPERVISION == "image" else "CENTER_POINTS_DIR"
    return (f"\nhint: BESTIE.DATA.{key}={getattr(d, key)!r}, BESTIE.DATA.WSSS_DIR={d.WSSS_DIR!r} "
            "(empty = the data set's default folders); make cues with bestie_d2.tools.extract_cues "
            "and WSSS maps with bestie_d2.tools.cam_to_semantic, or pass the folders as KEY VALUE overrides")


def main(argv=None) -> List[str]:
    parser = build_parser()
    args, cfg = parse_and_load_config(parser, argv, "visualize")
    dataset = args.dataset or (cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None)
    if not dataset:
        parser.exit(2, "visualize: error: no --dataset and DATASETS.TRAIN is empty\n")
    try:
        return visualize_dataset(cfg, dataset, args.output, num=args.num, indices=args.index,
                                 image_ids=args.image_id, seed=args.seed, panel_size=args.panel_size,
                                 keep_going=args.keep_going)
    except (KeyError, IndexError) as e:
        parser.exit(2, f"visualize: error: {e.args[0] if e.args else e}\n")
    except (BestieDataError, OSError, ValueError) as e:
        parser.exit(1, f"visualize: error: {e}{_hint(cfg, e)}\n")


def cli(argv=None) -> int:
    """Console script ``bestie-visualize``: like :func:`main`, returning the exit status 0."""
    main(argv)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])

"""Check a BESTIE config's training inputs before training (the data check on its own).

The same check runs at the start of every BESTIE training (``bestie_d2.data.input_check``): every
image exists, every cue/point file parses, every WSSS map passes the WSSS reader (mode, size,
values in ``{0..C, 255}``), and the class conventions agree with the image labels (1-based cue
classes, WSSS maps without the background shift, cues outside their class's region, counted per
data set). All bad files are listed at once (file and line).

Usage::

    python -m bestie_d2.tools.check_data --config-file configs/VOC/bestie_R50_image_label.yaml \\
        [--dataset voc_2012_train_aug ...] [--report problems.txt] \\
        BESTIE.DATA.PEAK_POINTS_DIR /path/Peak_points BESTIE.DATA.WSSS_DIR /path/WSSS_maps

Exit status: 0 when the inputs pass, 1 when the check fails (the reasons on stderr), 2 for a usage
error (config file, unknown data set). Nothing is written except the ``--report`` file.
"""
import argparse
import logging
import sys
from typing import Dict, List, Optional

import bestie_d2  # noqa: F401  (prepares detectron2, registers the data sets)

from ..data.errors import BestieDataError
from ..data.datasets.catalog import check_dataset
from ..utils.cli import parse_and_load_config, tool_argument_parser

__all__ = ["build_parser", "check_data", "main", "cli"]

logger = logging.getLogger("bestie_d2.tools.check_data")


def check_data(cfg, dataset_names: Optional[List[str]] = None, report_file: Optional[str] = None) -> Dict:
    """Run the data check on ``dataset_names`` (default ``DATASETS.TRAIN``) with ``cfg``'s BESTIE
    settings; returns ``{"images": n, "kept": n, "datasets": [...]}`` or raises the check's error."""
    from detectron2.data import DatasetCatalog

    from ..data.input_check import check_training_inputs
    from ..data.mappers import BestieDatasetMapper

    names = list(dataset_names or cfg.DATASETS.TRAIN)
    if not names:
        raise KeyError("no --dataset given and DATASETS.TRAIN is empty")
    for n in names:
        check_dataset(n)
    mapper = BestieDatasetMapper(cfg, is_train=True)
    groups = {n: DatasetCatalog.get(n) for n in names}
    d = cfg.BESTIE.DATA
    kept = check_training_inputs(
        groups, mapper, d.MISSING_INPUT, names, check="full",
        max_mismatch_fraction=d.MAX_LABEL_MISMATCH_FRACTION,
        max_outside_fraction=d.MAX_CUES_OUTSIDE_FRACTION, report_file=report_file,
    )
    return {"images": sum(len(v) for v in groups.values()), "kept": len(kept), "datasets": names}


def build_parser() -> argparse.ArgumentParser:
    p = tool_argument_parser(
        "Check the training inputs of a BESTIE config (images, cue/point files, WSSS maps, "
        "class conventions) without training."
    )
    p.add_argument("--dataset", nargs="+", default=None, help="registered data sets (default: DATASETS.TRAIN)")
    p.add_argument("--report", default=None, help="write every problem line to this file")
    return p


def main(argv=None) -> Dict:
    parser = build_parser()
    args, cfg = parse_and_load_config(parser, argv, "check_data", abbrev_name="bestie")
    try:
        summary = check_data(cfg, args.dataset, args.report)
    except KeyError as e:
        parser.exit(2, f"check_data: error: {e.args[0] if e.args else e}\n")
    except (BestieDataError, OSError) as e:
        parser.exit(1, f"check_data: error: {e}\n")
    except ValueError as e:  # e.g. a bad BESTIE.DATA.MISSING_INPUT value
        parser.exit(2, f"check_data: error: {e}\n")
    print(
        f"check_data: OK: {summary['kept']} of {summary['images']} training images of "
        f"{', '.join(summary['datasets'])} pass (cue files and WSSS maps read, class conventions consistent)"
    )
    return summary


def cli(argv=None) -> int:
    """Console script ``bestie-check-data``: like :func:`main`, returning the exit status 0."""
    main(argv)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])

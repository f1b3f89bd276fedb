"""Extract instance cues (PAM peaks) and, optionally, CAM semantic maps from a trained PAM classifier.

docs/method.md §8.3. For every image of the data set(s), with its **ground-truth image labels**:
flip-averaged, per-class max-normalised CAMs at the original resolution
(:mod:`bestie_d2.modeling.cam`) -> 3x3 smoothing -> ``PAM_CUES.NMS_KERNEL`` max-pool NMS -> top
``PAM_CUES.TOP_K`` peaks per class with ``conf >= PAM_CUES.CONF_THRESHOLD`` -> one
``<output>/<image_id>.txt`` per image, lines ``x y c conf`` in original pixels
(:func:`bestie_d2.data.points.write_points`, atomic).

With ``--sem-output DIR`` the same pass also writes ``DIR/<image_id>.png``: uint8, 0 = background
(every labelled class's CAM below ``PAM_CUES.BG_THRESHOLD``), ``c + 1`` = class c (argmax of the
labelled classes' CAMs); with ``PAM_CUES.SEMANTIC_REFINE grabcut`` each labelled class's extent is
instead refined by GrabCut seeded from its CAM (:mod:`bestie_d2.modeling.cam_grabcut`). ``python -m bestie_d2.tools.cam_to_semantic`` writes only those maps.

Usage::

    python -m bestie_d2.tools.extract_cues --config-file configs/VOC/pam_vgg16.yaml \\
        --dataset voc_2012_train_aug --output datasets/VOC2012/Peak_points \\
        [--sem-output datasets/VOC2012/WSSS_maps] [--num-gpus 4] [--force] \\
        MODEL.WEIGHTS output/pam_vgg16/model_final.pth

* resumable: images whose output file(s) exist are skipped, unless ``--force``;
* several GPUs: ``--num-gpus N`` (Detectron2's ``launch``); the image list is sharded by rank;
* a tqdm progress bar on the main process and a summary at the end (images, points written,
  mean points per image).

Then point BESTIE at the outputs with ``BESTIE.DATA.PEAK_POINTS_DIR`` (and ``BESTIE.DATA.WSSS_DIR``).

Using a stronger WSSS method: the CAM semantic maps are only a baseline. To use another weakly
supervised semantic segmentation method (e.g. the DeepLab-V2-on-DRS maps of the paper), write its
predictions as single-channel PNGs ``<image_id>.png`` at the original image size with the same
convention (0 = background, ``c + 1`` = class c with the data set's contiguous class ids, 255 =
ignore; palette PNGs are fine, their indices are read) into a folder and set
``BESTIE.DATA.WSSS_DIR`` to that folder. Nothing else changes.
"""
import argparse
import logging
import os
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch

import bestie_d2  # noqa: F401  (prepares detectron2, registers models and data sets)
from bestie_d2.config import load_config
from bestie_d2.data.mappers import record_classes
from bestie_d2.engine.checkpoint import SafeCheckpointer
from bestie_d2.modeling.cam import cams_to_semantic, compute_cams, find_peaks, resize_for_cam
from bestie_d2.modeling.cam_grabcut import grabcut_semantic
from bestie_d2.engine.launch import launch_from_args
from bestie_d2.utils.cli import exit_on_user_error, launcher_argument_parser, load_config_or_exit
from bestie_d2.utils.io import atomic_write

from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

__all__ = [
    "build_parser",
    "setup_cfg",
    "build_cam_model",
    "write_png_atomic",
    "run_cam_inference",
    "semantic_from_cams",
    "main",
    "invoke_main",
    "cli",
]

logger = logging.getLogger("bestie_d2.tools.extract_cues")


def _tool_name(mode: str) -> str:
    return "extract_cues" if mode == "cues" else "cam_to_semantic"


def build_parser(mode: str = "cues") -> argparse.ArgumentParser:
    """The multi-process tool parser (:func:`~bestie_d2.utils.cli.launcher_argument_parser`:
    ``--config-file``, ``--num-gpus`` ..., opts) plus the data set / output arguments."""
    tool = _tool_name(mode)
    parser = launcher_argument_parser(
        __doc__.split("\n")[0] if mode == "cues" else
        "Write CAM semantic maps (0 bg, c+1 class c) from a trained PAM classifier.",
        epilog=(f"Example: python -m bestie_d2.tools.{tool} --config-file configs/toy/pam.yaml "
                "--dataset bestie_toy_train --output OUT_DIR [--num-gpus N] "
                "MODEL.WEIGHTS output/toy/pam/model_final.pth"),
    )
    parser.add_argument("--dataset", nargs="+", required=True, help="registered data set name(s)")
    if mode == "cues":
        parser.add_argument(
            "--output", "--cues-dir", dest="output", required=True,
            help="folder for <image_id>.txt cue files",
        )
        parser.add_argument(
            "--sem-output", "--sem-dir", dest="sem_output", default=None,
            help="also write CAM semantic maps <image_id>.png here (same pass)",
        )
    else:
        parser.add_argument(
            "--output", "--sem-dir", dest="output", required=True, help="folder for <image_id>.png maps"
        )
    parser.add_argument("--force", action="store_true", help="recompute existing outputs")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward (x2 with flip)")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="image loading workers (default DATALOADER.NUM_WORKERS)"
    )
    return parser


def setup_cfg(args):
    """Config file + trailing ``KEY VALUE`` overrides (:func:`bestie_d2.config.load_config`)."""
    return load_config(args.config_file, args.opts)


def build_cam_model(cfg):
    """Build the classifier from ``cfg``, load ``MODEL.WEIGHTS`` (if any), eval mode."""
    model = build_model(cfg)
    if not hasattr(model, "cams"):
        raise TypeError(
            f"{type(model).__name__} has no cams(images) method; use a PAMClassifier config "
            "(MODEL.META_ARCHITECTURE: PAMClassifier)"
        )
    if cfg.MODEL.WEIGHTS:
        SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: extracting cues from a randomly initialised model")
    model.eval()
    return model


def write_png_atomic(path: str, array: np.ndarray) -> None:
    """Write a uint8 (H, W) PNG atomically (:func:`bestie_d2.utils.io.atomic_write`)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8))
    if not ok:
        raise IOError(f"could not encode {path}")
    atomic_write(path, buf.tobytes())


class _ImageReader(torch.utils.data.Dataset):
    """Reads and resizes the images of a list of records (for a DataLoader)."""

    def __init__(self, records, size: int, image_format: str, keep_original: bool = False):
        self.records, self.size, self.image_format = records, size, image_format
        self.keep_original = keep_original

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        img = utils.read_image(self.records[i]["file_name"], format=self.image_format)
        return resize_for_cam(img, self.size), img.shape[:2], i, (img if self.keep_original else None)


def _collate(batch):
    return (torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch],
            [b[3] for b in batch])


def semantic_from_cams(pc, cam: torch.Tensor, classes: torch.Tensor, size, image=None) -> np.ndarray:
    """The semantic map of one image as ``PAM_CUES`` (``pc``) prescribes.

    ``cam``: (K, H, W) CAM of ``classes`` in the original frame; ``image``: (H, W, 3) uint8,
    needed for ``SEMANTIC_REFINE = "grabcut"``. Returns (H, W) uint8 (0 = bg, c + 1 = class c).
    """
    mode = str(pc.SEMANTIC_REFINE).lower()
    if mode == "none":
        return cams_to_semantic(cam, classes, pc.BG_THRESHOLD, size)
    if mode == "grabcut":
        g = pc.GRABCUT
        return grabcut_semantic(
            image, cam.float().cpu().numpy(), classes.cpu().numpy(), g.FG_THRESHOLD,
            g.PROBABLE_FG_THRESHOLD, g.BG_THRESHOLD, g.ITERATIONS, size=size,
        )
    raise ValueError(f"PAM_CUES.SEMANTIC_REFINE must be 'none' or 'grabcut', got {pc.SEMANTIC_REFINE!r}")


def run_cam_inference(
    cfg,
    model,
    records: List[Dict],
    cues_dir: Optional[str] = None,
    sem_dir: Optional[str] = None,
    force: bool = False,
    batch_size: int = 4,
    num_workers: int = 0,
) -> Dict[str, int]:
    """Write cue files and/or semantic maps for ``records`` (this rank's share).

    Returns counts for this rank: ``images`` (processed), ``skipped`` (outputs existed),
    ``points`` (written), ``empty`` (images with no point).
    """
    if cues_dir is None and sem_dir is None:
        raise ValueError("nothing to write: give a cues folder and/or a semantic-map folder")

    def outputs(r):
        out = []
        if cues_dir is not None:
            out.append(os.path.join(cues_dir, f"{r['image_id']}.txt"))
        if sem_dir is not None:
            out.append(os.path.join(sem_dir, f"{r['image_id']}.png"))
        return out

    todo = [r for r in records if force or not all(os.path.exists(p) for p in outputs(r))]
    stats = {"images": 0, "skipped": len(records) - len(todo), "points": 0, "empty": 0}
    if not todo:
        return stats
    for d in (cues_dir, sem_dir):
        if d is not None:
            os.makedirs(d, exist_ok=True)

    pc = cfg.PAM_CUES
    need_image = sem_dir is not None and str(pc.SEMANTIC_REFINE).lower() != "none"
    reader = _ImageReader(todo, cfg.INPUT.PAM.TEST_SIZE, cfg.INPUT.FORMAT, keep_original=need_image)
    loader = torch.utils.data.DataLoader(
        reader, batch_size=max(1, batch_size), shuffle=False, num_workers=num_workers,
        collate_fn=_collate,
    )
    from tqdm import tqdm

    bar = tqdm(total=len(todo), disable=not comm.is_main_process(), desc="CAM inference",
               unit="img", dynamic_ncols=True)
    for images, sizes, idx, originals in loader:
        labels = [record_classes(todo[i]) for i in idx]
        results = compute_cams(model, images, sizes, labels, flip=pc.FLIP)
        for (classes, cam), i, size, original in zip(results, idx, sizes, originals):
            _write_outputs(pc, todo[i]["image_id"], cam, classes, size, original, cues_dir, sem_dir, stats)
        bar.update(len(idx))
    bar.close()
    return stats


def _write_outputs(pc, image_id, cam, classes, size, original, cues_dir, sem_dir, stats) -> None:
    """One image's cue file (peaks of its CAM) and/or semantic map; counts into ``stats``."""
    from bestie_d2.data.points import write_points

    if cues_dir is not None:
        pts = find_peaks(cam, classes, pc.SMOOTH_KERNEL, pc.NMS_KERNEL, pc.TOP_K, pc.CONF_THRESHOLD)
        write_points(os.path.join(cues_dir, f"{image_id}.txt"), pts)
        stats["points"] += len(pts)
        stats["empty"] += int(len(pts) == 0)
    if sem_dir is not None:
        sem = semantic_from_cams(pc, cam, classes, size, original)
        write_png_atomic(os.path.join(sem_dir, f"{image_id}.png"), sem)
    stats["images"] += 1


def _gather_stats(stats: Dict[str, int]) -> Dict[str, int]:
    total = {k: 0 for k in stats}
    for s in comm.all_gather(stats):
        for k, v in s.items():
            total[k] += v
    return total


def main(args, mode: str = "cues"):
    """Entry point (one process per GPU under ``launch``). Returns the summary dict."""
    cfg = setup_cfg(args)
    rank, world = comm.get_rank(), comm.get_world_size()
    setup_logger(name="bestie_d2", distributed_rank=rank)
    setup_logger(name="fvcore", distributed_rank=rank)
    setup_logger(distributed_rank=rank)  # detectron2
    if mode == "cues":
        cues_dir, sem_dir = args.output, args.sem_output
    else:
        cues_dir, sem_dir = None, args.output

    from bestie_d2.data.input_check import check_images

    groups = {name: DatasetCatalog.get(name) for name in args.dataset}
    records = check_images(groups, cfg.BESTIE.DATA.MISSING_INPUT, args.dataset)  # all missing images at once
    ids = [r["image_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate image_id among the data set records: outputs would collide")
    shard = records[rank::world]

    model = build_cam_model(cfg)
    num_workers = cfg.DATALOADER.NUM_WORKERS if args.num_workers is None else args.num_workers
    t0 = time.perf_counter()
    stats = run_cam_inference(
        cfg, model, shard, cues_dir=cues_dir, sem_dir=sem_dir, force=args.force,
        batch_size=args.batch_size, num_workers=num_workers,
    )
    comm.synchronize()
    total = _gather_stats(stats)
    total["seconds"] = time.perf_counter() - t0
    if comm.is_main_process():
        n = total["images"]
        msg = (
            f"{', '.join(args.dataset)}: {n} images processed, {total['skipped']} skipped "
            f"(outputs existed)"
        )
        if cues_dir is not None:
            mean = total["points"] / n if n else 0.0
            msg += (
                f"; {total['points']} points written to {cues_dir} ({mean:.2f} per image, "
                f"{total['empty']} images without a point)"
            )
        if sem_dir is not None:
            msg += f"; semantic maps in {sem_dir}"
        msg += f"; {total['seconds']:.1f}s"
        logger.info(msg)
    return total


def invoke_main(argv=None, mode: str = "cues"):
    """Parse ``argv``, check the config (one line and exit 2 for an unknown key), run :func:`main`
    in every process; a bad input ends with one line naming the file (exit 1)."""
    parser = build_parser(mode)
    args = parser.parse_args(argv)
    load_config_or_exit(parser, _tool_name(mode), args.config_file, args.opts)
    exit_on_user_error(_tool_name(mode), launch_from_args, main, args, mode)


def cli(argv=None) -> int:
    """Console script ``bestie-extract-cues``: parse ``argv`` (default ``sys.argv[1:]``), run, exit 0."""
    invoke_main(argv, mode="cues")
    return 0


if __name__ == "__main__":
    invoke_main()

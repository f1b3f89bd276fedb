"""The main job: the whole BESTIE pipeline on the embedded toy data set, on CPU, in minutes.

    python -m bestie_d2.tools.demo                       # image-level route (make demo)
    python -m bestie_d2.tools.demo --supervision point   # point route (make demo-point)
    python -m bestie_d2.tools.demo --force               # rerun every stage
    python -m bestie_d2.tools.demo --force-from bestie   # rerun from a stage on
    python -m bestie_d2.tools.demo --stop-after bestie   # skip the later stages

Stages (each resumable: a finished stage leaves ``<out>/<stage>/stage.json`` and is skipped on a
rerun unless forced):

    data      generate the toy set (seeded, cached under $BESTIE_DATASETS/toy)
    pam       train the PAM classifier on image labels (configs/toy/pam.yaml)
    cues      extract instance cues (PAM peaks) and CAM semantic maps for the train split
    bestie    train BESTIE with self-refinement (configs/toy/bestie_<route>_label.yaml); evaluate
    export    BESTIE pseudo labels of the train split as a COCO json
    maskrcnn  train Detectron2's Mask R-CNN on them (configs/toy/mask_rcnn_refine.yaml); evaluate
    visualize a PNG grid: image, pseudo labels, center map, offset magnitude, final instances

Prints a table of mAP25/50/70/75 per stage, cue statistics and time per stage, and writes
``results.json``, the configs used, checkpoints and ``grid.png`` under ``--output``.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections import OrderedDict

import numpy as np
import torch

import bestie_d2  # noqa: F401
from bestie_d2.config import load_config
from bestie_d2.utils.env import environment_info, format_environment
from bestie_d2.utils.io import atomic_write
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

__all__ = ["main", "STAGES"]

STAGES = ("data", "pam", "cues", "bestie", "export", "maskrcnn", "visualize")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
logger = logging.getLogger("bestie_d2.demo")


def _config_path(rel):
    for base in (os.getcwd(), REPO):
        p = os.path.join(base, "configs", rel)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"config configs/{rel} not found (run the demo from the repository root)")


def _load_cfg(rel, opts):
    return load_config(_config_path(rel), opts, freeze=False)


def _save_cfg(cfg, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(cfg.dump())


def _write_json(obj, path):
    atomic_write(path, json.dumps(obj, indent=2, default=float))


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.route = args.supervision
        self.out = os.path.abspath(os.path.join(args.output, self.route))
        os.makedirs(self.out, exist_ok=True)
        self.results = OrderedDict()
        self.times = OrderedDict()
        self.environment = environment_info(seed=args.seed)
        if args.force:
            self.force_from = 0
        elif args.force_from:
            self.force_from = STAGES.index(args.force_from)
        else:
            self.force_from = len(STAGES)

    # -- stage bookkeeping ------------------------------------------------------------------
    def stage_dir(self, name):
        d = os.path.join(self.out, name)
        os.makedirs(d, exist_ok=True)
        return d

    def run(self, name, fn):
        marker = os.path.join(self.stage_dir(name), "stage.json")
        if os.path.exists(marker) and STAGES.index(name) < self.force_from:
            with open(marker) as f:
                done = json.load(f)
            if done.get("seed") != self.args.seed:
                # a stage made with another seed is stale, and so is everything after it
                logger.info(f"[{name}] was run with seed {done.get('seed')}, not {self.args.seed}: rerunning from here")
                self.force_from = STAGES.index(name)
        if os.path.exists(marker) and STAGES.index(name) < self.force_from:
            self.results[name] = done["result"]
            self.times[name] = done["seconds"]
            logger.info(f"[{name}] done earlier ({done['seconds']:.0f}s); skipping (use --force-from {name})")
            return done["result"]
        if os.path.exists(marker):
            # Forced rerun of a finished stage: start clean, or the trainer would "resume" from
            # the old final checkpoint and do nothing. (An unfinished stage keeps its checkpoints
            # and continues from the last one.)
            logger.info(f"[{name}] forced: removing the previous outputs in {self.stage_dir(name)}")
            shutil.rmtree(self.stage_dir(name))
        logger.info(f"[{name}] running")
        t0 = time.perf_counter()
        result = fn(self.stage_dir(name))
        secs = time.perf_counter() - t0
        _write_json({"result": result, "seconds": secs, "seed": self.args.seed}, marker)
        self.results[name] = result
        self.times[name] = secs
        logger.info(f"[{name}] finished in {secs:.0f}s")
        return result

    # -- stages -----------------------------------------------------------------------------
    def stage_data(self, d):
        train = DatasetCatalog.get("bestie_toy_train")
        val = DatasetCatalog.get("bestie_toy_val")
        meta = MetadataCatalog.get("bestie_toy_train")
        n_inst = sum(len(r.get("annotations", [])) for r in train)
        return {
            "root": meta.get("dataset_root", ""),
            "train_images": len(train),
            "val_images": len(val),
            "train_instances": n_inst,
            "classes": list(meta.thing_classes),
        }

    def _train(self, cfg, d):
        from bestie_d2.engine.trainer import Trainer
        from detectron2.utils.env import seed_all_rng

        cfg.OUTPUT_DIR = d
        cfg.SEED = self.args.seed
        cfg.freeze()
        # Trainer(cfg) does not seed (detectron2's default_setup does, and the demo does not call
        # it): without this the augmentations, the initialisation and the data-loader workers
        # would draw from unseeded global RNGs and every run would differ.
        seed_all_rng(cfg.SEED)
        _save_cfg(cfg, os.path.join(self.out, "configs", os.path.basename(d) + ".yaml"))
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=True)  # a killed stage continues from its last checkpoint
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None) or {}
        return cfg, trainer, json.loads(json.dumps(results, default=float))

    def stage_pam(self, d):
        cfg = _load_cfg("toy/pam.yaml", self.args.opts_pam)
        _, _, res = self._train(cfg, d)
        return {"weights": os.path.join(d, "model_final.pth"), "eval": res}

    def stage_cues(self, d):
        from bestie_d2.evaluation.cue_stats import cue_statistics
        from bestie_d2.tools.extract_cues import build_cam_model, run_cam_inference

        cfg = _load_cfg("toy/pam.yaml", self.args.opts_pam + ["MODEL.WEIGHTS", self.results["pam"]["weights"]])
        cfg.freeze()
        model = build_cam_model(cfg)
        records = DatasetCatalog.get("bestie_toy_train")
        cues_dir, sem_dir = os.path.join(d, "Peak_points"), os.path.join(d, "WSSS_maps")
        with torch.no_grad():
            run_cam_inference(cfg, model, records, cues_dir=cues_dir, sem_dir=sem_dir, force=True)
        bcfg = _load_cfg(f"toy/bestie_{self.route}_label.yaml", [])
        stats = {
            "pam_cues": cue_statistics(records, cues_dir, len(MetadataCatalog.get("bestie_toy_train").thing_classes),
                                       threshold=bcfg.BESTIE.DATA.CUE_THRESHOLD),
            "semantic_miou": _semantic_miou(records, sem_dir),
        }
        return {"cues_dir": cues_dir, "wsss_dir": sem_dir, **stats}

    def stage_bestie(self, d):
        opts = ["BESTIE.DATA.WSSS_DIR", self.results["cues"]["wsss_dir"]]
        if self.route == "image":
            opts += ["BESTIE.DATA.PEAK_POINTS_DIR", self.results["cues"]["cues_dir"]]
        cfg = _load_cfg(f"toy/bestie_{self.route}_label.yaml", opts + self.args.opts_bestie)
        _, trainer, res = self._train(cfg, d)
        self._bestie_model = trainer.model
        return {"weights": os.path.join(d, "model_final.pth"), "eval": res}

    def _bestie_cfg(self):
        """The config the bestie stage trained with (saved under ``<out>/configs``)."""
        return load_config(os.path.join(self.out, "configs", "bestie.yaml"), freeze=False)

    def _load_bestie(self):
        from bestie_d2.engine.checkpoint import SafeCheckpointer
        from detectron2.modeling import build_model

        cfg = self._bestie_cfg()
        model = build_model(cfg)
        SafeCheckpointer(model).load(self.results["bestie"]["weights"])
        model.eval()
        return cfg, model

    def stage_export(self, d):
        from bestie_d2.maskrcnn_refinement import export_pseudo_coco

        from bestie_d2.data.mappers import BestieDatasetMapper

        cfg, model = self._load_bestie()
        # point route: the training images' point labels are known, one pseudo instance per point
        use_points = self.route == "point"
        cfg.MODEL.BESTIE.TEST.USE_POINTS = use_points
        out = os.path.join(d, "pseudo_instances_train.json")
        summary = export_pseudo_coco(model, "bestie_toy_train", out, mapper=BestieDatasetMapper(cfg, is_train=False),
                                     score_threshold=self.args.pseudo_score_threshold, use_points=use_points)
        return {"json": out, "summary": json.loads(json.dumps(summary, default=float))}

    def stage_maskrcnn(self, d):
        from bestie_d2.maskrcnn_refinement import register_pseudo_coco_from_config

        n_pseudo = (self.results["export"].get("summary") or {}).get("instances", None)
        if n_pseudo == 0:
            reason = (
                f"BESTIE exported no pseudo instance above score {self.args.pseudo_score_threshold}: "
                "nothing to train Mask R-CNN on (train BESTIE longer with --opts-bestie SOLVER.MAX_ITER N "
                "or lower --pseudo-score-threshold, then rerun with --force-from export)"
            )
            logger.warning(f"[maskrcnn] skipped: {reason}")
            return {"skipped": reason}
        opts = [
            "BESTIE.PSEUDO_COCO.NAME", f"bestie_toy_pseudo_{self.route}",
            "BESTIE.PSEUDO_COCO.JSON", self.results["export"]["json"],
            "BESTIE.PSEUDO_COCO.SOURCE_DATASET", "bestie_toy_train",
            "DATASETS.TRAIN", f"('bestie_toy_pseudo_{self.route}',)",
        ]
        cfg = _load_cfg("toy/mask_rcnn_refine.yaml", opts + self.args.opts_maskrcnn)
        if self.args.maskrcnn_init == "bestie":
            # No ImageNet weights offline: optionally start from the BESTIE backbone (same images,
            # same weak labels, so no extra supervision) instead of random init.
            from bestie_d2.maskrcnn_refinement import write_maskrcnn_init

            cfg.MODEL.WEIGHTS = write_maskrcnn_init(
                self.results["bestie"]["weights"], os.path.join(d, "init_from_bestie.pth"),
                self._bestie_cfg().INPUT.FORMAT, cfg.INPUT.FORMAT,
            )
        register_pseudo_coco_from_config(cfg)
        _, _, res = self._train(cfg, d)
        return {"weights": os.path.join(d, "model_final.pth"), "init": self.args.maskrcnn_init, "eval": res}

    def stage_visualize(self, d):
        from bestie_d2.visualization.demo_grid import demo_grid

        cfg, model = self._load_bestie()
        path = os.path.join(self.out, "grid.png")
        demo_grid(cfg, model, "bestie_toy_val", path, num_images=4,
                  train_dataset="bestie_toy_train", wsss_dir=self.results["cues"]["wsss_dir"],
                  cues_dir=self.results["cues"]["cues_dir"] if self.route == "image" else None)
        return {"grid": path}

    # -- report -----------------------------------------------------------------------------
    def report(self):
        rows = []
        for stage in ("bestie", "maskrcnn"):
            ev = (self.results.get(stage) or {}).get("eval", {}).get("voc_instance")
            if ev:
                rows.append((f"BESTIE ({self.route} labels)" if stage == "bestie" else "Mask R-CNN on BESTIE pseudo labels",
                             ev.get("mAP25"), ev.get("mAP50"), ev.get("mAP70"), ev.get("mAP75")))
        lines = ["", f"bestie_d2 demo — toy val, {self.route}-label route", ""]
        lines.append(f"{'stage':<40} {'mAP25':>7} {'mAP50':>7} {'mAP70':>7} {'mAP75':>7}")
        lines.append("-" * 72)
        for name, *vals in rows:
            lines.append(f"{name:<40} " + " ".join(f"{v:7.1f}" if v is not None else "      -" for v in vals))
        init = (self.results.get("maskrcnn") or {}).get("init")
        if init:
            lines.append(f"(Mask R-CNN backbone init: {'the BESTIE ResNet' if init == 'bestie' else 'random'})")
        skipped = (self.results.get("maskrcnn") or {}).get("skipped")
        if skipped:
            lines.append(f"{'Mask R-CNN on BESTIE pseudo labels':<40} skipped: {skipped}")
        pam = (self.results.get("pam") or {}).get("eval", {}).get("classification", {})
        if pam:
            lines.append(f"\nPAM classifier multi-label mAP on toy val: {pam.get('mAP', float('nan')):.1f}")
        cues = self.results.get("cues") or {}
        if cues.get("pam_cues"):
            from bestie_d2.evaluation.cue_stats import format_cue_statistics

            lines.append("PAM cues (train, after the confidence filter): " + format_cue_statistics(cues["pam_cues"]))
        if "semantic_miou" in cues:
            lines.append(f"CAM semantic maps (train) mIoU vs GT: {100 * cues['semantic_miou']:.1f}")
        ex = (self.results.get("export") or {}).get("summary") or {}
        if ex:
            lines.append(f"Pseudo labels: {ex.get('instances', '?')} instances on {ex.get('images', '?')} train images")
        lines.append("\ntime per stage: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.times.items())
                     + f"; total {sum(self.times.values()):.0f}s")
        lines.append("environment: " + format_environment(self.environment))
        lines.append(f"results: {self.out}")
        text = "\n".join(lines)
        print(text)
        _write_json({"route": self.route, "seed": self.args.seed, "environment": self.environment,
                     "stages": self.results, "seconds": self.times, "table": rows},
                    os.path.join(self.out, "results.json"))
        with open(os.path.join(self.out, "results.txt"), "w") as f:
            f.write(text + "\n")


def _semantic_miou(records, sem_dir):
    """Mean IoU (over the classes present, background included) of the CAM maps vs GT."""
    import pycocotools.mask as mask_util

    from bestie_d2.data.datasets.label_maps import read_label_map

    inter, union = {}, {}
    for r in records:
        anns = r.get("annotations", [])
        gt = np.zeros((r["height"], r["width"]), np.int64)
        for a in anns:
            gt[mask_util.decode(a["segmentation"]).astype(bool)] = a["category_id"] + 1
        pred = read_label_map(os.path.join(sem_dir, f"{r['image_id']}.png")).astype(np.int64)
        for c in np.union1d(np.unique(gt), np.unique(pred)):
            g, p = gt == c, pred == c
            inter[c] = inter.get(c, 0) + int((g & p).sum())
            union[c] = union.get(c, 0) + int((g | p).sum())
    ious = [inter[c] / union[c] for c in union if union[c] > 0]
    return float(np.mean(ious)) if ious else float("nan")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supervision", choices=("image", "point"), default="image",
                   help="image-level labels + PAM cues (default) or one GT point per instance")
    p.add_argument("--output", default="output/demo", help="results folder (a sub-folder per route)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of every training stage (SEED of the PAM, BESTIE and Mask R-CNN configs and "
                        "the global RNGs; the toy data set itself is fixed)")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument("--force-from", choices=STAGES, default=None, help="rerun this stage and the later ones")
    p.add_argument("--stop-after", choices=STAGES, default=None,
                   help="stop after this stage (e.g. to compare BESTIE settings without the later stages)")
    p.add_argument("--pseudo-score-threshold", type=float, default=0.0,
                   help="pseudo labels below this score are not exported for Mask R-CNN")
    p.add_argument("--maskrcnn-init", choices=("bestie", "scratch"), default="scratch",
                   help="Mask R-CNN backbone init: random (default) or the trained BESTIE's ResNet (a "
                        "stand-in for the paper's ImageNet weights, which the offline toy run cannot "
                        "download; on the toy set it did not help: BENCHMARKS.md)")
    p.add_argument("--opts-pam", nargs="*", default=[], help="config overrides for the PAM stage")
    p.add_argument("--opts-bestie", nargs="*", default=[], help="config overrides for the BESTIE stage")
    p.add_argument("--opts-maskrcnn", nargs="*", default=[], help="config overrides for the Mask R-CNN stage")
    return p


def check_stage_opts(parser, args) -> None:
    """Every ``--opts-*`` against its stage's config before the first stage runs: an unknown key
    ends the demo at once with one line naming it and the nearest keys (not minutes later)."""
    from bestie_d2.utils.cli import load_config_or_exit

    for rel, opts in (("toy/pam.yaml", args.opts_pam), (f"toy/bestie_{args.supervision}_label.yaml", args.opts_bestie),
                      ("toy/mask_rcnn_refine.yaml", args.opts_maskrcnn)):
        if opts:
            load_config_or_exit(parser, "demo", _config_path(rel), opts)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_stage_opts(parser, args)
    setup_logger(name="bestie_d2")
    setup_logger()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    pipe = Pipeline(args)
    for name in STAGES:
        pipe.run(name, getattr(pipe, f"stage_{name}"))
        if name == args.stop_after:
            logger.info(f"stopping after [{name}] (--stop-after)")
            break
    pipe.report()
    return pipe.results


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Cost of the two refiners on the same pseudo labels: Mask R-CNN vs PointRend, interleaved.

    python benchmarks/bench_refiners.py output/demo/image [--iters 40] [--repeats 3] [--threads 2]

Takes a finished pipeline run folder (its ``export/pseudo_instances_train.json``) and, ``--repeats``
times in turn, trains each toy refiner (``configs/toy/mask_rcnn_refine.yaml``,
``configs/toy/pointrend_refine.yaml``) for ``--iters`` iterations from random init on it, then
evaluates it on the toy val split. Reports the median seconds per training iteration (detectron2's
``IterationTimer``, the first 5 iterations left out) and per evaluation, and PointRend / Mask R-CNN.
Alternating the two in one process keeps a load that drifts (a shared machine) from favouring
either. Nothing is written outside a temporary folder.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"maskrcnn": "mask_rcnn_refine.yaml", "pointrend": "pointrend_refine.yaml"}


def one_run(refiner, pseudo_json, iters, out):
    from bestie_d2.config import load_config
    from bestie_d2.engine.trainer import Trainer
    from bestie_d2.maskrcnn_refinement import register_pseudo_coco_from_config, unregister_pseudo_coco

    opts = ["BESTIE.PSEUDO_COCO.NAME", "bench_pseudo", "BESTIE.PSEUDO_COCO.JSON", pseudo_json,
            "BESTIE.PSEUDO_COCO.SOURCE_DATASET", "bestie_toy_train", "DATASETS.TRAIN", "('bench_pseudo',)",
            "SOLVER.MAX_ITER", str(iters), "OUTPUT_DIR", out]
    cfg = load_config(os.path.join(REPO, "configs", "toy", CONFIGS[refiner]), opts)
    unregister_pseudo_coco("bench_pseudo")
    register_pseudo_coco_from_config(cfg)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # ends with the evaluation (not timed here)
    per_iter = trainer.storage.history("time").values()
    step = statistics.median(v for v, it in per_iter if it >= 5)
    t0 = time.perf_counter()
    Trainer.test(cfg, trainer.model)
    return step, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a pipeline run folder of the toy preset (output/demo/<route>)")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    import bestie_d2  # noqa: F401

    torch.set_num_threads(args.threads)
    pseudo = os.path.join(os.path.abspath(args.run), "export", "pseudo_instances_train.json")
    if not os.path.isfile(pseudo):
        sys.exit(f"{pseudo} not found: run the pipeline's export stage first")
    res = {r: {"step": [], "eval": []} for r in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for r in CONFIGS:
                step, ev = one_run(r, pseudo, args.iters, os.path.join(tmp, f"{r}_{k}"))
                res[r]["step"].append(step)
                res[r]["eval"].append(ev)
                print(f"repeat {k} {r}: {step:.3f} s/iteration, evaluation {ev:.1f} s", flush=True)
    summary = {r: {"s_per_iteration": statistics.median(v["step"]), "eval_s": statistics.median(v["eval"]),
                   "runs": v} for r, v in res.items()}
    summary["pointrend_over_maskrcnn"] = {
        "step": summary["pointrend"]["s_per_iteration"] / summary["maskrcnn"]["s_per_iteration"],
        "eval": summary["pointrend"]["eval_s"] / summary["maskrcnn"]["eval_s"]}
    summary["setup"] = {"iters": args.iters, "repeats": args.repeats, "threads": args.threads,
                        "load_average": os.getloadavg()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

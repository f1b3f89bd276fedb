#!/usr/bin/env python
"""Quality of the Mask R-CNN pseudo labels of a finished demo run: the trained BESTIE's
predictions on the toy *training* images, scored against their GT masks (VOC mAP25/50/70/75),
decoded two ways with the export's settings (image labels clean the semantic map):

    centers   the usual decoding (predicted centers, ``decode_instances``)
    points    point-guided decoding, one instance per point label (``decode_instances_with_points``)

    python benchmarks/pseudo_label_quality.py output/demo/point [output/demo_s2/point ...] \
        [--out benchmarks/results/pseudo_label_quality.json]

Each argument is a route folder of ``bestie_d2.tools.demo`` (it reads ``configs/bestie.yaml``,
``bestie/model_final.pth`` and the toy set under ``$BESTIE_DATASETS``, default ``datasets``).
Prints one line per run and decoding, then mean ± sd over the runs; ``--out`` writes them as json.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

THRESHOLDS = (25, 50, 70, 75)


def evaluate_run(run_dir, dataset_root):
    import bestie_d2  # noqa: F401
    from bestie_d2.config import load_config
    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.data.mappers import BestieDatasetMapper
    from bestie_d2.engine.checkpoint import SafeCheckpointer
    from bestie_d2.evaluation.voc_instance import VOCInstanceEvaluator
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    register_toy_dataset("bestie_toy", dataset_root, overwrite=True)
    cfg = load_config(os.path.join(run_dir, "configs", "bestie.yaml"), freeze=False)
    cfg.MODEL.DEVICE = "cpu"
    cfg.BESTIE.SUPERVISION = "point"  # the mapper reads the records' center_points_file
    model = build_model(cfg)
    SafeCheckpointer(model).load(os.path.join(run_dir, "bestie", "model_final.pth"))
    model.eval()
    model.test_use_image_labels = True
    mapper = BestieDatasetMapper(cfg, is_train=False)
    mapper.test_points = True
    out = {}
    records = DatasetCatalog.get("bestie_toy_train")
    for name, use_points in (("centers", False), ("points", True)):
        model.test_use_points = use_points
        ev = VOCInstanceEvaluator("bestie_toy_train", distributed=False)
        ev.reset()
        t0 = time.perf_counter()
        with torch.no_grad():
            for r in records:
                inp = mapper(r)
                ev.process([inp], model.inference([inp]))
        secs = time.perf_counter() - t0
        res = ev.evaluate()["voc_instance"]
        out[name] = {f"mAP{t}": round(res[f"mAP{t}"], 2) for t in THRESHOLDS}
        out[name]["seconds"] = round(secs, 1)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="demo route folders (…/point)")
    p.add_argument("--datasets", default=os.environ.get("BESTIE_DATASETS", "datasets"),
                   help="folder holding toy/ (default $BESTIE_DATASETS or datasets)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for run in args.runs:
        results[run] = evaluate_run(run, os.path.join(args.datasets, "toy"))
        for name, r in results[run].items():
            print(f"{run}  {name:8s} " + " / ".join(f"{r[f'mAP{t}']:.1f}" for t in THRESHOLDS) + f"  ({r['seconds']}s)")
    summary = {}
    for name in ("centers", "points"):
        summary[name] = {}
        for t in THRESHOLDS:
            v = [results[r][name][f"mAP{t}"] for r in args.runs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            summary[name][f"mAP{t}"] = {"mean": round(statistics.mean(v), 2), "sd": round(sd, 2), "min": min(v)}
        print(f"mean ± sd  {name:8s} " + " / ".join(
            f"{summary[name][f'mAP{t}']['mean']:.1f} ± {summary[name][f'mAP{t}']['sd']:.1f}" for t in THRESHOLDS))
    if args.out:
        from bestie_d2.utils.env import environment_info

        with open(args.out, "w") as f:
            json.dump({"runs": results, "summary": summary, "environment": environment_info()}, f, indent=1)
    return results


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Mask R-CNN on BESTIE pseudo labels vs the export settings (issue 6; toy set).

The paper does not say which BESTIE predictions become Mask R-CNN's pseudo labels (docs/method.md §9:
score threshold, flip TTA and schedule are open). Given a finished demo run (its ``bestie`` stage),
this script, for each setting ``threshold[:flip][:iters]``:

1. exports the BESTIE predictions on the toy train split (labels of each image kept, as the demo);
2. measures the pseudo labels against the train GT (precision and recall at mask IoU >= 0.5: a
   diagnostic only, the pipeline never sees that GT);
3. trains ``configs/toy/mask_rcnn_refine.yaml`` on them and evaluates on toy val (VOC mAP).

    python benchmarks/pseudo_label_sweep.py --demo output/demo/image --out output/pseudo_sweep \\
        --settings 0.0 0.05 0.1 0.2 0.3 0.1:flip 0.1::600 [--device cuda] [--workers 4]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bestie_d2  # noqa: E402,F401
from bestie_d2.config import load_config  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_setting(text):
    """``"0.1"``, ``"0.1:flip"``, ``"0.1::600"`` or ``"0.1:flip:600"`` -> (threshold, flip, iters)."""
    parts = (text.split(":") + ["", ""])[:3]
    return float(parts[0]), parts[1] == "flip", int(parts[2]) if parts[2] else None


def pseudo_label_quality(json_file, dataset):
    """Precision / recall of the exported instances vs the GT of ``dataset`` (same class, IoU >= 0.5)."""
    import pycocotools.mask as mask_util

    with open(json_file) as f:
        js = json.load(f)
    offset = min(c["id"] for c in js["categories"])
    by_image = {}
    for a in js["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    records = {r["image_id"]: r for r in DatasetCatalog.get(dataset)}
    n_gt = sum(len(r["annotations"]) for r in records.values())
    tp = n_pred = 0
    for image_id, anns in by_image.items():
        gts = records[image_id]["annotations"]
        for a in anns:
            n_pred += 1
            same = [g["segmentation"] for g in gts if g["category_id"] == a["category_id"] - offset]
            if same and mask_util.iou([a["segmentation"]], same, [0] * len(same)).max() >= 0.5:
                tp += 1
    return {"pseudo_instances": n_pred, "precision_iou50": tp / max(1, n_pred), "recall_iou50": tp / max(1, n_gt)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="output/demo/image", help="a demo route folder with a finished bestie stage")
    ap.add_argument("--out", default="output/pseudo_sweep")
    ap.add_argument("--settings", nargs="+", default=["0.0", "0.05", "0.1", "0.2", "0.3"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--opts", nargs="*", default=[], help="Mask R-CNN config overrides (all settings)")
    args = ap.parse_args()

    from bestie_d2.maskrcnn_refinement import register_pseudo_coco_from_config
    from bestie_d2.engine.checkpoint import SafeCheckpointer
    from bestie_d2.engine.trainer import Trainer
    from bestie_d2.maskrcnn_refinement import export_pseudo_coco
    from detectron2.modeling import build_model
    from detectron2.utils.logger import setup_logger

    setup_logger(name="bestie_d2")
    setup_logger()
    bcfg = load_config(os.path.join(args.demo, "configs", "bestie.yaml"), ["MODEL.DEVICE", args.device])
    model = build_model(bcfg)
    SafeCheckpointer(model).load(os.path.join(args.demo, "bestie", "model_final.pth"))
    model.eval()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    rows = []
    for text in args.settings:
        threshold, flip, iters = parse_setting(text)
        tag = text.replace(":", "_")
        json_file = os.path.join(out, f"pseudo_{tag}.json")
        t0 = time.perf_counter()
        export_pseudo_coco(model, "bestie_toy_train", json_file, score_threshold=threshold, flip_tta=flip)
        row = {"setting": text, "threshold": threshold, "flip": flip, **pseudo_label_quality(json_file, "bestie_toy_train")}
        opts = [
            "MODEL.DEVICE", args.device, "DATALOADER.NUM_WORKERS", str(args.workers),
            "BESTIE.PSEUDO_COCO.NAME", f"sweep_pseudo_{tag}", "BESTIE.PSEUDO_COCO.JSON", json_file,
            "BESTIE.PSEUDO_COCO.SOURCE_DATASET", "bestie_toy_train",
            "DATASETS.TRAIN", f"('sweep_pseudo_{tag}',)", "OUTPUT_DIR", os.path.join(out, f"maskrcnn_{tag}"),
        ]
        if iters:
            opts += ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(iters * 0.73)},)"]
        cfg = load_config(os.path.join(REPO, "configs/toy/mask_rcnn_refine.yaml"), opts + args.opts, freeze=False)
        register_pseudo_coco_from_config(cfg)
        cfg.freeze()
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        res = Trainer.test(cfg, trainer.model)["voc_instance"]
        row.update({k: res[k] for k in ("mAP25", "mAP50", "mAP70", "mAP75")})
        row.update({"maskrcnn_iters": cfg.SOLVER.MAX_ITER, "seconds": time.perf_counter() - t0})
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"demo": os.path.abspath(args.demo), "device": args.device,
              "bestie": json.load(open(os.path.join(args.demo, "bestie", "stage.json")))["result"]["eval"],
              "rows": rows}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"{'setting':<12} {'pseudo':>6} {'prec':>6} {'recall':>6} {'mAP25':>6} {'mAP50':>6} {'mAP70':>6} {'mAP75':>6}")
    for r in rows:
        print(f"{r['setting']:<12} {r['pseudo_instances']:>6} {100 * r['precision_iou50']:6.1f} {100 * r['recall_iou50']:6.1f} "
              + " ".join(f"{r[k]:6.1f}" for k in ("mAP25", "mAP50", "mAP70", "mAP75")))


if __name__ == "__main__":
    main()

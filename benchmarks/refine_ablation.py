#!/usr/bin/env python
"""Self-refinement ablation on the toy set (issue 4 acceptance).

Setting: image-label route with the cues of about half of the instances removed
(``--drop 0.5``; each GT point is dropped independently with a fixed seed), and simulated WSSS
maps (the toy set's GT class maps), so that unlabeled ("missing") instances exist by construction.

1. train BESTIE without self-refinement and with it (same seed, same iterations), evaluate both on
   toy val (VOC mAP25/50/70/75);
2. with the refinement model, build refined labels (``refine_image_label``) on every train image
   from the model's own outputs, split them into refined instances (pixels that vote for the same
   refined center), and count how many GT instances *without* a cue are matched by a refined
   instance at IoU >= 0.5 (they had no pseudo label at all).

    python benchmarks/refine_ablation.py --out output/refine_ablation [--iters 400] [--device cuda]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bestie_d2  # noqa: E402,F401
from bestie_d2 import add_bestie_config  # noqa: E402
from bestie_d2.data.datasets import register_toy_dataset  # noqa: E402
from bestie_d2.data.points import read_points, write_points  # noqa: E402
from bestie_d2.data.toy import generate_toy_dataset  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_half_cues(records, cue_dir, drop, seed, num_classes):
    """Write cue files keeping each GT point with probability 1 - drop; return, per image, the
    indices of GT instances that lost their cue."""
    import pycocotools.mask as mask_util

    rng = np.random.default_rng(seed)
    os.makedirs(cue_dir, exist_ok=True)
    unlabeled = {}
    kept_total = dropped_total = 0
    for r in records:
        pts = read_points(r["center_points_file"], num_classes)
        keep = rng.random(len(pts)) >= drop
        write_points(os.path.join(cue_dir, f"{r['image_id']}.txt"), pts[keep])
        masks = mask_util.decode([a["segmentation"] for a in r["annotations"]]).astype(bool)
        lost = []
        for k, a in enumerate(r["annotations"]):
            inside = [i for i, p in enumerate(pts) if masks[int(p[1]), int(p[0]), k] and int(p[2]) == a["category_id"]]
            if inside and not any(keep[i] for i in inside):
                lost.append(k)
        unlabeled[r["image_id"]] = lost
        kept_total += int(keep.sum())
        dropped_total += int((~keep).sum())
    return unlabeled, kept_total, dropped_total


def build_cfg(args, root, cue_dir, refine, out):
    cfg = get_cfg()
    add_bestie_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/toy/bestie_image_label.yaml"))
    cfg.merge_from_list([
        "DATASETS.TRAIN", "('abl_toy_train',)", "DATASETS.TEST", "('abl_toy_val',)",
        "BESTIE.DATA.PEAK_POINTS_DIR", cue_dir,
        "BESTIE.DATA.WSSS_DIR", os.path.join(root, "SegmentationClass"),
        "MODEL.BESTIE.REFINE.ENABLED", str(refine), "SOLVER.MAX_ITER", str(args.iters),
        "MODEL.DEVICE", args.device, "OUTPUT_DIR", out, "SEED", str(args.seed),
        "DATALOADER.NUM_WORKERS", str(args.workers),
    ] + args.opts)
    cfg.freeze()
    return cfg


def refined_instance_matches(model, records, unlabeled, device):
    """Count GT instances without a cue that a refined instance covers at IoU >= 0.5."""
    import pycocotools.mask as mask_util

    from bestie_d2.data.datasets.label_maps import read_label_map
    from bestie_d2.modeling.self_refinement import refine_image_label
    from detectron2.data import detection_utils as utils

    model.eval()
    n_unlabeled = n_matched = n_refined = 0
    for r in records:
        img = utils.read_image(r["file_name"], format="RGB")
        inp = {"image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))}
        with torch.no_grad():
            maps = model.inference_maps(inp)
        C = maps["center"].shape[0]
        label = torch.zeros(1, C, device=model.device)
        label[0, r["image_label"]] = 1
        sem_file = os.path.join(os.path.dirname(os.path.dirname(r["file_name"])), "SegmentationClass", r["image_id"] + ".png")
        wsss = torch.as_tensor(read_label_map(sem_file).astype(np.int64)).to(model.device)[None]
        targets, _ = refine_image_label(torch.log(maps["sem_seg"].clamp_min(1e-8))[None], maps["center"][None],
                                        maps["offset"][None], label, wsss, model.refine_params, model.cluster_params)
        w = targets["weight"][0].cpu().numpy()
        off = targets["offset"][0].cpu().numpy()
        ys, xs = np.nonzero(w > 0)
        votes = np.stack([np.rint(ys + off[0, ys, xs]), np.rint(xs + off[1, ys, xs])], 1).astype(np.int64)
        cls = wsss[0].cpu().numpy()[ys, xs]
        keys = votes[:, 0] * 100000 + votes[:, 1] + cls * 10 ** 10
        uniq, inv = np.unique(keys, return_inverse=True)
        H, W = w.shape
        inst_masks = np.zeros((len(uniq), H, W), bool)
        inst_masks[inv, ys, xs] = True
        n_refined += len(uniq)
        lost = unlabeled[r["image_id"]]
        if not lost:
            continue
        gt = mask_util.decode([r["annotations"][k]["segmentation"] for k in lost]).astype(bool).transpose(2, 0, 1)
        n_unlabeled += len(lost)
        if len(uniq) == 0:
            continue
        inter = np.einsum("ghw,rhw->gr", gt.astype(np.float32), inst_masks.astype(np.float32))
        union = gt.sum((1, 2))[:, None] + inst_masks.sum((1, 2))[None] - inter
        n_matched += int(((inter / np.maximum(union, 1)) >= 0.5).any(1).sum())
    return {"unlabeled_gt_instances": n_unlabeled, "matched_by_refined_instance_iou50": n_matched,
            "refined_instances": n_refined}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="output/refine_ablation")
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--drop", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--num-train", type=int, default=300)
    ap.add_argument("--opts", nargs="*", default=[])
    args = ap.parse_args()
    from bestie_d2.engine.trainer import Trainer
    from detectron2.utils.logger import setup_logger

    setup_logger(name="bestie_d2")
    out = os.path.abspath(args.out)
    root = os.path.join(out, "toy")
    kw = dict(seed=0, num_train=args.num_train, num_val=60)
    generate_toy_dataset(root, **kw)
    register_toy_dataset("abl_toy", root, **kw)
    records = DatasetCatalog.get("abl_toy_train")
    cue_dir = os.path.join(out, "half_cues")
    unlabeled, kept, dropped = make_half_cues(records, cue_dir, args.drop, seed=123, num_classes=5)
    report = {"cues_kept": kept, "cues_dropped": dropped, "iters": args.iters, "device": args.device}
    models = {}
    for refine in (False, True):
        torch.manual_seed(args.seed)
        cfg = build_cfg(args, root, cue_dir, refine, os.path.join(out, "refine" if refine else "no_refine"))
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        res = Trainer.test(cfg, trainer.model)["voc_instance"]
        report["refine" if refine else "no_refine"] = {k: res[k] for k in ("mAP25", "mAP50", "mAP70", "mAP75")}
        report[("refine" if refine else "no_refine") + "_seconds"] = time.perf_counter() - t0
        models[refine] = trainer.model
    report["refined_labels_vs_unlabeled_gt"] = refined_instance_matches(models[True], records, unlabeled, args.device)
    print(json.dumps(report, indent=2))
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

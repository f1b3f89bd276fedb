#!/usr/bin/env python
"""Time the up-front data check on a synthetic VOC-sized training set.

    python benchmarks/bench_data_check.py --images 10582 --root /tmp/voc_sized

Writes (once; reused on a rerun) ``--images`` records at 500x375: a JPEG per image, a palette
WSSS map (background + one class blob), a cue file with two cues; then runs
``check_training_inputs`` (the check every BESTIE training starts with, and ``bestie-check-data``)
with the VOC image-label config's mapper and prints the wall time.
"""
import argparse
import os
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_tree(root, n, h=375, w=500, num_classes=20):
    import cv2

    from bestie_d2.data.datasets import write_label_map

    for sub in ("JPEGImages", "WSSS_maps", "Peak_points"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    records = []
    for i in range(n):
        iid = f"{2007 + i // 100000}_{i:06d}"
        c = int(i % num_classes)
        img = os.path.join(root, "JPEGImages", iid + ".jpg")
        sem_p = os.path.join(root, "WSSS_maps", iid + ".png")
        pts_p = os.path.join(root, "Peak_points", iid + ".txt")
        if not os.path.exists(pts_p):
            with open(img, "wb") as f:
                f.write(jpg.tobytes())
            sem = np.zeros((h, w), np.uint8)
            y0, x0 = 60 + i % 100, 80 + i % 150
            sem[y0:y0 + 150, x0:x0 + 200] = c + 1
            sem[y0 - 2:y0, x0:x0 + 200] = 255
            write_label_map(sem_p, sem)
            with open(pts_p, "w") as f:
                f.write(f"{x0 + 50} {y0 + 70} {c} 0.9\n{x0 + 150} {y0 + 70} {c} 0.8\n")
        records.append({"file_name": img, "image_id": iid, "height": h, "width": w, "image_label": [c],
                        "peak_points_file": pts_p, "wsss_file": sem_p})
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10582)
    ap.add_argument("--root", default="/tmp/bestie_voc_sized")
    args = ap.parse_args()

    import bestie_d2  # noqa: F401
    from bestie_d2.config import load_config
    from bestie_d2.data.input_check import check_training_inputs
    from bestie_d2.data.mappers import BestieDatasetMapper

    t0 = time.perf_counter()
    records = make_tree(args.root, args.images)
    print(f"tree: {len(records)} records in {time.perf_counter() - t0:.1f} s ({args.root})")
    cfg = load_config(os.path.join(REPO, "configs", "VOC", "bestie_R50_image_label.yaml"), ["MODEL.DEVICE", "cpu"])
    mapper = BestieDatasetMapper(cfg, is_train=True)
    t0 = time.perf_counter()
    kept = check_training_inputs({"voc_sized": records}, mapper, "error", check="full")
    dt = time.perf_counter() - t0
    print(f"data check: {len(kept)} of {len(records)} records pass in {dt:.1f} s "
          f"({1000 * dt / len(records):.2f} ms per image, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

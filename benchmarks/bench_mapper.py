"""Throughput of BestieDatasetMapper (training, 416 crop) on synthetic VOC-like samples.

Writes a few 500x375 JPEG images with WSSS PNGs (20 classes, a few blob components each) and cue
files to a temporary folder, then maps samples in one process (file reading, augmentation and
pseudo-target generation all included). Prints e.g. ``mapper: 55.0 samples/s (416 crop)``.

    .venv/bin/python benchmarks/bench_mapper.py [--samples 200] [--supervision image|point]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bestie_d2  # noqa: E402,F401
from bestie_d2.data.mappers import BestieDatasetMapper  # noqa: E402

H, W, C = 375, 500, 20


def make_sample(root, idx, rng):
    """One synthetic image: 2-4 classes, 1-3 elliptic components per class, cues inside."""
    image_id = f"bench_{idx:04d}"
    yy, xx = np.mgrid[:H, :W]
    sem = np.zeros((H, W), np.uint8)
    classes = sorted(rng.choice(C, size=int(rng.integers(2, 5)), replace=False).tolist())
    lines = []
    for c in classes:
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.integers(40, H - 40), rng.integers(40, W - 40)
            ry, rx = rng.integers(15, 70), rng.integers(15, 90)
            sem[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = c + 1
            for _ in range(int(rng.integers(1, 3))):  # one or two cues per blob
                py = int(np.clip(cy + rng.integers(-ry // 2, ry // 2 + 1), 0, H - 1))
                px = int(np.clip(cx + rng.integers(-rx // 2, rx // 2 + 1), 0, W - 1))
                lines.append(f"{px} {py} {c} {rng.uniform(0.5, 1.0):.3f}\n")
    img = (rng.integers(0, 256, (H, W, 3)) * 0.3 + sem[..., None] * 9).astype(np.uint8)
    paths = {
        "file_name": os.path.join(root, "JPEGImages", image_id + ".jpg"),
        "wsss_file": os.path.join(root, "WSSS_maps", image_id + ".png"),
        "peak_points_file": os.path.join(root, "Peak_points", image_id + ".txt"),
        "center_points_file": os.path.join(root, "Center_points", image_id + ".txt"),
    }
    Image.fromarray(img).save(paths["file_name"], quality=90)
    Image.fromarray(sem, mode="L").save(paths["wsss_file"])
    for k in ("peak_points_file", "center_points_file"):
        with open(paths[k], "w") as f:
            f.writelines(lines)
    return dict(image_id=image_id, height=H, width=W, image_label=classes, **paths)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--supervision", default="image", choices=["image", "point"])
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_mapper_") as root:
        for d in ("JPEGImages", "WSSS_maps", "Peak_points", "Center_points"):
            os.makedirs(os.path.join(root, d))
        records = [make_sample(root, i, rng) for i in range(args.images)]
        mapper = BestieDatasetMapper(is_train=True, num_classes=C, supervision=args.supervision)
        mapper.rng = np.random.default_rng(0)
        for r in records[:4]:  # warm-up
            mapper(r)
        accepted = 0.0
        t0 = time.perf_counter()
        for i in range(args.samples):
            out = mapper(records[i % len(records)])
            accepted += float(out["weight"].numpy().mean())
        dt = time.perf_counter() - t0
    print(f"mapper: {args.samples / dt:.1f} samples/s (416 crop) "
          f"[{args.supervision} route, {1000 * dt / args.samples:.1f} ms/sample, 1 process, "
          f"mean labelled fraction {accepted / args.samples:.3f}]")


if __name__ == "__main__":
    main()

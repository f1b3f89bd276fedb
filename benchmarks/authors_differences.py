#!/usr/bin/env python
"""Sizes of the known small differences from the authors' code (docs/method.md §13; issue 21,
items 13 and 14), each measured on its elementary case with numpy / OpenCV / torch.

    python benchmarks/authors_differences.py

Data pipeline (item 14): the authors' float forms are written out here from their description
(float32 HSV round trip with truncation, float64 resize with truncation, ``INTER_NEAREST``,
``cv2.resize(fx=s)``, ``np.linspace`` scales, ``int(p / old * new)``); bestie_d2's side calls its
own transforms. Model and evaluation (item 13): detectron2's ASPP with both ``align_corners``
modes of its pooled branch; the VOC AP of a tie between images in both orders; the refinement's
"more than 5 instances" rule on a component whose centers do not all get pixels.
"""
import math
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def photometric():
    """Authors: always RGB -> float32 HSV -> RGB, truncated to uint8; bestie_d2 converts only when
    the hue changes, and rounds."""
    def authors(img):
        hsv = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2HSV)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.uint8)

    px = np.array([[[0, 5, 77]]], np.uint8)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    d = authors(img).astype(np.int64) - img.astype(np.int64)
    return {"pixel (0,5,77) authors / bestie_d2": (authors(px)[0, 0].tolist(), px[0, 0].tolist()),
            "random image, no hue change: mean authors - bestie_d2 (grey levels)": round(float(d.mean()), 3),
            "max |diff|": int(np.abs(d).max()),
            "fraction of values that differ": round(float((d != 0).mean()), 3)}


def image_resampling():
    """Authors: bilinear resize in float64, truncated; bestie_d2: uint8 resize (rounded)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    a = cv2.resize(img.astype(np.float64), (449, 337), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    b = cv2.resize(img, (449, 337), interpolation=cv2.INTER_LINEAR)
    d = a.astype(np.int64) - b.astype(np.int64)
    return {"500x375 -> 449x337: max |diff|": int(np.abs(d).max()), "mean diff": round(float(d.mean()), 3),
            "fraction that differ": round(float((d != 0).mean()), 3)}


def map_nearest():
    """WSSS map: authors ``INTER_NEAREST``, bestie_d2 ``INTER_NEAREST_EXACT`` (default)."""
    from bestie_d2.data.transforms import MAP_INTERPOLATIONS

    row = np.arange(7, dtype=np.uint8)[None].repeat(2, 0)
    ex = {m: cv2.resize(row, (6, 2), interpolation=f)[0].tolist() for m, f in MAP_INTERPOLATIONS.items()}
    # a VOC-sized label map of blobs: which pixels change, and how far label edges move
    rng = np.random.default_rng(0)
    lab = np.zeros((375, 500), np.uint8)
    for k in range(12):
        cy, cx, r = rng.integers(30, 345), rng.integers(30, 470), rng.integers(10, 60)
        cv2.circle(lab, (int(cx), int(cy)), int(r), int(k % 20 + 1), -1)
    a = cv2.resize(lab, (449, 337), interpolation=cv2.INTER_NEAREST)
    b = cv2.resize(lab, (449, 337), interpolation=cv2.INTER_NEAREST_EXACT)
    diff = a != b
    k = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(b, k) != cv2.erode(b, k)  # pixels with another label in their 3x3 neighbourhood
    return {"row 0..6 -> 6 px": ex, "500x375 -> 449x337 blob map: pixels that differ":
            f"{int(diff.sum())} of {a.size} ({100 * float(diff.mean()):.2f} %), "
            f"{100 * float(edge[diff].mean()):.0f} % of them next to a label edge"}


def scale_grid():
    """Random scale: ``cv2.resize(fx=s)`` samples at spacing 1/s; bestie_d2 at w / round(w s)."""
    ramp = (np.arange(7, dtype=np.float32) * 10)[None].repeat(2, 0)
    a = cv2.resize(ramp, None, fx=0.8, fy=1.0, interpolation=cv2.INTER_LINEAR)[0]
    b = cv2.resize(ramp, (int(round(7 * 0.8)), 2), interpolation=cv2.INTER_LINEAR)[0]
    return {"1x7 ramp 0,10,..,60 at s = 0.8: authors": [round(float(v), 2) for v in a],
            "bestie_d2": [round(float(v), 2) for v in b]}


def scale_values():
    """``np.linspace(0.7, 1.3, 7)`` (authors) vs the exact decimals (bestie_d2's SCALES)."""
    ls = np.linspace(0.7, 1.3, 7)
    exact = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    return {"linspace values that are not the decimals": [repr(float(v)) for v, e in zip(ls, exact) if v != e],
            "point x = 5 at s = 0.8: int(x * s) authors / bestie_d2": (int(5 * ls[1]), int(5 * 0.8))}


def point_rounding():
    """Resize of points: authors ``int(p / old * new)``; bestie_d2 ``floor(p * (new / old))``."""
    out = {"x = 153, 207 -> 161": (int(153 / 207 * 161), math.floor(153 * (161 / 207)))}
    n = tot = 0
    for old in range(100, 501):
        new = 449 if old >= 449 else 353
        for p in range(old):
            tot += 1
            n += int(p / old * new) != math.floor(p * (new / old))
    out["(old 100..500 -> 449 or 353, every p) fraction that differ"] = f"{n} of {tot} ({100 * n / tot:.3f} %)"
    return out


def aspp_align_corners():
    """detectron2's ASPP upsamples its pooled branch with align_corners=False, the authors' with True."""
    import torch
    import torch.nn.functional as F

    import bestie_d2  # noqa: F401
    import detectron2.layers.aspp as aspp_mod
    from detectron2.layers import ASPP

    torch.manual_seed(0)
    a = ASPP(2048, 256, [3, 6, 9], norm="BN", activation=torch.nn.ReLU(), dropout=0.5).eval()
    for m in a.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 2048, 13, 13) * 3  # res5 of a 416 crop
    with torch.no_grad():
        ref = a(x)
        orig = F.interpolate
        aspp_mod.F.interpolate = lambda *ar, **kw: orig(*ar, **{**kw, "align_corners": True})
        try:
            other = a(x)
        finally:
            aspp_mod.F.interpolate = orig
    return {"R50 ASPP at a 13x13 res5, float32: max |diff|": float((ref - other).abs().max()),
            "max |output|": round(float(ref.abs().max()), 2)}


def voc_tie_order():
    """Two images, one cat GT each; equal scores, the first image's prediction a hit, the second's a
    miss: the rank of the tie decides AP50."""
    from bestie_d2.evaluation import voc_ap

    # stable (bestie_d2): TP then FP; chainercv's reversed argsort puts the later image first: FP, TP
    def ap(matches, n_pos=2):
        tp = np.cumsum(matches)
        fp = np.cumsum(1 - np.asarray(matches))
        return 100 * float(voc_ap(tp / np.maximum(tp + fp, 1), tp / n_pos))

    return {"AP50 image order TP, FP (bestie_d2, stable)": ap([1, 0]),
            "AP50 order FP, TP (chainercv's reversed argsort)": ap([0, 1])}


def refine_cap_rule():
    """A component with 7 centers of which 4 get pixels (the 7th among them): the authors skip it
    (highest center id with pixels = 7 > 5), bestie_d2 refines its 4 non-empty instances."""
    import torch

    from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label

    H, W = 64, 7 * 48
    sem_logits = torch.zeros(1, 2, H, W)
    sem_logits[0, 1] = 5.0
    center = torch.zeros(1, 1, H, W)
    xs = [24 + 48 * k for k in range(7)]
    for x in xs:
        center[0, 0, 32, x] = 1.0
    # every pixel votes for the nearest of centers 1, 3, 5, 7 (0-based 0, 2, 4, 6)
    targets = torch.tensor([xs[k] for k in (0, 2, 4, 6)], dtype=torch.float32)
    gx = torch.arange(W, dtype=torch.float32)
    tx = targets[(gx[:, None] - targets[None]).abs().argmin(1)]
    offset = torch.zeros(1, 2, H, W)
    offset[0, 0] = 32 - torch.arange(H, dtype=torch.float32)[:, None]
    offset[0, 1] = (tx - gx)[None]
    wsss = torch.ones(1, H, W, dtype=torch.long)
    out, stats = refine_image_label(sem_logits, center, offset, torch.ones(1, 1), wsss, RefineParams(sigma=4.0))
    return {"bestie_d2: refined instances": float(stats["refined_instances_per_image"]),
            "skipped component fraction": float(stats["skipped_component_fraction"]),
            "authors' rule (max center id with pixels > 5)": "skipped (id 7 > 5)"}


def main():
    for name, fn in [("14.1 photometric", photometric), ("14.2 image resampling", image_resampling),
                     ("14.3 WSSS map nearest", map_nearest), ("14.4 random-scale sampling grid", scale_grid),
                     ("14.5 scale values", scale_values), ("14.6 point rounding", point_rounding),
                     ("13 refinement instance cap", refine_cap_rule), ("13 VOC AP tie order", voc_tie_order),
                     ("13 ASPP pooled-branch align_corners", aspp_align_corners)]:
        print(f"{name}:")
        for k, v in fn().items():
            print(f"    {k}: {v}")


if __name__ == "__main__":
    main()

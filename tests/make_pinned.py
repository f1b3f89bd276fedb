"""Make ``tests/data/pinned/*.npz``: fixed inputs and the exact outputs of decoding and refinement.

The stored files were made with this script on the pre-refactor commit ``d5086d3`` (issue 13,
"behaviour unchanged"); ``tests/test_pinned_outputs.py`` checks that the current code gives the
same outputs. The imports below are those of the redesigned layout (issue 13); rerunning the
script after the redesign rewrites byte-identical arrays, and rerunning it on a later tree rewrites
the files from that tree: do that only for an intended change of behaviour, and say so.

Inputs are stored in the files (the test does not regenerate them), so they are the same on every
machine. They are quantised so that the arithmetic of decoding is exact on any CPU: probabilities
and heatmaps on a 1/1024 grid, offsets on a 1/4 grid, logits on a 1/64 grid (sums of such values in
float32/float64 have no rounding). Refinement takes a softmax and pastes ``exp`` Gaussians, so its
``center`` and ``weight`` floats are compared with a tolerance (see the test); its integer-valued
outputs (offsets of kept pixels, which pixels got weight) are exact.

Cases (all with several classes, touching same-class instances, spurious small components):

* ``decode.npz``: ``decode_instances`` on an 80x80 and a 96x72 synthetic image (C = 6), without
  clustering, with the default clustering and with ``merge_distance = 8`` (more candidates
  added next to peaks), ``min_area`` 50 and 20, NMS 41 and 7.
* ``refine.npz``: ``refine_image_label`` on a batch of 3 at 80x80 (C = 6; one class of one image label is
  not in its map) with and without clustering, with default and tight parameters
  (``max_instances`` 1 so components are skipped, ``min_area`` 200, sigma 3); ``refine_point``
  with valid points, points on row 0 / column 0, outside the image, of a class outside 0..C-1 and
  of a class not in the image label.

    .venv/bin/python tests/make_pinned.py [--out tests/data/pinned]
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))

import bestie_d2  # noqa: E402,F401  (prepares detectron2)
from reference_decode import make_synthetic_outputs  # noqa: E402

C = 6


def quantise(x, step):
    return torch.round(x / step) * step


def decode_inputs(H, W, seed):
    """Quantised (sem_prob, center, offset) of one synthetic image."""
    sem_prob, center, offset, _, cls = make_synthetic_outputs(
        H, W, num_classes=C, num_instances=7, num_present=3, seed=seed, radius=(H / 12, H / 5), noise=0.15)
    center[cls[-1]] *= 0.08  # a class whose peaks are under the NMS threshold: clustering finds them
    return (quantise(sem_prob, 1 / 1024), quantise(center, 1 / 1024).clamp(min=0),
            quantise(offset, 1 / 4))


def refine_inputs(B, H, W, seed):
    """Quantised (logits, center, offset, image_label, wsss, points) of a synthetic batch."""
    outs = [make_synthetic_outputs(H, W, num_classes=C, num_instances=6, num_present=2 + b % 2,
                                   seed=seed + b, radius=(H / 12, H / 5), noise=0.1) for b in range(B)]
    sem_prob = torch.stack([o[0] for o in outs])
    logits = quantise(sem_prob.clamp_min(1e-6).log(), 1 / 64)
    center = torch.stack([o[1] for o in outs])
    center[1] *= 0.25  # peaks under the refinement threshold (0.3): centers from clustering only
    center = quantise(center, 1 / 1024).clamp(min=0)
    offset = quantise(torch.stack([o[2] for o in outs]), 1 / 4)
    wsss = logits.argmax(1)
    wsss[0, :3, :3] = 255  # some ignore pixels
    label = torch.zeros(B, C)
    for b, o in enumerate(outs):
        label[b, o[4]] = 1
    absent = [c for c in range(C) if label[B - 1, c] == 0][0]
    label[B - 1, absent] = 1  # a labelled class without any pixel
    points = []
    for b, o in enumerate(outs):
        inst = o[3]
        rows = []
        for n in range(1, int(inst.max()) + 1):
            ys, xs = (inst == n).nonzero(as_tuple=True)
            k = len(ys) // 3
            rows.append([int(ys[k]), int(xs[k]), int(o[4][n - 1])])
        rows.append([0, 5, int(o[4][0])])  # row 0: kept
        rows.append([7, 0, int(o[4][0])])  # column 0: kept
        rows.append([H, 3, int(o[4][0])])  # outside
        rows.append([4, 4, C])  # class outside 0..C-1
        rows.append([4, 4, [c for c in range(C) if label[b, c] == 0][0]])  # class not in the label
        points.append(torch.tensor(rows, dtype=torch.long))
    return logits, center, offset, label, wsss, points


def decode_cases():
    from bestie_d2.component_engine import ClusterParams
    from bestie_d2.modeling.post_processing import decode_instances

    settings = [
        ("a_nocluster", dict(cluster=None)),
        ("a_cluster", dict(cluster=ClusterParams())),
        ("a_merge8", dict(cluster=ClusterParams(merge_distance=8.0))),
        ("a_small", dict(cluster=ClusterParams(), min_area=20, nms_kernel=7, center_threshold=0.2)),
    ]
    out = {}
    for img, (H, W, seed) in (("a", (80, 80, 3)), ("b", (96, 72, 5))):
        sem_prob, center, offset = decode_inputs(H, W, seed)
        out[f"{img}/sem_prob"], out[f"{img}/center"], out[f"{img}/offset"] = sem_prob, center, offset
        for name, kw in settings:
            name = img + name[1:]
            cl = kw.get("cluster")
            kw = dict(dict(center_threshold=0.1, nms_kernel=41, min_area=50), **kw)
            masks, classes, scores = decode_instances(sem_prob, center, offset, **kw)
            out[f"{name}/masks"], out[f"{name}/classes"], out[f"{name}/scores"] = masks, classes, scores
            out[f"{name}/params"] = torch.tensor(
                [kw["center_threshold"], kw["nms_kernel"], kw["min_area"], cl is not None,
                 cl.merge_distance if cl is not None else -1.0], dtype=torch.float64)
    return out


def refine_cases():
    from bestie_d2.component_engine import ClusterParams
    from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label, refine_point

    logits, center, offset, label, wsss, points = refine_inputs(3, 80, 80, 11)
    out = {"logits": logits, "center": center, "offset": offset, "image_label": label, "wsss": wsss}
    for b, p in enumerate(points):
        out[f"points/{b}"] = p
    tight = RefineParams(center_threshold=0.5, nms_kernel=9, max_instances=1, min_area=200, sigma=3.0)
    settings = {
        "default_cluster": (RefineParams(), ClusterParams()),
        "default_nocluster": (RefineParams(), None),
        "tight_cluster": (tight, ClusterParams(merge_distance=8.0)),
    }
    for name, (params, cluster) in settings.items():
        t, stats = refine_image_label(logits, center, offset, label, wsss, params, cluster)
        for k, v in t.items():
            out[f"{name}/{k}"] = v
        for k in ("refined_instances_per_image", "mean_confidence", "skipped_component_fraction"):
            out[f"{name}/stat_{k}"] = torch.tensor(stats[k], dtype=torch.float64)
    t, stats = refine_point(offset, points, label, wsss)
    for k, v in t.items():
        out[f"point/{k}"] = v
    for k in ("refined_instances_per_image", "mean_confidence", "skipped_component_fraction"):
        out[f"point/stat_{k}"] = torch.tensor(stats[k], dtype=torch.float64)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "data", "pinned"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for fname, fn in (("decode.npz", decode_cases), ("refine.npz", refine_cases)):
        arrays = {k: v.cpu().numpy() for k, v in fn().items()}
        np.savez_compressed(os.path.join(args.out, fname), **arrays)
        size = os.path.getsize(os.path.join(args.out, fname))
        print(f"{fname}: {len(arrays)} arrays, {size / 1024:.1f} KiB")
        for k, v in arrays.items():
            if k.endswith("/classes"):
                print(f"  {k}: {v.shape[0]} instances, classes {sorted(set(v.tolist()))}")
            if "/stat_" in k:
                print(f"  {k}: {float(v):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

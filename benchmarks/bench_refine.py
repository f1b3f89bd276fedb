"""Self-refinement cost (docs/method.md §5.1) vs one training forward + backward.

1. ``refine_image_label`` (with center clustering) on synthetic network outputs: batch 4 at
   416x416, C = 20, 2-3 classes per image with ~3 instances each (noisy heatmaps / offsets /
   semantic maps; the WSSS map is the noisy semantic argmax). Median wall time over ``--runs``.
2. Forward + backward of the real BESTIE R50 model (``configs/VOC/bestie_R50_image_label.yaml``,
   random init, refinement off) on a mapper-like batch of the same size; if the BESTIE model
   cannot be built, a Detectron2 R50 backbone + three 3x3-conv heads instead.
3. (``--in-situ``) the refinement time measured inside the model's training forward on its own
   (random-init, hence very noisy) outputs.

Prints the times and the ratio refinement / (forward + backward), e.g.::

    refine (batch 4, 416x416, cpu, 2 threads): 1.473 s (min 0.976), 8.00 instances/image, ...
    forward+backward BESTIE R50 (batch 4, 416x416, cpu, 2 threads): 72.80 s (min 62.43)
    ratio refine / (forward+backward): 2.0%

(this shared 2-core machine under load; with ``--threads 1`` the refinement takes ~0.25 s.)

    .venv/bin/python benchmarks/bench_refine.py [--batch 4] [--size 416] [--runs 5]
        [--model-runs 2] [--threads 0] [--device cpu|cuda] [--in-situ] [--skip-model]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import bestie_d2  # noqa: E402,F401
from bestie_d2.modeling.center_clustering import ClusterParams  # noqa: E402
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label  # noqa: E402
from reference_decode import make_synthetic_outputs  # noqa: E402


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def synthetic_batch(batch, size, num_classes, seed=0):
    """Network outputs + mapper-like inputs for ``batch`` images."""
    rng = np.random.default_rng(seed)
    outs = []
    for b in range(batch):
        present = int(rng.integers(2, 4))
        outs.append(make_synthetic_outputs(
            size, size, num_classes=num_classes, num_instances=3 * present, num_present=present,
            seed=seed * 100 + b, radius=(size / 24, size / 8), noise=0.2,
        ))
    sem_prob = torch.stack([o[0] for o in outs])
    logits = sem_prob.clamp_min(1e-6).log()
    center = torch.stack([o[1] for o in outs])
    offset = torch.stack([o[2] for o in outs])
    wsss = sem_prob.argmax(1)
    label = torch.zeros(batch, num_classes)
    for b, o in enumerate(outs):
        label[b, o[4]] = 1
    inputs = []
    for b, o in enumerate(outs):
        inst = o[3]
        img = (torch.rand(3, size, size) * 80 + wsss[b][None].float() * 9).clamp(0, 255).to(torch.uint8)
        inputs.append({
            "image": img,
            "sem_seg": wsss[b],
            "center": o[1].clamp(0, 1),
            "offset": o[2] * (inst > 0),
            "weight": (inst > 0).float(),
            "points": torch.zeros((0, 3), dtype=torch.long),
            "image_label": label[b],
            "height": size,
            "width": size,
        })
    return (logits, center, offset, label, wsss), inputs


def time_refine(args, outputs, device):
    logits, center, offset, label, wsss = (t.to(device) for t in outputs)
    params, cluster = RefineParams(), ClusterParams()
    refine_image_label(logits, center, offset, label, wsss, params, cluster)  # warm-up
    times, stats = [], None
    for _ in range(args.runs):
        sync(device)
        t = time.perf_counter()
        _, stats = refine_image_label(logits, center, offset, label, wsss, params, cluster)
        sync(device)
        times.append(time.perf_counter() - t)
    return times, stats


class _SimpleModel(torch.nn.Module):
    """Fallback: Detectron2 R50 backbone + 3x3-conv semantic / center / offset heads on res5,
    upsampled to the input (the same outputs as BESTIE, without its decoder)."""

    def __init__(self, num_classes):
        super().__init__()
        from detectron2.config import get_cfg
        from detectron2.modeling import build_resnet_backbone
        from detectron2.layers import ShapeSpec

        cfg = get_cfg()
        cfg.MODEL.RESNETS.DEPTH = 50
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
        cfg.MODEL.BACKBONE.FREEZE_AT = 0
        self.backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))

        def head(out):
            return torch.nn.Sequential(torch.nn.Conv2d(2048, 256, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(256, out, 1))

        self.sem, self.ctr, self.off = head(num_classes + 1), head(num_classes), head(2)

    def forward(self, inputs):
        x = torch.stack([i["image"] for i in inputs]).float() / 255.0
        f = self.backbone(x)["res5"]
        up = lambda t: torch.nn.functional.interpolate(t, size=x.shape[-2:], mode="bilinear",  # noqa: E731
                                                       align_corners=False)
        sem, ctr, off = up(self.sem(f)), up(self.ctr(f)), up(self.off(f))
        tgt_sem = torch.stack([i["sem_seg"] for i in inputs])
        loss = torch.nn.functional.cross_entropy(sem, tgt_sem)
        loss = loss + ((ctr - torch.stack([i["center"] for i in inputs])) ** 2).mean()
        loss = loss + (off - torch.stack([i["offset"] for i in inputs])).abs().mean()
        return {"loss": loss}


def build_models(args, device):
    """(name, model) for the real BESTIE R50 when it builds, else the fallback."""
    try:
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model

        cfg = get_cfg()
        bestie_d2.add_bestie_config(cfg)
        cfg.merge_from_file(os.path.join(ROOT, "configs/VOC/bestie_R50_image_label.yaml"))
        cfg.merge_from_list(["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""])
        torch.manual_seed(0)
        model = build_model(cfg)
        if type(model).__name__ != "BESTIE":
            raise RuntimeError(f"built {type(model).__name__}")
        return "BESTIE R50", model
    except Exception as e:  # noqa: BLE001 (benchmark fallback)
        print(f"(BESTIE model not available: {e!r}; using R50 + simple heads)")
        return "R50 + simple heads", _SimpleModel(args.classes).to(device)


def time_model(model, inputs, runs, device, refine):
    from detectron2.utils.events import EventStorage

    model.train()
    if hasattr(model, "refine_active"):
        model.refine_active = refine
    times, refine_times = [], []
    with EventStorage(0):
        for i in range(runs + 1):
            sync(device)
            t = time.perf_counter()
            losses = model(inputs)
            sum(losses.values()).backward()
            sync(device)
            model.zero_grad(set_to_none=True)
            if i > 0:  # the first step is a warm-up
                times.append(time.perf_counter() - t)
                stats = getattr(model, "last_refine_stats", None)
                if refine and stats:
                    refine_times.append(stats["refine_time_s"])
    return times, refine_times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model-runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--in-situ", action="store_true", help="also time refinement inside the model")
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = args.device
    nt = torch.get_num_threads()
    where = dev if not dev.startswith("cuda") else torch.cuda.get_device_name()
    head = f"batch {args.batch}, {args.size}x{args.size}, {where}, {nt} thread{'s' if nt > 1 else ''}"

    outputs, inputs = synthetic_batch(args.batch, args.size, args.classes)
    times, stats = time_refine(args, outputs, dev)
    t_ref = statistics.median(times)
    print(f"refine ({head}): {t_ref:.3f} s (min {min(times):.3f}), "
          f"{stats['refined_instances_per_image']:.2f} instances/image, "
          f"mean confidence {stats['mean_confidence']:.3f}, skipped components "
          f"{stats['skipped_component_fraction']:.2f}", flush=True)
    if args.skip_model:
        return 0

    name, model = build_models(args, dev)
    inputs = [{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in x.items()} for x in inputs]
    ftimes, _ = time_model(model, inputs, args.model_runs, dev, refine=False)
    t_fb = statistics.median(ftimes)
    print(f"forward+backward {name} ({head}): {t_fb:.2f} s (min {min(ftimes):.2f})", flush=True)
    print(f"ratio refine / (forward+backward): {100 * t_ref / t_fb:.1f}%")
    if args.in_situ and hasattr(model, "refine_active"):
        stimes, rtimes = time_model(model, inputs, args.model_runs, dev, refine=True)
        if rtimes:
            print(f"in the model, on its own random-init outputs: step {statistics.median(stimes):.2f} s, "
                  f"refinement {statistics.median(rtimes):.3f} s "
                  f"({100 * statistics.median(rtimes) / statistics.median(stimes):.1f}% of the step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-step time of BESTIE (forward + backward + Adam step) on synthetic mapper outputs.

Default: ResNet-50 + Panoptic-DeepLab decoder (``configs/VOC/bestie_R50_image_label.yaml``,
random init), 416x416 crops, batch 2, CPU, with self-refinement off and (when
the config enables it) on. Inputs look like VOC mapper outputs: a few
elliptic WSSS components per image, pseudo targets on half of them, one point per component.
Prints e.g. ``R50 416x416 batch 2 cpu (2 threads): refine off 5.10 s/step, refine on 5.40 s/step``.

Measured 2026-11-27 (random init, median s/step, refine off / on):
  shared 2-core CPU, other jobs running (load ~7): R50 batch 2 at 416: 20.7 / 25.9 (1 thread),
  45.7 / 49.8 (2 threads; oversubscribed OpenMP threads are slower under load);
  H100: R50 batch 2: 0.03 / 0.06, batch 4: 0.05 / 0.07, batch 16: 0.12 / 0.23;
  HRNet-W48 batch 2: 0.10 / 0.14, batch 4: 0.13 / 0.15, batch 16: 0.23 / 0.28.

    .venv/bin/python benchmarks/bench_train_step.py [--config FILE] [--size 416] [--batch 2]
        [--iters 5] [--warmup 1] [--threads N] [--device cpu|cuda] [--supervision image|point]
"""
import argparse
import math
import os
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import bestie_d2  # noqa: E402,F401
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from bestie_d2 import add_bestie_config  # noqa: E402


def synthetic_batch(batch, size, num_classes, seed=0):
    """Mapper-like training dicts (docs/DEVELOPING.md "Mapper output")."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for _ in range(batch):
        sem = torch.zeros(size, size, dtype=torch.long)
        center = torch.zeros(num_classes, size, size)
        offset = torch.zeros(2, size, size)
        weight = torch.zeros(size, size)
        label = torch.zeros(num_classes)
        points = []
        for k in range(4):
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            cy, cx = (int(v) for v in torch.randint(size // 8, size - size // 8, (2,), generator=g))
            ry, rx = (int(v) for v in torch.randint(size // 16, size // 6, (2,), generator=g))
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            sem[blob] = c + 1
            label[c] = 1
            points.append([cy, cx, c])
            if k % 2 == 0:  # an accepted pseudo instance
                weight[blob] = 1
                offset[0][blob] = (cy - yy[blob]).float()
                offset[1][blob] = (cx - xx[blob]).float()
                g2 = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
                center[c] = torch.maximum(center[c], g2)
        img = (torch.rand(3, size, size, generator=g) * 80 + sem[None] * 9).clamp(0, 255)
        out.append(
            {
                "image": img.to(torch.uint8),
                "sem_seg": sem,
                "center": center,
                "offset": offset,
                "weight": weight,
                "points": torch.tensor(points, dtype=torch.long),
                "image_label": label,
                "height": size,
                "width": size,
            }
        )
    return out


def time_steps(model, optimizer, batch, iters, warmup, device):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    with EventStorage(0):
        for i in range(warmup + iters):
            sync()
            t0 = time.perf_counter()
            losses = model(batch)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
            if not all(math.isfinite(float(v)) for v in losses.values()):
                raise RuntimeError(f"non-finite losses: {losses}")
    times.sort()
    return times[len(times) // 2], times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/VOC/bestie_R50_image_label.yaml"))
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--supervision", default=None, choices=[None, "image", "point"])
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = get_cfg()
    add_bestie_config(cfg)
    cfg.merge_from_file(args.config)
    cfg.merge_from_list(["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", ""] + list(args.opts))
    if args.supervision:
        cfg.BESTIE.SUPERVISION = args.supervision
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.SOLVER.BASE_LR)
    batch = synthetic_batch(args.batch, args.size, cfg.BESTIE.NUM_CLASSES)
    name = os.path.splitext(os.path.basename(args.config))[0]
    head = (
        f"{name} ({cfg.BESTIE.SUPERVISION}) {args.size}x{args.size} batch {args.batch} "
        f"{args.device} ({torch.get_num_threads()} threads)"
    )

    results = []
    model.refine_active = False
    med, _ = time_steps(model, optimizer, batch, args.iters, args.warmup, args.device)
    results.append(f"refine off {med:.2f} s/step")
    if cfg.MODEL.BESTIE.REFINE.ENABLED:
        model.refine_active = True
        med, _ = time_steps(model, optimizer, batch, args.iters, args.warmup, args.device)
        stats = model.last_refine_stats or {}
        extra = f" (refinement itself {stats['refine_time_s']:.2f} s)" if "refine_time_s" in stats else ""
        results.append(f"refine on {med:.2f} s/step{extra}")
    print(f"{head}: " + ", ".join(results))


if __name__ == "__main__":
    main()

"""Self-refinement cost (docs/method.md §5.1, issue 15), on CPU and, when available, CUDA, in one run.

1. ``refine``: ``refine_image_label`` (with center clustering) alone on synthetic network outputs
   (416x416, C = 20, 2-3 classes per image with ~3 instances each, noisy heatmaps / offsets /
   semantic maps; WSSS = the noisy semantic argmax), per device, batch and component-engine
   backend (``opencv`` / ``torch`` / ``triton``, those that run on the device); median wall time
   over ``--runs`` (after a warm-up), and the engine's Triton kernel launches per call.
2. ``step``: one full training step (forward + backward + Adam) of the configs' BESTIE models
   (``--models R50 HRNet48``: ``configs/VOC/bestie_{R50,HRNet48}_image_label.yaml``, random init)
   on mapper-like batches (``bench_train_step.synthetic_batch``), refinement off and on (the
   model's own outputs; backend "auto"), per device, model, batch and precision (``--amp``:
   ``off`` = float32, ``fp16`` / ``bf16`` = autocast as detectron2's ``AMPTrainer``, with a
   gradient scaler for fp16); the table gives both, the refinement's share ``(on - off) / off``
   and whether every loss stayed finite.
3. ``worst``: the worst inputs for iterative labelling through ``refine_image_label``: one
   1-pixel-wide spiral WSSS region (the longest path) and many tiny components (an isolated pixel
   every 2 px), per device and backend.

On CPU keep it small (defaults: 1 step after 1 warm-up, 3 refinement runs); flags choose subsets::

    .venv/bin/python benchmarks/bench_refine.py [--devices cpu cuda] [--parts refine step worst]
        [--models R50 HRNet48] [--batches 4 16] [--size 416] [--runs 3] [--steps 1] [--threads 0]
        [--backends opencv torch triton] [--amp off fp16 bf16]
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
from bestie_d2.component_engine import ClusterParams, kernels  # noqa: E402
from bestie_d2.component_engine.backends import pick_backend  # noqa: E402
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label  # noqa: E402
from bench_train_step import synthetic_batch as synthetic_train_batch  # noqa: E402
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


def time_refine_backend(outputs, device, backend, runs):
    """``(median seconds, kernel launches per call)`` of ``refine_image_label`` on ``outputs`` with
    one component-engine backend."""
    logits, center, offset, label, wsss = (t.to(device) for t in outputs)
    params, cluster = RefineParams(components_backend=backend), ClusterParams()
    refine_image_label(logits, center, offset, label, wsss, params, cluster)  # warm-up (and compile)
    times = []
    launches = kernels.launch_count()
    for _ in range(runs):
        sync(device)
        t = time.perf_counter()
        refine_image_label(logits, center, offset, label, wsss, params, cluster)
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), (kernels.launch_count() - launches) // max(runs, 1)


def usable_backends(backends, device):
    """The backends of ``backends`` that run on ``device`` (the Triton kernels need CUDA)."""
    out = []
    for be in backends:
        try:
            pick_backend(device, be)
            out.append(be)
        except RuntimeError as e:
            print(f"skipping backend {be} on {device}: {e}", flush=True)
    return out


def worst_case_outputs(kind, batch, size, num_classes=20):
    """Outputs whose WSSS map is the worst case for iterative labelling (class 0 everywhere on it)."""
    from bench_connected_components import spiral_mask

    if kind == "spiral":
        fg = torch.from_numpy(spiral_mask(size, size))
    else:  # tiny: an isolated pixel every 2 px
        fg = torch.zeros(size, size, dtype=torch.bool)
        fg[::2, ::2] = True
    g = torch.Generator().manual_seed(0)
    wsss = fg.long()[None].repeat(batch, 1, 1)
    logits = torch.randn(batch, num_classes + 1, size, size, generator=g)
    center = torch.rand(batch, num_classes, size, size, generator=g)
    offset = torch.randn(batch, 2, size, size, generator=g) * 3
    label = torch.zeros(batch, num_classes)
    label[:, 0] = 1
    return logits, center, offset, label, wsss


def build_bestie(model, device):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    bestie_d2.add_bestie_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, f"configs/VOC/bestie_{model}_image_label.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    return build_model(cfg), cfg


AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def time_step(model, optimizer, batch, steps, device, refine, amp="off"):
    """``(median seconds per step, all losses finite)`` of ``steps`` training steps after a warm-up;
    ``amp`` "fp16" / "bf16": forward under autocast (fp16 with a gradient scaler), as detectron2's
    ``AMPTrainer`` does."""
    from detectron2.utils.events import EventStorage

    model.train()
    model.refine_active = refine
    dtype = AMP_DTYPES[amp]
    dev_type = torch.device(device).type
    scaler = torch.amp.GradScaler(dev_type, enabled=dtype == torch.float16)
    times, finite = [], True
    with EventStorage(0):
        for i in range(steps + 1):  # the first step is a warm-up
            sync(device)
            t = time.perf_counter()
            with torch.autocast(dev_type, dtype=dtype or torch.float32, enabled=dtype is not None):
                losses = model(batch)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            sync(device)
            if i > 0:
                times.append(time.perf_counter() - t)
            finite = finite and bool(torch.isfinite(total.detach()))
    return statistics.median(times), finite


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--parts", nargs="+", default=["refine", "step", "worst"], choices=["refine", "step", "worst"])
    ap.add_argument("--models", nargs="+", default=["R50", "HRNet48"])
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="refinement runs (median; CUDA: x5)")
    ap.add_argument("--steps", type=int, default=1, help="training steps after one warm-up (CUDA: x10)")
    ap.add_argument("--backends", nargs="+", default=["opencv", "torch", "triton"])
    ap.add_argument("--amp", nargs="+", default=["off"], choices=list(AMP_DTYPES),
                    help="precisions of the step part (off = float32)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, size {args.size}", flush=True)
    rows = []
    for dev in args.devices:
        where = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
        runs, steps = (args.runs * 5, args.steps * 10) if dev.startswith("cuda") else (args.runs, args.steps)
        backends = usable_backends(args.backends, dev)
        for b in args.batches if "refine" in args.parts else []:
            outputs, _ = synthetic_batch(b, args.size, args.classes)
            for be in backends:
                t, n = time_refine_backend(outputs, dev, be, runs)
                rows.append(f"refine  {where:24s} batch {b:3d} {be:7s} {1000 * t:9.1f} ms  ({n} kernel launches)")
                print(rows[-1], flush=True)
        for kind in ("spiral", "tiny") if "worst" in args.parts else []:
            outputs = worst_case_outputs(kind, 4, args.size, args.classes)
            for be in backends:
                t, n = time_refine_backend(outputs, dev, be, runs)
                rows.append(f"worst   {where:24s} {kind:6s} b4 {be:7s} {1000 * t:9.1f} ms")
                print(rows[-1], flush=True)
        for name in args.models if "step" in args.parts else []:
            model, cfg = build_bestie(name, dev)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.SOLVER.BASE_LR)
            for b in args.batches:
                batch = [{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in x.items()}
                         for x in synthetic_train_batch(b, args.size, cfg.BESTIE.NUM_CLASSES)]
                for amp in args.amp:
                    off, ok_off = time_step(model, opt, batch, steps, dev, refine=False, amp=amp)
                    on, ok_on = time_step(model, opt, batch, steps, dev, refine=True, amp=amp)
                    rows.append(f"step    {where:24s} {name:8s} batch {b:3d} {amp:4s} off {off:8.3f} s  on {on:8.3f} s  "
                                f"refinement +{100 * (on - off) / off:5.1f} % of the step  "
                                f"losses {'finite' if ok_off and ok_on else 'NOT FINITE'}")
                    print(rows[-1], flush=True)
            del model, opt
    print("\n".join(["", "summary:"] + rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decoding latency (docs/method.md §6): the fast batched decoder vs the literal per-component reference.

Synthetic network outputs (``reference_decode.make_synthetic_outputs``): C = 20 classes, 10
instances of 3 classes (one touching same-class pair, noisy heatmap / offsets / semantic flips, so
that there are spurious components, extra peaks and clustering candidates). For each size the
script checks that both decoders return the same instances (masks, classes, scores) and prints
the median latency and the speed-up, e.g.::

    512x512 cpu (1 thread), seed 0: fast 80.3 ms (min 65.1), reference 8791 ms, x109.4, 13 instances (10 true), same: True

(this 2-core machine, shared and loaded; with 2 threads under load the fast path gets slower, not
faster: many small ops each wait at an OpenMP barrier for a busy core.)

    .venv/bin/python benchmarks/bench_decode.py [--sizes 416 512] [--runs 10] [--ref-runs 1]
        [--threads 1] [--device cpu|cuda] [--backend auto|opencv|torch|triton] [--no-cluster]
        [--noise 0.3] [--seeds 0 1] [--network R50 HRNet48]

``--network`` also times the network alone (backbone + heads + upsampling to the image size, no
decoding; ``configs/VOC/bestie_<name>_image_label.yaml``, random init, eval mode) per image at each
size, so that decoding is compared with the network it follows. ``--ref-runs 0`` skips the slow
per-component reference (then only the timing is printed).
"""
import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import bestie_d2  # noqa: E402,F401
from bestie_d2.component_engine import ClusterParams  # noqa: E402
from bestie_d2.modeling.post_processing import decode_instances  # noqa: E402
from reference_decode import make_synthetic_outputs, reference_decode  # noqa: E402


def timed(fn, runs, device):
    times, out = [], None
    for _ in range(runs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return out, times


def same_instances(a, b, atol=1e-5):
    (m1, c1, s1), (m2, c2, s2) = a, b
    m1, c1, s1 = m1.cpu(), c1.cpu(), s1.cpu()
    m2, c2, s2 = m2.cpu(), c2.cpu(), s2.cpu()
    return m1.shape == m2.shape and torch.equal(m1, m2) and torch.equal(c1, c2) and torch.allclose(s1, s2, atol=atol)


def network_ms(name, size, device, runs):
    """Median ms per image of the BESTIE network alone (``predict_maps``: backbone, heads and the
    upsampling to the image size) on one ``size`` x ``size`` image, eval mode, random init."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    bestie_d2.add_bestie_config(cfg)
    cfg.merge_from_file(os.path.join(HERE, "..", "configs", "VOC", f"bestie_{name}_image_label.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""])
    model = build_model(cfg).eval()
    img = torch.rand(1, 3, size, size, device=device) * 255
    with torch.no_grad():
        def run():
            return model.predict_maps(model.normalize(img), (size, size))

        run()
        _, t = timed(run, runs, device)
    return statistics.median(t) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 512])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--ref-runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="auto", help="component engine: auto | opencv | torch | triton")
    ap.add_argument("--network", nargs="*", default=[], help="also time these networks alone (R50, HRNet48)")
    ap.add_argument("--no-cluster", action="store_true", help="decode without center clustering")
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--present", type=int, default=3)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cluster = None if args.no_cluster else ClusterParams()
    dev = args.device
    results = []
    for size in args.sizes:
        for seed in args.seeds:
            sem_prob, center, offset, inst, _ = make_synthetic_outputs(
                size, size, num_classes=args.classes, num_instances=args.instances,
                num_present=args.present, seed=seed, radius=(size / 28, size / 9), noise=args.noise,
            )
            sem_prob, center, offset = sem_prob.to(dev), center.to(dev), offset.to(dev)

            def fast():
                return decode_instances(sem_prob, center, offset, center_threshold=0.1, nms_kernel=41,
                                        min_area=50, cluster=cluster, backend=args.backend)

            def ref():
                return reference_decode(sem_prob, center, offset, center_threshold=0.1, nms_kernel=41,
                                        min_area=50, cluster=cluster)

            fast()  # warm-up
            out_f, tf = timed(fast, args.runs, dev)
            mf = statistics.median(tf) * 1e3
            threads = f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
            where = dev if not dev.startswith("cuda") else torch.cuda.get_device_name()
            line = (f"{size}x{size} {where} ({threads}), seed {seed}, backend {args.backend}: fast {mf:.1f} ms "
                    f"(min {min(tf) * 1e3:.1f}), {out_f[0].shape[0]} instances ({int(inst.max())} true)")
            ok = True
            if args.ref_runs > 0:
                out_r, tr = timed(ref, args.ref_runs, dev)
                ok = same_instances(out_f, out_r)
                mr = statistics.median(tr) * 1e3
                line += f", reference {mr:.0f} ms, x{mr / mf:.1f}, same: {ok}"
            print(line, flush=True)
            results.append((size, mf, ok))
        for name in args.network:
            ms = network_ms(name, size, dev, args.runs)
            print(f"{size}x{size} {where}: network {name} alone {ms:.1f} ms per image (eval, random init; "
                  f"decoding above: {mf:.1f} ms)", flush=True)
    if not all(r[2] for r in results):
        print("MISMATCH between the fast and the reference decoding", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bit-identity of decoding and refinement between two source trees (issue 13, "behaviour unchanged").

The inputs of ``bench_decode.py`` (416² and 512², C = 20, 10 instances, noise 0.3, seed 0; with and
without center clustering) and of ``bench_refine.py`` (batch 4 at 416², C = 20; image route with
clustering, plus the point route on one point per true instance) are made once, with this tree's
generators, and written to a temporary file. Each tree then runs ``decode_instances``,
``refine_image_label`` and ``refine_point`` on them in a subprocess with that tree first on
``sys.path``, and the outputs are compared with ``torch.equal`` (every tensor, every bit)::

    .venv/bin/python benchmarks/compare_outputs.py [--before /work/before] [--after .]
        [--python .venv/bin/python] [--sizes 416 512] [--backend opencv|torch]
        [--before-backend opencv|torch] [--time ROUNDS] [--clock wall|cpu]

``--backend`` selects the component labelling of the ``--after`` tree (``decode_instances(backend=)``,
``RefineParams.components_backend``; the tree before the device labelling has only OpenCV),
``--before-backend`` that of the ``--before`` tree when it has the choice.
``--time R`` also times every call on 1 thread in R interleaved before/after worker runs (3 repeats
each after a warm-up) and prints the medians and their ratio; ``--clock cpu`` times the worker's
CPU time instead of the elapsed time (on a machine busy with other jobs the elapsed time mostly
measures the wait for a core).

Prints one line per output and exits 1 if any differs. The worker finds the functions under their
module names in either layout (``bestie_d2.modeling.post_processing`` / ``self_refinement`` /
``center_clustering`` after the redesign, ``bestie_d2.modeling.postprocessing`` /
``bestie_d2.refinement.*`` before it).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))


def make_inputs(sizes):
    """{name: array} with the decode and refinement benchmark inputs."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import bestie_d2  # noqa: F401
    from bench_refine import synthetic_batch
    from reference_decode import make_synthetic_outputs

    arrays = {}
    for size in sizes:
        sem_prob, center, offset, _, _ = make_synthetic_outputs(
            size, size, num_classes=20, num_instances=10, num_present=3, seed=0,
            radius=(size / 28, size / 9), noise=0.3)
        arrays.update({f"decode{size}/sem_prob": sem_prob, f"decode{size}/center": center,
                       f"decode{size}/offset": offset})
    (logits, center, offset, label, wsss), inputs = synthetic_batch(4, 416, 20)
    arrays.update({"refine/logits": logits, "refine/center": center, "refine/offset": offset,
                   "refine/label": label, "refine/wsss": wsss})
    for b, x in enumerate(inputs):
        inst = (x["weight"] > 0)
        ys, xs = inst.nonzero(as_tuple=True)
        pick = torch.arange(0, ys.shape[0], max(1, ys.shape[0] // 4))
        cls = wsss[b][ys[pick], xs[pick]] - 1
        arrays[f"refine/points{b}"] = torch.stack([ys[pick], xs[pick], cls.clamp(min=0)], 1)
    return {k: v.numpy() for k, v in arrays.items()}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def worker(tree, inp, out, backend="default", repeats=0, clock="wall"):
    """Run in a subprocess: the tree's functions on the inputs, outputs to ``out``; with
    ``repeats``, each call is timed that many times (after one warm-up) and the times are saved."""
    sys.path.insert(0, tree)
    import bestie_d2

    assert os.path.abspath(bestie_d2.__file__).startswith(os.path.abspath(tree)), bestie_d2.__file__
    try:
        from bestie_d2.modeling.post_processing import decode_instances
        from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label, refine_point
        try:
            from bestie_d2.component_engine import ClusterParams
        except ImportError:  # the layout before the component_engine package
            from bestie_d2.modeling.center_clustering import ClusterParams
    except ImportError:
        from bestie_d2.modeling.postprocessing import decode_instances
        from bestie_d2.refinement.clustering import ClusterParams
        from bestie_d2.refinement.refine import RefineParams, refine_image_label, refine_point

    kw = {} if backend == "default" else {"backend": backend}
    rkw = {} if backend == "default" else {"components_backend": backend}
    torch.set_num_threads(1)
    with np.load(inp) as f:
        x = {k: torch.from_numpy(f[k]) for k in f.files}
    res, times = {}, {}

    def call(name, fn):
        out = fn()
        if repeats:
            ts = []
            now = CLOCKS[clock]
            for _ in range(repeats):
                t0 = now()
                fn()
                ts.append(now() - t0)
            times[f"time/{name}"] = torch.tensor(ts, dtype=torch.float64)
        return out

    for key in sorted(k.split("/")[0] for k in x if k.endswith("/sem_prob")):
        for name, cl in (("cluster", ClusterParams()), ("nocluster", None)):
            m, c, s = call(f"decode_{key}_{name}", lambda: decode_instances(
                x[f"{key}/sem_prob"], x[f"{key}/center"], x[f"{key}/offset"],
                center_threshold=0.1, nms_kernel=41, min_area=50, cluster=cl, **kw))
            res.update({f"{key}_{name}/masks": m, f"{key}_{name}/classes": c, f"{key}_{name}/scores": s})
    r = [x[f"refine/{k}"] for k in ("logits", "center", "offset", "label", "wsss")]
    t, _ = call("refine_image", lambda: refine_image_label(*r, RefineParams(**rkw), ClusterParams()))
    res.update({f"refine_image/{k}": v for k, v in t.items()})
    points = [x[f"refine/points{b}"] for b in range(r[0].shape[0])]
    t, _ = call("refine_point", lambda: refine_point(r[2], points, r[3], r[4]))
    res.update({f"refine_point/{k}": v for k, v in t.items()})
    res.update(times)
    np.savez(out, **{k: v.numpy() for k, v in res.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="/work/before")
    ap.add_argument("--after", default=ROOT)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 512])
    ap.add_argument("--backend", choices=["default", "opencv", "torch", "triton"], default="default",
                    help="component labelling of the --after tree (default: its own default)")
    ap.add_argument("--before-backend", choices=["default", "opencv", "torch", "triton"], default="default",
                    help="component labelling of the --before tree (a tree that has the choice)")
    ap.add_argument("--time", type=int, default=0, metavar="ROUNDS",
                    help="also time every call (1 thread): ROUNDS alternating before/after runs of 3 repeats")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: the worker process's CPU time (steadier on a busy machine, "
                         "where waiting for a core counts in the wall time)")
    ap.add_argument("--worker", nargs=6, metavar=("TREE", "IN", "OUT", "BACKEND", "REPEATS", "CLOCK"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker[:4], int(args.worker[4]), args.worker[5])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "inputs.npz")
        np.savez(inp, **make_inputs(args.sizes))
        outs = {}
        for tag, tree in (("before", args.before), ("after", args.after)):
            outs[tag] = os.path.join(tmp, f"{tag}.npz")
            backend = args.backend if tag == "after" else args.before_backend
            subprocess.run([args.python, os.path.abspath(__file__), "--worker", os.path.abspath(tree), inp,
                            outs[tag], backend, "0", args.clock], check=True, cwd=tmp)
        timing = {"before": {}, "after": {}}
        for rnd in range(args.time):  # interleaved: before, after, before, ... (a shared machine drifts)
            for tag, tree in (("before", args.before), ("after", args.after)):
                backend = args.backend if tag == "after" else args.before_backend
                t_out = os.path.join(tmp, f"time_{tag}.npz")
                subprocess.run([args.python, os.path.abspath(__file__), "--worker", os.path.abspath(tree), inp,
                                t_out, backend, "3", args.clock], check=True, cwd=tmp)
                with np.load(t_out) as f:
                    for k in f.files:
                        if k.startswith("time/"):
                            timing[tag].setdefault(k[5:], []).extend(f[k].tolist())
        for name in sorted(timing["before"]):
            tb, ta = statistics.median(timing["before"][name]), statistics.median(timing["after"][name])
            print(f"time ({args.clock}) {name:28s} before {1000 * tb:8.1f} ms  after {1000 * ta:8.1f} ms  "
                  f"after/before {ta / tb:.2f}")
        with np.load(outs["before"]) as a, np.load(outs["after"]) as b:
            keys = sorted(k for k in set(a.files) | set(b.files) if not k.startswith("time/"))
            bad = 0
            for k in keys:
                same = k in a.files and k in b.files and torch.equal(torch.from_numpy(a[k]), torch.from_numpy(b[k]))
                shape = tuple(a[k].shape) if k in a.files else None
                print(f"{k:32s} {str(shape):18s} {'identical' if same else 'DIFFERENT'}")
                bad += not same
    print(f"{len(keys) - bad}/{len(keys)} outputs bit-identical ({args.before} vs {args.after}, "
          f"backend {args.backend})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

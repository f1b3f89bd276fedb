"""Where one refinement call spends its device time: the top kernels of ``refine_image_label``
(``bench_refine.synthetic_batch``: batch 16, 416², C = 20, with center clustering) under
``torch.profiler``, per component-engine backend, after warm-up calls.

For each backend it prints the number of device kernels and their total time per call, the
dispatched torch ops per call, and a table of the top kernels by device time (``--top``, 20).
Without CUDA it profiles the CPU ops instead (a smoke run: the GPU figures need a GPU)::

    python benchmarks/profile_refine.py [--device cuda] [--batch 16] [--size 416] [--calls 5]
        [--backends triton torch] [--top 20]
"""
import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import bestie_d2  # noqa: E402,F401
from bestie_d2.component_engine import ClusterParams  # noqa: E402
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label  # noqa: E402
from bench_refine import synthetic_batch, usable_backends  # noqa: E402


def profile_backend(inputs, backend, calls, top, device):
    params, cluster = RefineParams(components_backend=backend), ClusterParams()
    for _ in range(2):  # warm-up: kernel compilation, allocator
        refine_image_label(*inputs, params, cluster)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(calls):
            refine_image_label(*inputs, params, cluster)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    if cuda:
        kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
        n = sum(e.count for e in kernels)
        t = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in kernels)
        print(f"\n=== backend {backend}: {n / calls:.0f} device kernels and {t / calls / 1000:.2f} ms of device "
              f"time per call ({calls} calls)", flush=True)
        sort = "self_cuda_time_total" if not hasattr(events[0], "self_device_time_total") else "self_device_time_total"
    else:
        ops = [e for e in events if e.key.startswith("aten::")]
        print(f"\n=== backend {backend} (CPU): {sum(e.count for e in ops) / calls:.0f} aten ops per call",
              flush=True)
        sort = "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=top), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--backends", nargs="+", default=["triton", "torch"])
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, {args.size}x{args.size}", flush=True)
    inputs = [t.to(args.device) for t in synthetic_batch(args.batch, args.size, 20)[0]]
    for be in usable_backends(args.backends, args.device):
        profile_backend(inputs, be, args.calls, args.top, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())

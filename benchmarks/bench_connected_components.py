"""Connected-components labelling: torch (``connected_components_torch``) vs OpenCV, per call.

Inputs (``N`` masks of ``size x size``, seeded):

* ``blobs``: 3-8 random ellipses per image (some touching), the class masks of the toy/VOC maps;
* ``tiny``: many tiny components: one isolated pixel every 2 pixels in both directions
  (``(size/2)^2`` components per image, 43,264 at 416);
* ``noise``: random noise of density 0.5 (many small components and a few large ones);
* ``spiral``: the worst case for iterative labelling: one 1-pixel-wide square spiral (walls 1
  pixel apart, 86,944 pixels on a single path at 416), flipped / transposed per image so that the
  raster order runs along and against the path.

For each input, batch size and connectivity the script checks that both backends find the same
number of components with the same sorted areas, and prints the median ms per call, the rounds and
the host syncs of the torch labelling (``1 + ceil((rounds - first_check) / check_every)``; on CUDA
also the syncs counted by ``torch.cuda.set_sync_debug_mode("warn")``)::

    .venv/bin/python benchmarks/bench_connected_components.py [--size 416] [--batches 4 16]
        [--runs 5] [--threads 1 2] [--device cpu cuda] [--out benchmarks/results/connected_components_cpu.txt]

CUDA rows are added when ``torch.cuda.is_available()`` (OpenCV on CUDA tensors includes the copy
to the host and back).
"""
import argparse
import math
import os
import platform
import statistics
import sys
import time
import warnings

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import bestie_d2  # noqa: E402,F401
from bestie_d2.component_engine.connected_components import (  # noqa: E402
    connected_components_opencv,
    connected_components_torch,
)
from bestie_d2.utils.io import atomic_write  # noqa: E402

FIRST_CHECK, CHECK_EVERY = 8, 4  # connected_components_torch's defaults, used explicitly below


def spiral_mask(h, w):
    """``(h, w)`` bool: one 1-pixel-wide square spiral from the top-left corner inwards.

    The path turns right whenever the next step would hit the border or come within one pixel of
    its own earlier part, so walls stay 1 pixel apart and the whole path is one component with
    4- and with 8-connectivity.
    """
    m = np.zeros((h, w), dtype=bool)
    if h == 0 or w == 0:
        return m
    y, x, d, turns = 0, 0, 0, 0
    steps = ((0, 1), (1, 0), (0, -1), (-1, 0))
    m[0, 0] = True
    while turns < 2:
        dy, dx = steps[d]
        ny, nx, ay, ax = y + dy, x + dx, y + 2 * dy, x + 2 * dx
        inside = 0 <= ny < h and 0 <= nx < w
        if inside and not m[ny, nx] and not (0 <= ay < h and 0 <= ax < w and m[ay, ax]):
            m[ny, nx] = True
            y, x, turns = ny, nx, 0
        else:
            d, turns = (d + 1) % 4, turns + 1
    return m


def blob_masks(n, size, rng):
    """``(n, size, size)`` bool: 3-8 filled ellipses per image."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        for _ in range(rng.integers(3, 9)):
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(size / 20, size / 6, 2)
            out[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


def tiny_masks(n, size):
    """``(n, size, size)`` bool: an isolated pixel at every (even y, even x)."""
    out = np.zeros((n, size, size), dtype=bool)
    out[:, ::2, ::2] = True
    return out


def spiral_masks(n, size):
    """``(n, size, size)`` bool: the spiral, cycled through 4 orientations."""
    s = spiral_mask(size, size)
    views = [s, s[::-1, ::-1], s.T, s[:, ::-1]]
    return np.stack([views[i % 4] for i in range(n)])


def make_inputs(size, n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "blobs": blob_masks(n, size, rng),
        "tiny": tiny_masks(n, size),
        "noise": rng.random((n, size, size)) < 0.5,
        "spiral": spiral_masks(n, size),
    }


def sorted_areas(comp):
    """Per image, the sorted component areas (background excluded), as lists."""
    lab = comp.labels.cpu().reshape(comp.labels.shape[0], -1)
    return [torch.bincount(row)[1:].sort().values.tolist() for row in lab]


def timed(fn, runs, device):
    times, out = [], None
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return out, 1e3 * statistics.median(times)


def counted_syncs(fn):
    """Host syncs of one CUDA call of ``fn``, counted as sync-debug warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def bench(device, size, batches, runs, threads):
    rows = []
    for n in batches:
        inputs = make_inputs(size, n)
        for name, arr in inputs.items():
            masks = torch.from_numpy(arr).to(device)
            for conn in (8, 4):
                t_fn = lambda: connected_components_torch(masks, conn, FIRST_CHECK, CHECK_EVERY)  # noqa: E731
                c_fn = lambda: connected_components_opencv(masks, conn)  # noqa: E731
                t_fn()  # warm-up (allocator, first-call dispatch)
                tc, t_ms = timed(t_fn, runs, device)
                cc, c_ms = timed(c_fn, runs, device)
                same = torch.equal(tc.counts.cpu(), cc.counts.cpu()) and sorted_areas(tc) == sorted_areas(cc)
                syncs = 1 + math.ceil(max(tc.rounds - FIRST_CHECK, 0) / CHECK_EVERY)
                counted = counted_syncs(t_fn) if device.type == "cuda" else None
                rows.append(
                    dict(
                        device=device.type, threads=threads, input=name, N=n, conn=conn, torch_ms=t_ms, opencv_ms=c_ms,
                        rounds=tc.rounds, syncs=syncs, counted=counted, comps=int(tc.counts.sum()), same=same,
                    )
                )
                print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'device':6} {'thr':>3} {'input':7} {'N':>3} {'conn':>4} {'torch ms':>9} {'opencv ms':>9} {'torch/cv':>8} "
    f"{'rounds':>6} {'syncs':>5} {'counted':>7} {'components':>10} same"
)


def format_row(r):
    counted = "-" if r["counted"] is None else str(r["counted"])
    return (
        f"{r['device']:6} {r['threads']:>3} {r['input']:7} {r['N']:>3} {r['conn']:>4} "
        f"{r['torch_ms']:>9.1f} {r['opencv_ms']:>9.2f} "
        f"{r['torch_ms'] / max(r['opencv_ms'], 1e-9):>8.1f} {r['rounds']:>6} {r['syncs']:>5} {counted:>7} "
        f"{r['comps']:>10} {r['same']}"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--threads", type=int, nargs="+", default=[0], help="torch and OpenCV threads, one table part each (0: default)"
    )
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when unavailable")
    p.add_argument("--out", default="", help="also write the table to this file")
    p.add_argument("--note", default="", help="a line about the machine (shared, busy, ...) for --out")
    a = p.parse_args(argv)
    devices = [torch.device(d) for d in a.device if d != "cuda" or torch.cuda.is_available()]
    env = (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads by default), opencv {cv2.__version__} "
        f"({cv2.getNumThreads()} threads by default), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA")
    )
    print(env)
    print(HEADER)
    rows = []
    default_threads = torch.get_num_threads(), cv2.getNumThreads()
    for threads in a.threads:
        torch.set_num_threads(threads or default_threads[0])
        cv2.setNumThreads(threads or default_threads[1])
        for d in devices:
            rows += bench(d, a.size, a.batches, a.runs, threads or default_threads[0])
    if a.out:
        lines = [
            f"# {__doc__.splitlines()[0]}",
            f"# {a.size}x{a.size}, median of {a.runs} runs; first_check {FIRST_CHECK}, check_every {CHECK_EVERY}",
            f"# {env}",
        ]
        lines += [f"# {a.note}"] if a.note else []
        lines += [HEADER] + [format_row(r) for r in rows]
        atomic_write(a.out, "\n".join(lines) + "\n")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

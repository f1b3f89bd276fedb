#!/usr/bin/env python
"""Time of a test-suite case with CPU-bound neighbours, per torch thread count (issue 21, item 12).

Runs a case of ``tests/overfit_case.py`` (default: the point-route BESTIE overfit gate, shortened
to ``--iterations``) in a fresh process with ``--threads`` torch intra-op threads (and
``OMP_NUM_THREADS``), while ``--busy`` processes spin (``python -c "while True: pass"``, the
usual CPU-bound CI neighbour) beside it; prints one json line per run with the wall time, the
seconds per training iteration and the load average before the run.

    python benchmarks/threads_under_load.py --threads 1 2 --busy 0 2 --iterations 60

On a 2-core machine, 2 torch threads with 2 busy neighbours oversubscribe the cores: every
parallel region of a small convolution waits at its barrier until both of its threads have been
scheduled, so each region can cost a scheduler time slice instead of microseconds.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality_spread import run_one  # noqa: E402  (one child-process runner for the gate cases)

BUSY = "while True: pass"


def measure(python, case, seed, threads, iterations, busy):
    """One run of ``case`` beside ``busy`` spinning processes; returns its result dict."""
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = run_one(python, case, seed, threads, iterations)
        wall = time.perf_counter() - t0
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return {"case": case, "threads": threads, "busy": busy, "iterations": iterations, "wall_s": round(wall, 1),
            "train_eval_s": round(res["seconds"], 1),
            "s_per_iteration": round(res["seconds"] / max(iterations, 1), 3),
            "mAP50": round(res.get("mAP50", float("nan")), 1), "loadavg_before": round(load, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="bestie-point", choices=("bestie-point", "bestie-image"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="spinning neighbour processes")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", default=None, help="append the json lines to this file too")
    args = ap.parse_args(argv)
    for busy in args.busy:
        for threads in args.threads:
            row = measure(args.python, args.case, args.seed, threads, args.iterations, busy)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()

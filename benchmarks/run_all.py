#!/usr/bin/env python
"""Run every benchmark once with short settings (``make bench``); numbers go to BENCHMARKS.md.

    .venv/bin/python benchmarks/run_all.py [--device cpu|cuda] [--quick]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    runs = ["--runs", "3"] if args.quick else []
    jobs = [
        ["bench_decode.py", "--device", args.device, "--seeds", "0", *runs],
        ["bench_refine.py", "--device", args.device, *runs],
        ["bench_train_step.py", "--device", args.device, "--iters", "2" if args.quick else "5"],
    ]
    if args.device == "cpu":
        jobs.insert(0, ["bench_mapper.py", "--samples", "60" if args.quick else "200"])
    rc = 0
    for job in jobs:
        print(f"\n$ {' '.join(job)}", flush=True)
        rc |= subprocess.call([sys.executable, os.path.join(HERE, job[0]), *job[1:]])
    sys.exit(rc)


if __name__ == "__main__":
    main()

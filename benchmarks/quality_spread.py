#!/usr/bin/env python
"""Spread of the learned-quality gates of the test suite over seeds, thread counts and detectron2 installs.

Every run is a fresh process (no state shared between runs) of one case of ``tests/overfit_case.py``:

    bestie-image / bestie-point   the BESTIE overfit gate (VOC mAP50 on its training images)
    pam                           the PAM classifier gate (multi-label mAP on its training images)

    python benchmarks/quality_spread.py --case bestie-point --seeds 1-8 --threads 1 2 \
        --python .venv/bin/python --python .venv-d2src/bin/python --out spread.jsonl

Appends one json line per run to ``--out`` (case, seed, threads, detectron2 version, metrics,
seconds) and prints min / median / max of the metric per case and in total; ``--summarize`` prints
the spread of every run in ``--out`` per case, detectron2 install and thread count. ``--iterations 0``
measures the untrained model. Runs with 1 thread go two at a time (``--jobs``) on a 2-core machine.

``--opts KEY VALUE ...`` changes the BESTIE cases' config (recorded as ``opts`` in each line), to
measure a setting's effect on the gate, e.g. the WSSS map's resize mode (issue 21, BENCHMARKS.md)::

    python benchmarks/quality_spread.py --case bestie-point bestie-image --seeds 1-3 --threads 1 \
        --opts BESTIE.INPUT.MAP_INTERPOLATION nearest --out map_nearest_mode.jsonl
    python benchmarks/quality_spread.py --out map_nearest_mode.jsonl --summarize-by-opts
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r'''
import json, sys, tempfile
sys.path.insert(0, {tests!r})
import overfit_case as oc
case, seed, threads, iters, opts = {case!r}, {seed}, {threads}, {iters}, {opts!r}
from bestie_d2.utils.env import environment_info
_d2 = environment_info()["detectron2"]
d2 = ("src@" + _d2["commit"]) if _d2.get("commit") else _d2["version"]
with tempfile.TemporaryDirectory() as d:
    if case == "pam":
        res = oc.run_pam_overfit(seed, threads, oc.PAM_ITERATIONS if iters < 0 else iters)
    else:
        res = oc.run_overfit(case.split("-")[1], d, seed, threads, oc.ITERATIONS if iters < 0 else iters, opts)
res.update(case=case, seed=seed, threads=threads, detectron2=d2, python=sys.executable)
if opts:
    res["opts"] = list(opts)
print("RESULT " + json.dumps(res))
'''


def parse_seeds(text):
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def run_one(python, case, seed, threads, iters, opts=()):
    code = CHILD.format(tests=os.path.join(REPO, "tests"), case=case, seed=seed, threads=threads, iters=iters,
                        opts=list(opts))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{case} seed {seed} threads {threads} ({python}) failed:\n{r.stderr[-3000:]}")


def summarize(path):
    """min / median / max per case, detectron2 install and thread count (and per case) of the runs
    in ``path``: trained runs only (iterations != 0), lines whose ``note`` says superseded left out."""
    rows = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("iterations") == 0 or "superseded" in (r.get("note") or "") or r.get("opts"):
                continue
            rows.append(r)
    names = {"bestie-point": "BESTIE gate, point route (VOC mAP50 on its training images)",
             "bestie-image": "BESTIE gate, image route (VOC mAP50)", "pam": "PAM gate (multi-label mAP)"}
    out = []
    for case in ("bestie-point", "bestie-image", "pam"):
        m = "mAP" if case == "pam" else "mAP50"
        sel = [r for r in rows if r["case"] == case]
        if not sel:
            continue
        out.append(names[case])
        for d2 in sorted({r["detectron2"] for r in sel}):
            for t in (1, 2):
                g = sorted((r for r in sel if r["detectron2"] == d2 and r["threads"] == t), key=lambda r: r["seed"])
                if g:
                    v = [r[m] for r in g]
                    label = "detectron2 0.6" if d2 == "0.6" else f"detectron2 main {d2.split('@')[-1]}"
                    out.append(f"    {label:28s} {t} thread{'s' if t > 1 else ' '}: {min(v):5.1f} / "
                               f"{statistics.median(v):5.1f} / {max(v):5.1f}  (seeds {','.join(str(r['seed']) for r in g)})")
        v = [r[m] for r in sel]
        out.append(f"    all {len(v)} runs:{'':25s}{min(v):5.1f} / {statistics.median(v):5.1f} / {max(v):5.1f}")
    return "\n".join(out)


def summarize_by_opts(path):
    """mean ± sd (min) of the metric per case and ``opts`` over the runs in ``path`` (trained runs)."""
    groups = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("iterations") == 0:
                continue
            m = "mAP" if r["case"] == "pam" else "mAP50"
            groups.setdefault((r["case"], " ".join(r.get("opts") or []) or "(defaults)"), []).append((r["seed"], r[m]))
    out = []
    for (case, opts), runs in sorted(groups.items()):
        v = [x for _, x in sorted(runs)]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        out.append(f"{case:13s} {opts:45s} {statistics.mean(v):5.1f} ± {sd:4.1f} ({min(v):5.1f})  "
                   f"seeds {','.join(str(s) for s, _ in sorted(runs))}: {', '.join(f'{x:.1f}' for x in v)}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", nargs="+", default=["bestie-point"], choices=["bestie-image", "bestie-point", "pam"])
    ap.add_argument("--seeds", default="1-8")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--python", action="append", default=None, help="interpreter(s) to run with (repeatable)")
    ap.add_argument("--iterations", type=int, default=-1, help="-1: the case's own; 0: untrained")
    ap.add_argument("--jobs", type=int, default=2, help="parallel runs for the 1-thread runs")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "quality_spread.jsonl"))
    ap.add_argument("--summarize", action="store_true", help="only print the spread of the runs in --out")
    ap.add_argument("--summarize-by-opts", action="store_true", help="only print mean ± sd (min) per case and --opts")
    ap.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... for the BESTIE cases' config")
    args = ap.parse_args()
    if args.summarize:
        print(summarize(args.out))
        return
    if args.summarize_by_opts:
        print(summarize_by_opts(args.out))
        return
    pythons = args.python or [sys.executable]
    metric = {"pam": "mAP"}
    results = []
    for python in pythons:
        for case in args.case:
            for threads in args.threads:
                runs = [(python, case, s, threads, args.iterations, args.opts) for s in parse_seeds(args.seeds)]
                jobs = max(1, args.jobs // threads)
                with ThreadPoolExecutor(jobs) as ex:
                    for res in ex.map(lambda a: run_one(*a), runs):
                        res["iterations"] = args.iterations
                        m = metric.get(case, "mAP50")
                        print(f"{case:13s} d2 {res['detectron2']:<12} threads {threads} seed {res['seed']:2d}: "
                              f"{m} {res[m]:6.1f}  ({res['seconds']:.0f} s)", flush=True)
                        with open(args.out, "a") as f:
                            f.write(json.dumps(res) + "\n")
                        results.append(res)
    for case in args.case:
        m = metric.get(case, "mAP50")
        vals = [r[m] for r in results if r["case"] == case]
        if vals:
            print(f"{case}: {m} min {min(vals):.1f} / median {statistics.median(vals):.1f} / max {max(vals):.1f} "
                  f"over {len(vals)} runs")


if __name__ == "__main__":
    main()

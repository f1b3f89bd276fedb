#!/usr/bin/env python
"""The demo as a distribution: run it for several seeds and summarise every figure as mean ± sd (min).

    python benchmarks/demo_seeds.py --run --seeds 1 2 3 --routes image point   # runs, then summarises
    python benchmarks/demo_seeds.py output/demo_s*/image/results.json ...      # summarise finished runs

``--run`` calls the demo (``bestie-pipeline --preset toy --seed S --supervision R --output
<out>/demo_s<S>``, as ``make demo``) one run after the other; ``--refiners maskrcnn pointrend`` also
trains PointRend on each run's export (``benchmarks/refiner_comparison.py`` compares the two). The
summary prints, per route, a per-seed table (BESTIE and Mask R-CNN mAP25/50/70/75, PAM mAP, cue
statistics, map mIoU, pseudo labels, time per stage) and the mean ± sd and min of each column, with
the environment each run recorded; ``--markdown`` prints the tables in Markdown (as in the README).
Reads the results.json of both the pipeline and the demo before it (stages ``cues`` with the map
mIoU, ``maskrcnn``).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE_TIMES = ("pam", "cues", "maps", "bestie", "export", "maskrcnn")


def _ev(res, stage):
    return ((res["stages"].get(stage) or {}).get("eval") or {}).get("voc_instance") or {}


def maskrcnn_eval(res):
    """The Mask R-CNN stage's VOC metrics: ``maskrcnn`` (the demo before the pipeline), the
    ``refine`` stage when it trained Mask R-CNN, else the ``refiners`` entry of the export."""
    if "maskrcnn" in res["stages"]:
        return _ev(res, "maskrcnn")
    if (res["stages"].get("refine") or {}).get("refiner") == "maskrcnn":
        return _ev(res, "refine")
    return (((res.get("refiners") or {}).get("maskrcnn") or {}).get("eval") or {}).get("voc_instance") or {}


def stage_seconds(res, stage):
    """Seconds of ``stage`` (``maskrcnn``: the Mask R-CNN refine stage, also under the pipeline)."""
    sec = res["seconds"]
    if stage == "maskrcnn" and "maskrcnn" not in sec:
        if (res["stages"].get("refine") or {}).get("refiner") == "maskrcnn":
            return sec.get("refine")
        return ((res.get("refiners") or {}).get("maskrcnn") or {}).get("seconds")
    return sec.get(stage)


def row_of(res):
    """The figures of one demo run (``results.json``) as an ordered dict of numbers."""
    b, m = _ev(res, "bestie"), maskrcnn_eval(res)
    cues = dict(res["stages"].get("cues") or {}, **(res["stages"].get("maps") or {}))
    pc = cues.get("pam_cues") or {}
    pam = (((res["stages"].get("pam") or {}).get("eval") or {}).get("classification") or {})
    ex = ((res["stages"].get("export") or {}).get("summary") or {})
    row = {"seed": res.get("seed")}
    for k in ("mAP25", "mAP50", "mAP70", "mAP75"):
        row[f"BESTIE {k}"] = b.get(k)
    for k in ("mAP25", "mAP50", "mAP70", "mAP75"):
        row[f"Mask R-CNN {k}"] = m.get(k)
    row["PAM mAP"] = pam.get("mAP")
    row["exactly one cue %"] = 100 * pc["exactly_one"] if "exactly_one" in pc else None
    row["cue precision %"] = 100 * pc["cue_precision"] if "cue_precision" in pc else None
    row["map mIoU %"] = 100 * cues["semantic_miou"] if "semantic_miou" in cues else None
    row["pseudo instances"] = ex.get("instances")
    for s in STAGE_TIMES:
        row[f"{s} s"] = stage_seconds(res, s)
    row["total s"] = sum(v for v in (row[f"{s} s"] for s in STAGE_TIMES) if v is not None)
    return row


def _fmt(v, digits=1):
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def summarise(paths, markdown=False):
    runs = {}
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        runs.setdefault(res["route"], []).append((p, res))
    for route, items in sorted(runs.items()):
        rows = [row_of(r) for _, r in sorted(items, key=lambda x: x[1].get("seed") or 0)]
        cols = list(rows[0])
        print(f"\n## {route}-label route: {len(rows)} runs")
        # one line per distinct environment (the seed is in the table)
        envs = {json.dumps({k: v for k, v in (r.get("environment") or {}).items() if k != "seed"}, sort_keys=True)
                for _, r in items}
        for e in envs:
            e = json.loads(e)
            if e:
                d2 = e["detectron2"]
                print(f"environment: torch {e['torch']}, detectron2 {d2['version']}"
                      f"{' @' + d2['commit'] if d2.get('commit') else ''} "
                      f"({'compiled ops' if d2.get('compiled_ops') else 'no compiled ops'}), {e['cpu']}, "
                      f"{e['cpu_count']} cores, {e['torch_threads']} threads")
        stats = {}
        for c in cols[1:]:
            vals = [r[c] for r in rows if isinstance(r[c], (int, float))]
            if vals:
                stats[c] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, min(vals))
        if markdown:
            print("| seed | " + " | ".join(cols[1:]) + " |")
            print("|---" * len(cols) + "|")
            for r in rows:
                print(f"| {r['seed']} | " + " | ".join(_fmt(r[c]) for c in cols[1:]) + " |")
            print("| **mean ± sd** | " + " | ".join(
                f"{stats[c][0]:.1f} ± {stats[c][1]:.1f}" if c in stats else "-" for c in cols[1:]) + " |")
            print("| **min** | " + " | ".join(_fmt(stats[c][2]) if c in stats else "-" for c in cols[1:]) + " |")
        else:
            for c in cols[1:]:
                per = " ".join(f"{_fmt(r[c]):>7}" for r in rows)
                s = stats.get(c)
                tail = f"   mean {s[0]:7.1f} ± {s[1]:5.1f}  min {s[2]:7.1f}" if s else ""
                print(f"{c:<22} {per}{tail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", help="results.json files (default: <out>/demo_s*/*/results.json)")
    ap.add_argument("--run", action="store_true", help="run the demo for every seed and route first")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--routes", nargs="+", default=["image", "point"], choices=["image", "point"])
    ap.add_argument("--refiners", nargs="+", default=["maskrcnn"], choices=["maskrcnn", "pointrend"],
                    help="with --run: the refiners to train, in this order, on each run's one export")
    ap.add_argument("--out", default=os.path.join(REPO, "output"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.run:
        for seed in args.seeds:
            for route in args.routes:
                for refiner in args.refiners:
                    cmd = [sys.executable, "-m", "bestie_d2.tools.pipeline", "--preset", "toy", "--supervision", route,
                           "--seed", str(seed), "--refiner", refiner, "--output", os.path.join(args.out, f"demo_s{seed}")]
                    print("+", " ".join(cmd), flush=True)
                    subprocess.run(cmd, check=True, cwd=REPO)
    paths = args.results or sorted(glob.glob(os.path.join(args.out, "demo_s*", "*", "results.json")))
    if not paths:
        raise SystemExit("no results.json found (run with --run, or name the files)")
    summarise(paths, markdown=args.markdown)


if __name__ == "__main__":
    main()

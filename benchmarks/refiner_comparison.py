#!/usr/bin/env python
"""Mask R-CNN vs PointRend as the refinement stage, trained on the same BESTIE pseudo labels.

    python benchmarks/demo_seeds.py --run --seeds 1 2 3 --refiners maskrcnn pointrend   # the runs
    python benchmarks/refiner_comparison.py output/demo_s*/*/results.json [--markdown | --table]

Each ``results.json`` must come from a pipeline run whose run folder holds both refiners trained on
its one export (``refiners`` lists them: a run with ``--refiner pointrend`` after one with
``--refiner maskrcnn``, the export skipped the second time). Per route: one row per seed with
mAP25/50/70/75 of both refiners and their training + evaluation time, then mean ± sd and min;
BESTIE itself and the pseudo-label count for reference. ``--table``: one Markdown table, a row per
route and refiner, each metric as mean ± sd (min) over the seeds, with the per-seed difference
PointRend − Mask R-CNN in mAP50 (the README's table). Nothing is run here.
"""
import argparse
import json
import statistics

METRICS = ("mAP25", "mAP50", "mAP70", "mAP75")
REFINERS = ("maskrcnn", "pointrend")
NAMES = {"maskrcnn": "Mask R-CNN", "pointrend": "PointRend"}


def row_of(res):
    """One run's figures: BESTIE and both refiners' VOC metrics, their seconds, pseudo instances."""
    refiners = res.get("refiners") or {}
    missing = [r for r in REFINERS if r not in refiners]
    if missing:
        raise ValueError(f"run of seed {res.get('seed')} ({res.get('route')}) has no {', '.join(missing)} "
                         "result on its export: run the pipeline with that --refiner first")
    row = {"seed": res.get("seed")}
    bestie = ((res["stages"].get("bestie") or {}).get("eval") or {}).get("voc_instance") or {}
    row["BESTIE mAP50"] = bestie.get("mAP50")
    for r in REFINERS:
        ev = (refiners[r].get("eval") or {}).get("voc_instance") or {}
        for k in METRICS:
            row[f"{NAMES[r]} {k}"] = ev.get(k)
    for r in REFINERS:
        row[f"{NAMES[r]} s"] = refiners[r].get("seconds")
    row["pseudo instances"] = ((res["stages"].get("export") or {}).get("summary") or {}).get("instances")
    return row


def _stats(rows, col):
    vals = [r[col] for r in rows if isinstance(r[col], (int, float))]
    if not vals:
        return None
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), min(vals)


def summarise(paths, markdown=False):
    runs = {}
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        runs.setdefault(res["route"], []).append(res)
    for route, items in sorted(runs.items()):
        rows = [row_of(r) for r in sorted(items, key=lambda r: r.get("seed") or 0)]
        cols = list(rows[0])[1:]
        print(f"\n## {route}-label route: {len(rows)} seeds")
        fmt = (lambda v: "-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v)))
        if markdown:
            print("| seed | " + " | ".join(cols) + " |")
            print("|---" * (len(cols) + 1) + "|")
            for r in rows:
                print(f"| {r['seed']} | " + " | ".join(fmt(r[c]) for c in cols) + " |")
            st = {c: _stats(rows, c) for c in cols}
            print("| **mean ± sd** | " + " | ".join(f"{st[c][0]:.1f} ± {st[c][1]:.1f}" if st[c] else "-" for c in cols) + " |")
            print("| **min** | " + " | ".join(fmt(st[c][2]) if st[c] else "-" for c in cols) + " |")
        else:
            for c in cols:
                st = _stats(rows, c)
                tail = f"   mean {st[0]:7.1f} ± {st[1]:5.1f}  min {st[2]:7.1f}" if st else ""
                print(f"{c:<22} " + " ".join(f"{fmt(r[c]):>7}" for r in rows) + tail)
        diffs = [r["PointRend mAP50"] - r["Mask R-CNN mAP50"] for r in rows
                 if r["PointRend mAP50"] is not None and r["Mask R-CNN mAP50"] is not None]
        if diffs:
            print(f"PointRend - Mask R-CNN, mAP50 per seed: {', '.join(f'{d:+.1f}' for d in diffs)}")


def compact_table(paths):
    """One Markdown row per route and refiner: mean ± sd (min) of each metric and of the seconds."""
    runs = {}
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        runs.setdefault(res["route"], []).append(row_of(res))
    print("| route | refiner | seeds | " + " | ".join(METRICS) + " | train + eval s | PointRend − Mask R-CNN mAP50 per seed |")
    print("|---" * (len(METRICS) + 5) + "|")
    for route, rows in sorted(runs.items()):
        rows.sort(key=lambda r: r["seed"] or 0)
        diffs = ", ".join(f"{r['PointRend mAP50'] - r['Mask R-CNN mAP50']:+.1f}" for r in rows)
        for ref in REFINERS:
            cells = []
            for col in [f"{NAMES[ref]} {k}" for k in METRICS] + [f"{NAMES[ref]} s"]:
                st = _stats(rows, col)
                digits = 0 if col.endswith(" s") else 1
                cells.append(f"{st[0]:.{digits}f} ± {st[1]:.{digits}f} ({st[2]:.{digits}f})" if st else "-")
            print(f"| {route} labels | {NAMES[ref]} | {len(rows)} | " + " | ".join(cells)
                  + f" | {diffs if ref == 'pointrend' else ''} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results.json of pipeline runs with both refiners")
    ap.add_argument("--markdown", action="store_true", help="per-route tables in Markdown")
    ap.add_argument("--table", action="store_true", help="one compact Markdown table (route x refiner)")
    args = ap.parse_args()
    if args.table:
        compact_table(args.results)
    else:
        summarise(args.results, markdown=args.markdown)


if __name__ == "__main__":
    main()

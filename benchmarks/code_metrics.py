"""Size and shape of the package source: the before/after table of a refactor.

    python benchmarks/code_metrics.py [--root bestie_d2] [--json]

Counts Python files and lines under ``--root``, the largest files, every function or method
longer than 60 lines (by its AST span, decorators excluded), files over 400 lines, and the
number of repeated-code pairs that the ``duplicates`` command reports when it is on the PATH.
"""
import argparse
import ast
import json
import os
import re
import shutil
import subprocess


def function_spans(path):
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def duplicate_pairs(root):
    exe = shutil.which("duplicates")
    if exe is None:
        return None
    out = subprocess.run([exe, "--repo", root, "--most", "200"], capture_output=True, text=True).stdout
    m = re.match(r"(\d+) pairs", out)
    return 0 if m is None and out.startswith("no duplicates") else (int(m.group(1)) if m else None)


def metrics(root, long_fn=60, big_file=400):
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.endswith(".py")]
    lines = {p: sum(1 for _ in open(p)) for p in files}
    long_fns = sorted(
        ((os.path.relpath(p, root), name, n) for p in files for name, _, n in function_spans(p) if n > long_fn),
        key=lambda t: -t[2],
    )
    largest = max(lines, key=lines.get)
    return {
        "files": len(files),
        "lines": sum(lines.values()),
        "largest_file": [os.path.relpath(largest, root), lines[largest]],
        f"files_over_{big_file}": sorted([os.path.relpath(p, root), n] for p, n in lines.items() if n > big_file),
        f"functions_over_{long_fn}_lines": long_fns,
        "duplicate_pairs": duplicate_pairs(root),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="bestie_d2")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    m = metrics(a.root)
    if a.json:
        print(json.dumps(m, indent=1))
        return
    print(f"files {m['files']}, lines {m['lines']}, largest {m['largest_file'][0]} ({m['largest_file'][1]} lines), "
          f"duplicate pairs {m['duplicate_pairs']}")
    print("files over 400 lines:", ", ".join(f"{f} ({n})" for f, n in m["files_over_400"]) or "none")
    print(f"functions over 60 lines ({len(m['functions_over_60_lines'])}):")
    for f, name, n in m["functions_over_60_lines"]:
        print(f"  {f}:{name} {n}")


if __name__ == "__main__":
    main()

"""The installed console scripts (issue 16): every ``console_scripts`` entry of ``setup.py`` runs.

``--help`` runs the whole chain an installed script goes through (the wrapper pip writes imports
the target and calls it with no argument, then ``sys.exit``s its return value), so a target with a
required parameter, or one returning a summary object (printed and turned into exit status 1 by
the wrapper), fails here.
"""
import ast
import os
import subprocess
import sys

import pytest

from repo_paths import REPO


def _setup_console_scripts():
    """``{name: "module:function"}`` from setup.py's ``entry_points["console_scripts"]``."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            eps = ast.literal_eval(node.value)
            return dict(s.replace(" ", "").split("=", 1) for s in eps["console_scripts"])
    raise AssertionError("setup.py has no entry_points")


SCRIPTS = _setup_console_scripts()


def _script_path(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.fail(
            f"console script {name} is not installed next to {sys.executable}: reinstall the package "
            f"({sys.executable} -m pip install --no-build-isolation --no-deps -e .)"
        )
    return path


def test_setup_lists_the_tools():
    assert {"bestie-extract-cues", "bestie-cam-to-semantic", "bestie-export-pseudo-coco",
            "bestie-predict", "bestie-visualize", "bestie-check-data", "bestie-pipeline"} <= set(SCRIPTS)


def test_installed_entry_points_match_setup_py():
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group="console_scripts")
    except TypeError:  # Python < 3.10
        eps = entry_points().get("console_scripts", [])
    installed = {ep.name: ep.value.replace(" ", "") for ep in eps if ep.name in SCRIPTS}
    assert installed == SCRIPTS, "the installed package is stale: reinstall it (pip install -e .)"


def test_every_console_script_help():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # all at once: most of the time is importing torch / detectron2
    procs = {
        name: subprocess.Popen([_script_path(name), "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for name in SCRIPTS
    }
    failures = []
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        if p.returncode != 0 or "usage:" not in out:
            failures.append(f"{name} --help: exit {p.returncode}\nstdout: {out[-800:]}\nstderr: {err[-1500:]}")
    assert not failures, "\n\n".join(failures)

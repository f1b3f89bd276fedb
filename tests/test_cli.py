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

from conftest import scaled_timeout
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


@pytest.fixture(scope="module")
def help_outputs():
    """``{name: (exit status, stdout, stderr)}`` of every console script's ``--help``, warnings shown."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    # all at once: most of the time is importing torch / detectron2
    procs = {
        name: subprocess.Popen([_script_path(name), "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for name in SCRIPTS
    }
    out = {}
    for name, p in procs.items():
        o, e = p.communicate(timeout=scaled_timeout(300))
        out[name] = (p.returncode, o, e)
    return out


def test_every_console_script_help(help_outputs):
    failures = [f"{name} --help: exit {code}\nstdout: {out[-800:]}\nstderr: {err[-1500:]}"
                for name, (code, out, err) in help_outputs.items() if code != 0 or "usage:" not in out]
    assert not failures, "\n\n".join(failures)


def test_help_lists_no_training_only_flags(help_outputs):
    """Issue 21, item 11: --resume / --eval-only mean nothing to the cue, map and export tools."""
    for name in ("bestie-extract-cues", "bestie-cam-to-semantic", "bestie-export-pseudo-coco"):
        out = help_outputs[name][1]
        assert "--num-gpus" in out and "--resume" not in out and "--eval-only" not in out, name


def _option_blocks(help_text):
    """Each option's entry of a --help text, wrapped lines joined."""
    blocks, cur = [], None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            cur = [line]
            blocks.append(cur)
        elif cur is not None and line.startswith("    "):
            cur.append(line)
        else:
            cur = None
    return [" ".join(" ".join(b).split()) for b in blocks]


def test_help_prints_each_default_once(help_outputs):
    """Issue 21, item 11: ``bestie-prepare-points --help`` printed its defaults twice."""
    for name, (_, out, _) in help_outputs.items():
        for block in _option_blocks(out):
            assert block.count("default") <= 1 and "(default: None)" not in block, (name, block)
    prep = " ".join(_option_blocks(help_outputs["bestie-prepare-points"][1]))
    assert "(default: centroid)" in prep and "(default: 0)" in prep


def test_no_torch_jit_deprecation_warning(help_outputs):
    """Issue 21, item 11: every command printed torch's jit.script FutureWarning twice (fvcore)."""
    for name, (_, _, err) in help_outputs.items():
        assert "jit.script" not in err and "FutureWarning" not in err, (name, err[-600:])


# ------------------------------------------------------------------------------------------------
# Issue 21, item 6: every tool and train_net answer an unknown key / a misplaced option in one line
# ------------------------------------------------------------------------------------------------
TOY_CFG = os.path.join(REPO, "configs", "toy", "bestie_point_label.yaml")


def _tool_calls(tmp):
    from bestie_d2.tools import (check_data, convert_weights, export_pseudo_coco, extract_cues, predict,
                                 train_net, visualize)
    from bestie_d2.tools import cam_to_semantic

    out = str(tmp / "out")
    return {
        "train_net": lambda opts: train_net.invoke_main(["--config-file", TOY_CFG] + opts),
        "check_data": lambda opts: check_data.main(["--config-file", TOY_CFG] + opts),
        "extract_cues": lambda opts: extract_cues.invoke_main(
            ["--config-file", TOY_CFG, "--dataset", "bestie_toy_train", "--output", out] + opts),
        "cam_to_semantic": lambda opts: cam_to_semantic.invoke_main(
            ["--config-file", TOY_CFG, "--dataset", "bestie_toy_train", "--output", out] + opts, mode="semantic"),
        "export_pseudo_coco": lambda opts: export_pseudo_coco.invoke_main(
            ["--config-file", TOY_CFG, "--output", out + ".json"] + opts),
        "predict": lambda opts: predict.main(["--config-file", TOY_CFG, "--input", out, "--output", out] + opts),
        "visualize": lambda opts: visualize.main(["--config-file", TOY_CFG, "--output", out] + opts),
        "convert_weights": lambda opts: sys.exit(convert_weights.cli(
            ["--source", "torchvision-resnet", "--input", out + ".pth", "--output", out + ".d2.pth",
             "--config-file", TOY_CFG] + opts)),
    }


@pytest.mark.usefixtures("restore_loggers")
@pytest.mark.parametrize("tool", ["train_net", "check_data", "extract_cues", "cam_to_semantic",
                                  "export_pseudo_coco", "predict", "visualize", "convert_weights"])
def test_unknown_key_and_misplaced_option_one_line(tool, tmp_path, capsys):
    call = _tool_calls(tmp_path)[tool]
    for opts, want in ((["BESTIE.DATA.CENTER_POINT_DIR", "/x"], "nearest existing keys: BESTIE.DATA.CENTER_POINTS_DIR"),
                       (["MODEL.WEIGHTS", "", "--report", "r.txt"], "option --report")):
        with pytest.raises(SystemExit) as e:
            call(opts)
        assert e.value.code == 2, (tool, opts)
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and want in err[0] and "Traceback" not in err[0], (tool, err)


@pytest.mark.usefixtures("restore_loggers")
def test_demo_checks_stage_overrides_first(tmp_path, capsys):
    """The demo's ``--<stage>-opts``: an unknown key is one line before the first stage starts."""
    from bestie_d2.tools import demo

    with pytest.raises(SystemExit) as e:
        demo.main(["--output", str(tmp_path / "demo"), "--stop-after", "pam",
                   "--bestie-opts", "BESTIE.DATA.CENTER_POINT_DIR", "x"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(err) == 1 and "BESTIE.DATA.CENTER_POINTS_DIR" in err[0]
    run_dir = tmp_path / "demo" / "image"
    assert sorted(p.name for p in run_dir.iterdir()) == ["log.txt"]  # no stage ran (the run log holds the error)

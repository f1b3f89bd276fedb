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
    from ._imports import import_registering_modules

    import_registering_modules("bestie_d2", ["modeling", "data.datasets"])


register_all()

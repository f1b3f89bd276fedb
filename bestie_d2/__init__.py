"""bestie_d2: weakly-supervised instance segmentation (BESTIE, CVPR 2022) for Detectron2.

Importing this package prepares detectron2 (see :mod:`bestie_d2.compat`; on detectron2 main it
changes nothing global) and registers every meta-architecture, backbone and data set it provides:
importing :mod:`bestie_d2.modeling` registers ``BESTIE``, ``PAMClassifier`` and the HRNet / VGG
backbones, importing :mod:`bestie_d2.data.datasets` the data sets.
"""
from . import compat

compat.prepare_detectron2()

with compat.quiet_library_imports():  # torch's jit.script deprecation, printed by fvcore's import
    from .config import add_bestie_config  # noqa: E402
    from . import modeling  # noqa: E402,F401  (registers models and backbones)
    from .data import datasets as _datasets  # noqa: E402,F401  (registers data sets)

__version__ = "0.1.0"
__all__ = ["add_bestie_config", "compat"]

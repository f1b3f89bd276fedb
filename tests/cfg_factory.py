"""Fresh bestie_d2 configs for tests (the shared first step of the ``bestie_cfg`` fixtures).

``new_bestie_cfg()`` is :func:`bestie_d2.config.get_cfg` (Detectron2's defaults plus every key of
:func:`bestie_d2.add_bestie_config`, as a ``BestieCfgNode`` that also reads the ``model_zoo://`` base
of the Mask R-CNN configs), a new object on every call (never frozen), optionally merged with a
YAML file and ``KEY VALUE`` pairs.
Test helpers that build a config from arguments call it directly; test functions take the
``bestie_cfg`` / ``tiny_bestie_cfg`` fixtures of ``conftest.py``.
"""
import os

import bestie_d2  # noqa: F401  (prepares detectron2 before its first import)
from bestie_d2.config import get_cfg

from repo_paths import REPO

# The toy BESTIE config: ResNet-18, narrow decoder, 128-pixel crops, CPU (configs/toy/).
TINY_BESTIE_CONFIG = "configs/toy/bestie_image_label.yaml"


def new_bestie_cfg(config_file=None, opts=()):
    """``bestie_d2.config.get_cfg()``, then ``config_file`` (absolute, or relative to the repository
    root) and the ``opts`` list (``[KEY, VALUE, ...]``) merged when given."""
    cfg = get_cfg()
    if config_file is not None:
        cfg.merge_from_file(os.path.join(REPO, config_file))
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg

"""Fresh bestie_d2 configs for tests (the shared first step of the ``bestie_cfg`` fixtures).

``new_bestie_cfg()`` is Detectron2's ``get_cfg()`` plus :func:`bestie_d2.add_bestie_config`, a new
object on every call (never frozen), optionally merged with a YAML file and ``KEY VALUE`` pairs.
Test helpers that build a config from arguments call it directly; test functions take the
``bestie_cfg`` / ``tiny_bestie_cfg`` fixtures of ``conftest.py``.
"""
import os

import bestie_d2  # noqa: F401  (prepares detectron2 before its first import)
from bestie_d2 import add_bestie_config
from bestie_d2.config import get_cfg  # bestie_d2's: resolves the model-zoo _BASE_ of the Mask R-CNN configs

from repo_paths import REPO

# The toy BESTIE config: ResNet-18, narrow decoder, 128-pixel crops, CPU (configs/toy/).
TINY_BESTIE_CONFIG = "configs/toy/bestie_image_label.yaml"


def new_bestie_cfg(config_file=None, opts=()):
    """``get_cfg()`` + ``add_bestie_config``, then ``config_file`` (absolute, or relative to the
    repository root) and the ``opts`` list (``[KEY, VALUE, ...]``) merged when given."""
    cfg = get_cfg()
    add_bestie_config(cfg)
    if config_file is not None:
        cfg.merge_from_file(os.path.join(REPO, config_file))
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg

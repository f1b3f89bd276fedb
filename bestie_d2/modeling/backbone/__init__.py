"""Backbones registered in detectron2's BACKBONE_REGISTRY."""
from ..._imports import import_registering_modules

import_registering_modules(__name__, ["hrnet", "vgg"])

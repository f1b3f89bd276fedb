"""Backbones registered in detectron2's BACKBONE_REGISTRY by importing this package:
``build_hrnet_backbone`` (:mod:`.hrnet`) and ``build_vgg16_d1_backbone`` (:mod:`.vgg`)."""
from . import hrnet, vgg  # noqa: F401

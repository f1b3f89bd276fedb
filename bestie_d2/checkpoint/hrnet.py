"""HRNet weights -> bestie_d2's HRNet (``backbone.*``) and the authors' HRNet BESTIE -> ours.

Naming facts used here (checked by ``tests/test_convert_weights.py``):

* bestie_d2's :class:`~bestie_d2.modeling.backbone.hrnet.HRNet` uses the HRNet module names
  ``conv1, bn1, conv2, bn2, layer1, transition1..3, stage2..4``; so do the ImageNet files of the
  HRNet classification models (``hrnet_w32-36af842e.pth`` / ``hrnet_w48-8ef0771d.pth``, as
  distributed with the pose-estimation HRNet) and timm's ``hrnet_w32`` / ``hrnet_w48``.
* The classification models add ``incre_modules``, ``downsamp_modules``, ``final_layer`` and
  ``classifier``, and their **last stage-4 module fuses into every branch**; the pose variant
  (ours, the authors') fuses into branch 0 only, so that module's ``fuse_layers.1..3`` are
  classification-only as well. All of these are dropped (and listed).
* The authors' BESTIE HRNet state dict holds the backbone under the same names without prefix,
  plus three light heads ``seg``, ``center``, ``offset`` (``Sequential(conv3x3, ReLU, conv1x1)``,
  indices 0 and 2), which are ours ``heads.sem_head``, ``heads.center_head``, ``heads.offset_head``
  (same ``Sequential`` indices).
"""
import re
from typing import Mapping

import torch

from .core import Conversion, UnknownKeysError

__all__ = ["HRNET_PREFIXES", "CLASSIFICATION_PREFIXES", "hrnet_imagenet_to_bestie", "authors_bestie_hrnet_to_bestie",
           "is_authors_hrnet_layout"]

#: Top-level module names bestie_d2's HRNet has (and loads).
HRNET_PREFIXES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                  "transition3", "stage4")
#: Top-level modules of the classification HRNet only.
CLASSIFICATION_PREFIXES = ("incre_modules", "downsamp_modules", "final_layer", "classifier")

_AUTHORS_HEADS = {"seg": "heads.sem_head", "center": "heads.center_head", "offset": "heads.offset_head"}
_STAGE4_FUSE = re.compile(r"^stage4\.(\d+)\.fuse_layers\.(\d+)\.")
_AUTHORS_HEAD = re.compile(r"^(seg|center|offset)\.([02])\.(weight|bias)$")


def _last_stage4_module(keys) -> int:
    idx = [int(m.group(1)) for m in (re.match(r"^stage4\.(\d+)\.", k) for k in keys) if m]
    return max(idx) if idx else -1


def _top(key: str) -> str:
    return key.split(".", 1)[0]


def _map_backbone(conv: Conversion, key: str, value: torch.Tensor, last4: int) -> bool:
    """Map or drop one HRNet key; False when it is not an HRNet key."""
    top = _top(key)
    if top in CLASSIFICATION_PREFIXES:
        conv.drop(key, f"{top}: classification-only module")
        return True
    if top not in HRNET_PREFIXES:
        return False
    m = _STAGE4_FUSE.match(key)
    if m and int(m.group(1)) == last4 and int(m.group(2)) > 0:
        conv.drop(key, f"stage4.{last4}.fuse_layers.1-3: multi-scale fusion of the classification HRNet "
                       "(the pose HRNet's last module fuses into branch 0 only)")
        return True
    conv.map(key, "backbone." + key, value)
    return True


def hrnet_imagenet_to_bestie(state: Mapping[str, torch.Tensor], source: str = "hrnet-imagenet") -> Conversion:
    """ImageNet HRNet-W32/W48 (classification naming: the pose-estimation HRNet's
    ``hrnet_w48-8ef0771d.pth``, or timm's ``hrnet_w48``) -> bestie_d2's HRNet under ``backbone.``.

    The 11 backbone prefixes are kept verbatim; the classification-only modules are dropped. Load
    the result with an HRNet BESTIE config (``configs/VOC/bestie_HRNet48_*.yaml``): the heads keep
    their initialisation. Input convention: RGB, ImageNet mean/std (the configs' defaults).
    """
    conv = Conversion(source=source, target="bestie (HRNet backbone)")
    last4 = _last_stage4_module(state)
    unknown = [k for k, v in state.items() if not _map_backbone(conv, k, v, last4)]
    if unknown:
        raise UnknownKeysError(source, unknown)
    if not any(k.startswith("stage4.") for k in state):
        raise UnknownKeysError(source, ["(no stage4.* tensor: not an HRNet state dict)"])
    conv.config.update({"INPUT.FORMAT": "RGB", "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
                        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375]})
    conv.notes.append("heads (heads.*) are not in an ImageNet file: they keep the model's initialisation")
    return conv


def is_authors_hrnet_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for the authors' HRNet BESTIE layout (top-level ``stage4.*`` and ``seg.*``)."""
    return any(k.startswith("stage4.") for k in state) and any(k.startswith("seg.") for k in state)


def authors_bestie_hrnet_to_bestie(state: Mapping[str, torch.Tensor], source: str = "authors-bestie") -> Conversion:
    """The authors' BESTIE HRNet checkpoint (``BESTIE_HRNet48_{image,point}_label.pt``) ->
    bestie_d2's HRNet BESTIE (``configs/VOC/bestie_HRNet48_*.yaml``; W32 with
    ``MODEL.HRNET.WIDTH 32``). Every tensor is mapped (backbone verbatim under ``backbone.``,
    ``seg/center/offset.{0,2}`` -> ``heads.{sem,center,offset}_head.{0,2}``)."""
    conv = Conversion(source=source, target="bestie (HRNet + light heads)")
    last4 = _last_stage4_module(state)
    unknown = []
    for k, v in state.items():
        m = _AUTHORS_HEAD.match(k)
        if m:
            conv.map(k, f"{_AUTHORS_HEADS[m.group(1)]}.{m.group(2)}.{m.group(3)}", v)
        elif _top(k) in CLASSIFICATION_PREFIXES or not _map_backbone(conv, k, v, last4):
            unknown.append(k)
    if unknown:
        raise UnknownKeysError(source + " (HRNet)", unknown)
    conv.config.update({"INPUT.FORMAT": "RGB", "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
                        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375]})
    return conv

"""VGG-16 weights -> bestie_d2's PAM classifier (``configs/*/pam_vgg16.yaml``).

* torchvision ``vgg16`` (``vgg16-397923af.pth``): ``features.N.*`` -> ``backbone.features.N.*``
  (bestie_d2's VGG-16 D1 keeps torchvision's ``features`` indices; D1 only changes pool 4 and
  block 5's dilation, which have no weights); the fully-connected ``classifier.*`` is dropped.
  The same renaming also runs when such a file is given directly as ``MODEL.WEIGHTS``
  (:meth:`bestie_d2.modeling.pam.PAMClassifier` calls :func:`rename_torchvision_vgg`).
* the authors' ``PAM.pth`` (``{"model": state_dict, "epoch", "iter"}``): ``features.N.*`` as above;
  ``layer{b}_conv{k}.*`` are second names of the same ``features`` tensors (dropped after checking
  they are equal); ``extra_conv1..3`` -> ``extra_convs.0..2``, ``extra_conv4`` (the 1x1 CAM conv) ->
  ``cam_conv``. The authors apply PAM after all three extra convs: ``MODEL.PAM.LAYERS [0, 1, 2]``.
"""
import re
from typing import Dict, Iterable, List, Mapping, Tuple

import torch

from .core import Conversion, ConversionError, UnknownKeysError

__all__ = ["VGG16_CONV_INDICES", "AUTHORS_PAM_ALIASES", "rename_torchvision_vgg", "torchvision_vgg16_to_pam",
           "authors_pam_to_pam"]

#: ``features`` indices of the 13 convs of torchvision's vgg16 (and of VGG-16 D1).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: The authors' ``layer{b}_conv{k}`` names -> ``features`` index of the same conv.
AUTHORS_PAM_ALIASES: Dict[str, int] = {
    name: idx
    for name, idx in zip(
        ["layer1_conv1", "layer1_conv2", "layer2_conv1", "layer2_conv2", "layer3_conv1", "layer3_conv2",
         "layer3_conv3", "layer4_conv1", "layer4_conv2", "layer4_conv3", "layer5_conv1", "layer5_conv2",
         "layer5_conv3"],
        VGG16_CONV_INDICES,
    )
}
_FEATURES = re.compile(r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_CLASSIFIER = re.compile(r"^classifier\.\d+\.(weight|bias)$")
_ALIAS = re.compile(r"^(layer\d_conv\d)\.(weight|bias)$")
_EXTRA = re.compile(r"^extra_conv([1-4])\.(weight|bias)$")


def rename_torchvision_vgg(keys: Iterable[str]) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]], List[str]]:
    """The torchvision VGG name map: ``(renamed (src, dst) pairs, dropped (src, reason) pairs,
    unknown keys)``. ``features.N.*`` -> ``backbone.features.N.*``; ``classifier.*`` dropped."""
    renamed, dropped, unknown = [], [], []
    for k in keys:
        if _FEATURES.match(k):
            renamed.append((k, "backbone." + k))
        elif _CLASSIFIER.match(k):
            dropped.append((k, "classifier: VGG-16's fully-connected layers (not in PAM)"))
        else:
            unknown.append(k)
    return renamed, dropped, unknown


def torchvision_vgg16_to_pam(state: Mapping[str, torch.Tensor], source: str = "torchvision-vgg16") -> Conversion:
    """torchvision ``vgg16`` (or ``vgg16_bn`` for ``MODEL.VGG.NORM BN``) -> PAM classifier.

    The extra convs and the CAM conv are not in an ImageNet file: they keep the model's
    initialisation (the authors' He init). Input: RGB, ImageNet mean/std (``Base-PAM.yaml``).
    """
    renamed, dropped, unknown = rename_torchvision_vgg(state)
    if unknown:
        raise UnknownKeysError(source, unknown)
    if not renamed:
        raise ConversionError("no features.N.* tensor: not a torchvision VGG state dict")
    conv = Conversion(source=source, target="pam (VGG-16 D1 backbone)")
    for src, dst in renamed:
        conv.map(src, dst, state[src])
    for src, reason in dropped:
        conv.drop(src, reason)
    conv.config.update({"INPUT.FORMAT": "RGB", "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
                        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375]})
    conv.notes.append("extra_convs.* and cam_conv.* are not in an ImageNet file: they keep the model's initialisation")
    return conv


def authors_pam_to_pam(state: Mapping[str, torch.Tensor], source: str = "authors-pam") -> Conversion:
    """The authors' ``PAM.pth`` -> bestie_d2's PAM classifier; every PAM tensor is mapped."""
    conv = Conversion(source=source, target="pam (VGG-16 D1 + PAM head)")
    unknown, aliases = [], []
    for k, v in state.items():
        m = _EXTRA.match(k)
        if _FEATURES.match(k):
            conv.map(k, "backbone." + k, v)
        elif m:
            i = int(m.group(1))
            dst = f"extra_convs.{i - 1}.{m.group(2)}" if i < 4 else f"cam_conv.{m.group(2)}"
            conv.map(k, dst, v)
        elif _ALIAS.match(k):
            aliases.append(k)
        else:
            unknown.append(k)
    if unknown:
        raise UnknownKeysError(source, unknown)
    for k in aliases:
        name, part = k.split(".")
        if name not in AUTHORS_PAM_ALIASES:
            raise UnknownKeysError(source, [k])
        feat = f"features.{AUTHORS_PAM_ALIASES[name]}.{part}"
        if feat in state:
            if state[feat].shape != state[k].shape or not torch.equal(state[feat], state[k]):
                raise ConversionError(f"{k} should be a second name of {feat}, but the two tensors differ")
            conv.drop(k, "layerX_convY: second name of the same features.N tensor (saved twice)")
        else:  # only the alias was saved
            conv.map(k, "backbone." + feat, state[k])
    conv.config.update({"INPUT.FORMAT": "RGB", "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
                        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375], "MODEL.PAM.LAYERS": [0, 1, 2]})
    conv.notes.append("the authors' classifier applies PAM after every extra conv: MODEL.PAM.LAYERS [0, 1, 2] "
                      "(the VOC config's default [2] is the supplement's best setting)")
    return conv

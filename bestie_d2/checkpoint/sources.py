"""The conversion sources by name, and how a target config chooses their options.

=====================  ==========================================================  =============
``source``             input                                                       ``target``
=====================  ==========================================================  =============
``authors-bestie``     ``BESTIE_HRNet48_{image,point}_label.pt`` (HRNet-W48/W32)    bestie
                       or an R50/R101 BESTIE trained with the authors' code
``authors-pam``        ``PAM.pth`` (the authors' VGG-16 PAM classifier)             pam
``hrnet-imagenet``     ``hrnet_w32-36af842e.pth`` / ``hrnet_w48-8ef0771d.pth``      bestie
``timm-hrnet``         timm ``hrnet_w32`` / ``hrnet_w48`` state dict / safetensors  bestie
``torchvision-resnet`` torchvision ResNet-18/50/101/152 (``resnet50-*.pth``)        bestie, maskrcnn
``torchvision-vgg16``  torchvision ``vgg16-397923af.pth`` (or ``vgg16_bn``)         pam
``bestie-resnet``      a bestie_d2 BESTIE ResNet checkpoint (``model_final.pth``)   maskrcnn
=====================  ==========================================================  =============
"""
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch

from .core import Conversion, ConversionError
from .hrnet import authors_bestie_hrnet_to_bestie, hrnet_imagenet_to_bestie, is_authors_hrnet_layout
from .resnet import (
    TARGET_INPUT,
    authors_bestie_r50_to_bestie,
    bestie_resnet_to_maskrcnn,
    is_authors_r50_layout,
    torchvision_resnet_to_d2,
)
from .vgg import authors_pam_to_pam, torchvision_vgg16_to_pam

__all__ = ["SOURCES", "Source", "convert", "default_target"]


@dataclass(frozen=True)
class Source:
    targets: Tuple[str, ...]
    help: str


SOURCES = {
    "authors-bestie": Source(("bestie",), "the authors' BESTIE checkpoint (BESTIE_HRNet48_*_label.pt; HRNet or R50 layout)"),
    "authors-pam": Source(("pam",), "the authors' PAM.pth (VGG-16 PAM classifier)"),
    "hrnet-imagenet": Source(("bestie",), "ImageNet HRNet-W32/W48 (hrnet_w48-8ef0771d.pth, HRNet-Image-Classification names)"),
    "timm-hrnet": Source(("bestie",), "timm hrnet_w32 / hrnet_w48 state dict (.pth or .safetensors)"),
    "torchvision-resnet": Source(("bestie", "maskrcnn"), "torchvision ResNet-18/50/101/152 ImageNet weights"),
    "torchvision-vgg16": Source(("pam",), "torchvision vgg16 (or vgg16_bn) ImageNet weights"),
    "bestie-resnet": Source(("maskrcnn",), "a trained bestie_d2 BESTIE ResNet (its backbone -> Mask R-CNN's)"),
}


def default_target(source: str) -> str:
    return _source(source).targets[0]


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ConversionError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[name]


def _uses_bn_counters(cfg) -> bool:
    """Whether the config's ResNet norm keeps ``num_batches_tracked`` (not FrozenBN / GN)."""
    norm = cfg.MODEL.RESNETS.NORM
    return isinstance(norm, str) and norm not in ("FrozenBN", "GN", "")


def _input(cfg, target: str):
    if cfg is None:
        return TARGET_INPUT[target]
    return cfg.INPUT.FORMAT, tuple(cfg.MODEL.PIXEL_MEAN), tuple(cfg.MODEL.PIXEL_STD)


def convert(
    source: str,
    state: Mapping[str, torch.Tensor],
    target: Optional[str] = None,
    cfg=None,
    *,
    bestie_cfg=None,
) -> Conversion:
    """Convert ``state`` (a source state dict) for ``target``.

    Args:
        source: a key of :data:`SOURCES`.
        target: one of the source's targets (default: its first).
        cfg: the target config (optional). ResNet conversions take ``INPUT.FORMAT``,
            ``MODEL.PIXEL_MEAN/STD`` and the norm (BN counters or not) from it; and its
            ``MODEL.RESNETS.STRIDE_IN_1X1`` must be False for torchvision-layout ResNets.
            Without it the target's base config is assumed.
        bestie_cfg: ``bestie-resnet`` only: the config the BESTIE model was trained with (its
            input convention; default ``configs/Base-BESTIE.yaml``'s RGB / torchvision statistics).
    """
    src = _source(source)
    target = target or src.targets[0]
    if target not in src.targets:
        raise ConversionError(f"source {source!r} converts for {'/'.join(src.targets)}, not {target!r}")
    if cfg is not None and source in ("torchvision-resnet", "bestie-resnet", "authors-bestie"):
        if cfg.MODEL.BACKBONE.NAME in ("build_resnet_backbone", "build_resnet_fpn_backbone") and cfg.MODEL.RESNETS.STRIDE_IN_1X1:
            raise ConversionError(
                "the config has MODEL.RESNETS.STRIDE_IN_1X1 True (MSRA/caffe ResNets); torchvision-layout "
                "ResNets put the stride in the 3x3 conv: add MODEL.RESNETS.STRIDE_IN_1X1 False to the config "
                "(and to every train_net.py command that uses these weights)"
            )

    if source == "authors-bestie":
        if is_authors_hrnet_layout(state):
            return authors_bestie_hrnet_to_bestie(state, source)
        if is_authors_r50_layout(state):
            return authors_bestie_r50_to_bestie(state, source)
        raise ConversionError(
            "not an authors' BESTIE state dict: expected top-level stage4.*/seg.* (HRNet) or "
            "backbone.* + decoder.semantic_decoder.* (ResNet)"
        )
    if source == "authors-pam":
        return authors_pam_to_pam(state, source)
    if source in ("hrnet-imagenet", "timm-hrnet"):
        return hrnet_imagenet_to_bestie(state, source)
    if source == "torchvision-vgg16":
        return torchvision_vgg16_to_pam(state, source)
    if source == "torchvision-resnet":
        fmt, mean, std = _input(cfg, target)
        keep = _uses_bn_counters(cfg) if cfg is not None else None
        return torchvision_resnet_to_d2(state, target, input_format=fmt, pixel_mean=mean, pixel_std=std,
                                        keep_bn_counters=keep, source=source)
    if source == "bestie-resnet":
        s_fmt, s_mean, s_std = _input(bestie_cfg, "bestie")
        d_fmt, d_mean, d_std = _input(cfg, "maskrcnn")
        keep = _uses_bn_counters(cfg) if cfg is not None else False
        return bestie_resnet_to_maskrcnn(state, s_fmt, d_fmt, src_mean=s_mean, dst_mean=d_mean, src_std=s_std,
                                         dst_std=d_std, keep_bn_counters=keep, source=source)
    raise AssertionError(source)  # pragma: no cover


"""ResNet weights -> detectron2's ResNet: torchvision ImageNet files, and the authors' R50 BESTIE.

torchvision -> detectron2 names: ``conv1``/``bn1`` -> ``stem.conv1`` / ``stem.conv1.norm``;
``layer{i}.{b}.conv{k}`` / ``bn{k}`` -> ``res{i+1}.{b}.conv{k}`` / ``conv{k}.norm``;
``layer{i}.{b}.downsample.{0,1}`` -> ``res{i+1}.{b}.shortcut`` / ``shortcut.norm``; ``fc`` is
dropped. torchvision's bottleneck has its stride in the 3x3 conv: **the target config needs
``MODEL.RESNETS.STRIDE_IN_1X1 False``** (the shapes are the same either way, so a wrong setting
loads silently and computes something else).

Input conventions. torchvision weights expect RGB in [0, 1] normalised by the ImageNet mean/std,
i.e. in detectron2's 0-255 units ``PIXEL_MEAN [123.675, 116.28, 103.53]``,
``PIXEL_STD [58.395, 57.12, 57.375]``, ``INPUT.FORMAT RGB`` (bestie_d2's BESTIE configs). A target
with another channel order and/or std (detectron2's Mask R-CNN base: BGR, mean
``[103.53, 116.28, 123.675]``, std 1) gets the stem convolution adapted exactly: its input channels
are reordered and scaled by ``dst_std / src_std``. This is exact because the stem conv has no bias
and pads with zeros, and zero means "the mean pixel" on both sides; the means must therefore be
the same pixel values (they are: the MSRA BGR means are torchvision's means x 255).
"""
import re
from typing import Mapping, Optional, Sequence

import torch

from .core import Conversion, ConversionError, UnknownKeysError, bn_counter

__all__ = [
    "TORCHVISION_MEAN",
    "TORCHVISION_STD",
    "TARGET_PREFIXES",
    "adapt_input_conv",
    "torchvision_resnet_to_d2",
    "authors_bestie_r50_to_bestie",
    "is_authors_r50_layout",
    "bestie_resnet_to_maskrcnn",
]

#: torchvision's ImageNet normalisation in detectron2's 0-255 units, RGB order.
TORCHVISION_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_STD = (58.395, 57.12, 57.375)

#: Where the ResNet lives in each target model.
TARGET_PREFIXES = {"bestie": "backbone.", "maskrcnn": "backbone.bottom_up."}
#: The input convention of each target's base config (``configs/Base-BESTIE.yaml``,
#: ``configs/Base-MaskRCNN-FPN.yaml``): (INPUT.FORMAT, PIXEL_MEAN, PIXEL_STD).
TARGET_INPUT = {
    "bestie": ("RGB", TORCHVISION_MEAN, TORCHVISION_STD),
    "maskrcnn": ("BGR", (103.530, 116.280, 123.675), (1.0, 1.0, 1.0)),
}

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RULES = [
    (re.compile(r"^conv1\.weight$"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"^bn1\.{_BN}$"), lambda m: f"stem.conv1.norm.{m.group(1)}"),
    (re.compile(r"^layer(\d)\.(\d+)\.conv(\d)\.weight$"),
     lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.bn(\d)\.{_BN}$"),
     lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.norm.{m.group(4)}"),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.0\.weight$"),
     lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.downsample\.1\.{_BN}$"),
     lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.norm.{m.group(3)}"),
]
_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


def _check_formats(*formats):
    bad = [f for f in formats if f not in ("RGB", "BGR")]
    if bad:
        raise ConversionError(f"only RGB/BGR inputs can be converted, got {bad[0]!r}")


def adapt_input_conv(
    weight: torch.Tensor,
    src_format: str,
    dst_format: str,
    src_std: Optional[Sequence[float]] = None,
    dst_std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Adapt a first convolution ``(C_out, 3, k, k)`` to another input convention.

    Args:
        src_format, dst_format: channel order the weights were trained with / will see.
        src_std, dst_std: per-channel pixel std (in each side's own channel order), or None for no
            rescaling. The new weight for destination channel ``c`` is the source weight of the
            same colour times ``dst_std[c] / src_std[colour]``.
    """
    _check_formats(src_format, dst_format)
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ConversionError(f"expected a (C, 3, k, k) input convolution, got {tuple(weight.shape)}")
    w = weight.flip(1) if src_format != dst_format else weight.clone()
    if (src_std is None) != (dst_std is None):
        raise ConversionError("give both src_std and dst_std, or neither")
    if src_std is not None:
        s = torch.tensor([float(x) for x in src_std], dtype=torch.float64)
        if src_format != dst_format:
            s = s.flip(0)  # source std in destination channel order
        d = torch.tensor([float(x) for x in dst_std], dtype=torch.float64)
        w = (w.double() * (d / s).view(1, 3, 1, 1)).to(weight.dtype)
    return w


def _depth(state: Mapping[str, torch.Tensor], prefix: str = "") -> Optional[int]:
    blocks = []
    for i in range(1, 5):
        pat = re.compile(re.escape(prefix) + rf"layer{i}\.(\d+)\.")
        idx = {int(m.group(1)) for m in (pat.match(k) for k in state) if m}
        blocks.append(len(idx))
    return _DEPTHS.get(tuple(blocks))


def torchvision_resnet_to_d2(
    state: Mapping[str, torch.Tensor],
    target: str = "bestie",
    *,
    input_format: Optional[str] = None,
    pixel_mean: Optional[Sequence[float]] = None,
    pixel_std: Optional[Sequence[float]] = None,
    keep_bn_counters: Optional[bool] = None,
    source: str = "torchvision-resnet",
    src_prefix: str = "",
    conv: Optional[Conversion] = None,
) -> Conversion:
    """torchvision ResNet-18/50/101/152 state dict -> detectron2 ResNet under ``backbone.``
    (``target="bestie"``) or ``backbone.bottom_up.`` (``target="maskrcnn"``, the FPN's bottom-up).

    Args:
        input_format, pixel_mean, pixel_std: the target config's ``INPUT.FORMAT`` /
            ``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD``; default: the target's base config
            (BESTIE: RGB + torchvision statistics, no change; Mask R-CNN: BGR, std 1, the stem is
            adapted).
        keep_bn_counters: write ``num_batches_tracked`` (BN / SyncBN targets; 0 when the source
            has none) or drop them (FrozenBN, the Mask R-CNN base). Default: True for BESTIE,
            False for Mask R-CNN.
        src_prefix: prefix of the ResNet keys in ``state`` (``"backbone."`` in the authors' R50);
            keys without it are left to the caller.
        conv: add to this :class:`Conversion` instead of a new one.
    """
    if target not in TARGET_PREFIXES:
        raise ConversionError(f"ResNet target must be one of {sorted(TARGET_PREFIXES)}, got {target!r}")
    fmt, mean, std = _target_input_convention(target, input_format, pixel_mean, pixel_std)
    if keep_bn_counters is None:
        keep_bn_counters = target == "bestie"
    conv = conv or Conversion(source=source, target=f"{target} (ResNet{' FPN bottom-up' if target == 'maskrcnn' else ''})")
    _map_resnet_keys(state, conv, source, src_prefix, TARGET_PREFIXES[target], fmt, std, keep_bn_counters)
    depth = _depth(state, src_prefix)
    if depth is None:
        raise ConversionError("not a torchvision ResNet-18/50/101/152 state dict (block counts not recognised)")
    conv.config.update({
        "MODEL.RESNETS.DEPTH": depth,
        "MODEL.RESNETS.STRIDE_IN_1X1": False,
        "INPUT.FORMAT": fmt,
        "MODEL.PIXEL_MEAN": list(mean),
        "MODEL.PIXEL_STD": list(std),
    })
    if depth == 18:
        conv.config["MODEL.RESNETS.RES2_OUT_CHANNELS"] = 64
    if (fmt, tuple(std)) != ("RGB", TORCHVISION_STD):
        conv.notes.append(
            f"stem.conv1 adapted from RGB / torchvision std to {fmt} / std {list(std)}: exact for inputs "
            "normalised as the config says"
        )
    return conv


def _target_input_convention(target, input_format, pixel_mean, pixel_std):
    """``(INPUT.FORMAT, PIXEL_MEAN, PIXEL_STD)`` of the target, defaults from its base config; the
    mean must be torchvision's ImageNet mean (in the target's channel order)."""
    fmt0, mean0, std0 = TARGET_INPUT[target]
    fmt = input_format or fmt0
    mean = tuple(pixel_mean) if pixel_mean is not None else (mean0 if fmt == fmt0 else tuple(mean0)[::-1])
    std = tuple(pixel_std) if pixel_std is not None else (std0 if fmt == fmt0 else tuple(std0)[::-1])
    _check_formats(fmt)
    src_mean_dst_order = TORCHVISION_MEAN if fmt == "RGB" else TORCHVISION_MEAN[::-1]
    if any(abs(float(a) - b) > 1e-3 for a, b in zip(mean, src_mean_dst_order)) or len(mean) != 3:
        raise ConversionError(
            f"PIXEL_MEAN {list(mean)} ({fmt}) is not the ImageNet mean torchvision weights were trained with "
            f"({list(src_mean_dst_order)} in {fmt} order); a different mean cannot be folded into the "
            "weights exactly: use that mean in the config"
        )
    return fmt, mean, std


def _map_resnet_keys(state, conv, source, src_prefix, dst_prefix, fmt, std, keep_bn_counters):
    """Map or drop every key of ``state`` under ``src_prefix`` into ``conv`` (``_RULES``); the stem
    conv adapted to ``fmt`` / ``std``; BN batch counters kept (fresh 0 where missing) or dropped."""
    unknown = []
    counters_seen = set()
    bn_modules = set()
    for key, value in state.items():
        if not key.startswith(src_prefix):
            continue
        name = key[len(src_prefix):]
        if re.match(r"^fc\.(weight|bias)$", name):
            conv.drop(key, "fc: ImageNet classifier (not in the target)")
            continue
        for pat, fn in _RULES:
            m = pat.match(name)
            if not m:
                continue
            dst = dst_prefix + fn(m)
            if dst.endswith(".num_batches_tracked"):
                if keep_bn_counters:
                    conv.map(key, dst, value)
                    counters_seen.add(dst)
                else:
                    conv.drop(key, "num_batches_tracked: FrozenBN has no batch counter")
                break
            if dst.endswith(".norm.running_mean"):
                bn_modules.add(dst[: -len("running_mean")])
            if name == "conv1.weight":
                value = adapt_input_conv(value, "RGB", fmt, TORCHVISION_STD, std)
            conv.map(key, dst, value)
            break
        else:
            unknown.append(key)
    if unknown:
        raise UnknownKeysError(source, unknown)
    if keep_bn_counters:
        for mod in bn_modules:
            if mod + "num_batches_tracked" not in counters_seen:
                conv.add_fresh(mod + "num_batches_tracked", bn_counter(), "BatchNorm batch counter, 0 (the file has none)")


# ------------------------------------------------------------------------------------------------
# The authors' R50 BESTIE (torchvision ResNet + their Panoptic-DeepLab decoder)
# ------------------------------------------------------------------------------------------------
_DEC = {"semantic_decoder": "heads.sem_decoder", "instance_decoder": "heads.ins_decoder"}
_HEAD = {"seg": ("heads.sem_head", "heads.sem_predictor"), "center": ("heads.center_head", "heads.center_predictor"),
         "offset": ("heads.offset_head", "heads.offset_predictor")}
_NORM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_DECODER_RULES = [
    # ASPP: convs.0-3 = conv + BN; convs.4 = image pooling (conv without bias); project = conv + BN
    (re.compile(r"^aspp\.convs\.([0-3])\.0\.weight$"), lambda m: f"aspp.convs.{m.group(1)}.weight"),
    (re.compile(rf"^aspp\.convs\.([0-3])\.1\.{_NORM}$"), lambda m: f"aspp.convs.{m.group(1)}.norm.{m.group(2)}"),
    (re.compile(r"^aspp\.convs\.4\.aspp_pooling\.1\.weight$"), lambda m: "aspp.convs.4.1.weight"),
    (re.compile(r"^aspp\.project\.0\.weight$"), lambda m: "aspp.project.weight"),
    (re.compile(rf"^aspp\.project\.1\.{_NORM}$"), lambda m: f"aspp.project.norm.{m.group(1)}"),
    # projections of res4, res3, res2
    (re.compile(r"^project\.(\d)\.0\.weight$"), lambda m: f"projections.{m.group(1)}.weight"),
    (re.compile(rf"^project\.(\d)\.1\.{_NORM}$"), lambda m: f"projections.{m.group(1)}.norm.{m.group(2)}"),
    # fusion DSConv5: depthwise (conv, BN), pointwise conv, BN
    (re.compile(r"^fuse\.(\d)\.0\.0\.0\.weight$"), lambda m: f"fusions.{m.group(1)}.depthwise.weight"),
    (re.compile(rf"^fuse\.(\d)\.0\.0\.1\.{_NORM}$"), lambda m: f"fusions.{m.group(1)}.depthwise.norm.{m.group(2)}"),
    (re.compile(r"^fuse\.(\d)\.0\.1\.weight$"), lambda m: f"fusions.{m.group(1)}.pointwise.weight"),
    (re.compile(rf"^fuse\.(\d)\.0\.2\.{_NORM}$"), lambda m: f"fusions.{m.group(1)}.pointwise.norm.{m.group(2)}"),
]
_HEAD_RULES = [
    (re.compile(r"^0\.0\.0\.0\.weight$"), 0, lambda m: "depthwise.weight"),
    (re.compile(rf"^0\.0\.0\.1\.{_NORM}$"), 0, lambda m: f"depthwise.norm.{m.group(1)}"),
    (re.compile(r"^0\.0\.1\.weight$"), 0, lambda m: "pointwise.weight"),
    (re.compile(rf"^0\.0\.2\.{_NORM}$"), 0, lambda m: f"pointwise.norm.{m.group(1)}"),
    (re.compile(r"^1\.(weight|bias)$"), 1, lambda m: m.group(1)),
]
_DECODER_KEY = re.compile(r"^decoder\.(semantic_decoder|instance_decoder)\.(.+)$")
_HEAD_KEY = re.compile(r"^decoder\.(?:semantic_head|instance_head)\.classifier\.(seg|center|offset)\.(.+)$")


def is_authors_r50_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for the authors' ResNet BESTIE layout (``backbone.*`` torchvision names + ``decoder.*``)."""
    return any(k.startswith("decoder.semantic_decoder.") for k in state) and "backbone.conv1.weight" in state


def authors_bestie_r50_to_bestie(state: Mapping[str, torch.Tensor], source: str = "authors-bestie") -> Conversion:
    """The authors' ResNet-50/101 BESTIE state dict -> ``configs/VOC/bestie_R50_*.yaml``.

    Architecture difference: detectron2's ASPP image-pooling conv has a bias, the authors' has
    none. The two biases (``heads.{sem,ins}_decoder.aspp.convs.4.1.bias``, 256 each) are written
    as zeros, which makes our model compute exactly the authors' function. Everything else maps
    one to one (443 tensors + BN counters for R50).
    """
    conv = Conversion(source=source, target="bestie (ResNet + Panoptic-DeepLab decoder)")
    torchvision_resnet_to_d2(state, "bestie", source=source, src_prefix="backbone.", conv=conv)
    unknown = []
    pooling_convs = []
    for key, value in state.items():
        if key.startswith("backbone."):
            continue
        m = _DECODER_KEY.match(key)
        if m:
            base, rest = _DEC[m.group(1)], m.group(2)
            for pat, fn in _DECODER_RULES:
                mm = pat.match(rest)
                if mm:
                    dst = f"{base}.{fn(mm)}"
                    conv.map(key, dst, value)
                    if dst.endswith("aspp.convs.4.1.weight"):
                        pooling_convs.append((dst, value))
                    break
            else:
                unknown.append(key)
            continue
        m = _HEAD_KEY.match(key)
        if m:
            head, predictor = _HEAD[m.group(1)]
            for pat, which, fn in _HEAD_RULES:
                mm = pat.match(m.group(2))
                if mm:
                    conv.map(key, f"{(head, predictor)[which]}.{fn(mm)}", value)
                    break
            else:
                unknown.append(key)
            continue
        unknown.append(key)
    if unknown:
        raise UnknownKeysError(source + " (ResNet)", unknown)
    for dst, w in pooling_convs:
        conv.add_fresh(
            dst[: -len("weight")] + "bias", torch.zeros(w.shape[0], dtype=w.dtype),
            "ASPP image-pooling bias, 0 (detectron2's ASPP has one, the authors' none: same function)",
        )
    return conv


# ------------------------------------------------------------------------------------------------
# A trained bestie_d2 BESTIE ResNet -> Mask R-CNN's bottom-up network
# ------------------------------------------------------------------------------------------------
def bestie_resnet_to_maskrcnn(
    state: Mapping[str, torch.Tensor],
    src_format: str = "RGB",
    dst_format: str = "BGR",
    *,
    src_mean: Optional[Sequence[float]] = None,
    dst_mean: Optional[Sequence[float]] = None,
    src_std: Optional[Sequence[float]] = None,
    dst_std: Optional[Sequence[float]] = None,
    keep_bn_counters: bool = True,
    source: str = "bestie-resnet",
) -> Conversion:
    """A bestie_d2 BESTIE ResNet (``backbone.*``) -> ``backbone.bottom_up.*`` of an FPN Mask R-CNN.

    The heads are dropped. The stem is adapted to the Mask R-CNN's input convention (channel
    order; std too when both ``src_std`` and ``dst_std`` are given). Means, when both are given,
    must be the same pixel values (else the adaptation would not be exact).
    """
    _check_formats(src_format, dst_format)
    if src_mean is not None and dst_mean is not None:
        m = list(src_mean) if src_format == dst_format else list(src_mean)[::-1]
        if any(abs(float(a) - float(b)) > 1e-3 for a, b in zip(m, dst_mean)):
            raise ConversionError(
                f"PIXEL_MEAN of the two configs differ ({list(src_mean)} {src_format} vs {list(dst_mean)} "
                f"{dst_format}): use the same mean pixel in both"
            )
    conv = Conversion(source=source, target="maskrcnn (ResNet FPN bottom-up)")
    stem = "backbone.stem.conv1.weight"
    for key, value in state.items():
        if not key.startswith("backbone."):
            conv.drop(key, "BESTIE heads (Mask R-CNN has its own)")
            continue
        dst = "backbone.bottom_up." + key[len("backbone."):]
        if key.endswith(".num_batches_tracked") and not keep_bn_counters:
            conv.drop(key, "num_batches_tracked: FrozenBN has no batch counter")
            continue
        if key == stem and (src_format != dst_format or src_std is not None):
            value = adapt_input_conv(value, src_format, dst_format, src_std, dst_std)
        conv.map(key, dst, value)
    if stem not in state:
        raise ConversionError(
            "no ResNet backbone found in the BESTIE weights (expected 'backbone.stem.conv1.weight'); "
            "only the ResNet variant can initialise Detectron2's Mask R-CNN"
        )
    conv.config.update({"INPUT.FORMAT": dst_format})
    if dst_std is not None:
        conv.config["MODEL.PIXEL_STD"] = list(dst_std)
    conv.config["MODEL.RESNETS.STRIDE_IN_1X1"] = False
    conv.notes.append("FPN, RPN and ROI heads are not in a BESTIE model: they keep the model's initialisation")
    return conv

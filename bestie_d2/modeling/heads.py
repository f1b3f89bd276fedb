"""BESTIE prediction heads (docs/method.md §3).

Two interchangeable head sets, selected by ``MODEL.BESTIE.DECODER`` through
:data:`BESTIE_HEADS_REGISTRY`:

* :class:`PanopticDeepLabDecoder` (ResNet route, §3.1): a Panoptic-DeepLab style dual decoder.
  A semantic branch (ASPP + three decoder stages res4 -> res3 -> res2 + DSConv5 head) predicts
  ``C + 1`` logits; a separate instance branch (its own ASPP and decoder) predicts a **class-wise**
  center heatmap with ``C`` channels and a 2-channel offset map ``(dy, dx)``.
* :class:`LightHeads` (HRNet route, §3.2): three independent conv3x3-ReLU-conv1x1 heads, no norm.

Every head returns its maps at the stride of its input feature (4); the meta-architecture
upsamples them to the input size with ``head.align_corners``.
"""
import logging
from typing import Dict, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ASPP, Conv2d, DepthwiseSeparableConv2d, ShapeSpec, get_norm
from detectron2.utils import comm
from detectron2.utils.registry import Registry

__all__ = [
    "BESTIE_HEADS_REGISTRY",
    "build_bestie_heads",
    "resolve_norm",
    "set_bn_momentum",
    "init_conv_normal",
    "DSConv5",
    "DeepLabDecoder",
    "PanopticDeepLabDecoder",
    "LightHeads",
]

logger = logging.getLogger(__name__)

BESTIE_HEADS_REGISTRY = Registry("BESTIE_HEADS")
BESTIE_HEADS_REGISTRY.__doc__ = """
Registry for BESTIE head sets. A head set is called as ``obj(cfg, input_shape)`` with
``input_shape: Dict[str, ShapeSpec]`` from the backbone, and its ``forward(features)`` returns a
dict with ``sem_seg`` (N, C+1, h, w), ``center`` (N, C, h, w) and ``offset`` (N, 2, h, w).
It must define ``align_corners`` (bool), the mode used to upsample its outputs.
"""

_SYNC_NORMS = ("SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N")
_warned_norms = set()


def resolve_norm(norm, device=None):
    """Return the norm to actually build: SyncBN falls back to "BN" when it cannot work.

    SyncBN needs a multi-process group and CUDA tensors. When the process group is not
    initialised / has one process, or when the model runs on CPU, "BN" is used instead and a log
    line says so (once per norm name).

    Args:
        norm (str or callable): a :func:`detectron2.layers.get_norm` name or callable.
        device (str or torch.device or None): where the model will run; None = CUDA if available.
    Returns:
        str or callable: ``norm`` or ``"BN"``.
    """
    if not isinstance(norm, str) or norm not in _SYNC_NORMS:
        return norm
    if device is None:
        on_cpu = not torch.cuda.is_available()
    else:
        on_cpu = torch.device(device).type == "cpu"
    single = comm.get_world_size() <= 1
    if single or on_cpu:
        if norm not in _warned_norms:
            _warned_norms.add(norm)
            why = "a single process" if single else "CPU"
            logger.info(f"Norm '{norm}' is not usable with {why}; using 'BN' instead.")
        return "BN"
    return norm


def set_bn_momentum(module: nn.Module, momentum: float) -> None:
    """Set ``momentum`` on every BatchNorm (incl. SyncBatchNorm) inside ``module``."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def init_conv_normal(module: nn.Module, std: float = 0.001) -> None:
    """Authors' init: every conv N(0, std) with zero bias; norm layers weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def DSConv5(in_channels: int, out_channels: int, norm="BN") -> nn.Module:
    """Depthwise 5x5 (pad 2, no bias) + norm + ReLU, then pointwise 1x1 (no bias) + norm + ReLU.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """
    return DepthwiseSeparableConv2d(
        in_channels,
        out_channels,
        kernel_size=5,
        padding=2,
        norm1=norm,
        activation1=nn.ReLU(),
        norm2=norm,
        activation2=nn.ReLU(),
    )


class DeepLabDecoder(nn.Module):
    """One Panoptic-DeepLab decoder branch: ASPP on the coarsest feature, then top-down stages.

    Each stage projects a finer feature with 1x1 conv + norm + ReLU, upsamples the running feature
    to its size (bilinear, align_corners=True), concatenates ``[x, projection]`` and fuses with
    DSConv5. ``in_features = ["res2", "res3", "res4", "res5"]`` gives stages res4 -> res3 -> res2.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        project_channels: Sequence[int],
        aspp_channels: int,
        aspp_dilations: Sequence[int],
        aspp_dropout: float,
        decoder_channels: int,
        norm="BN",
    ):
        """
        Args:
            input_shape: backbone output shapes (must contain every name in ``in_features``).
            in_features: feature names from fine to coarse; the last goes through ASPP.
            project_channels: projection widths of the finer features, coarse to fine
                (e.g. res4, res3, res2); length ``len(in_features) - 1``.
            aspp_channels, aspp_dilations, aspp_dropout: ASPP output width, the three atrous
                rates and the dropout after its projection.
            decoder_channels: output width of every fusion stage.
            norm: normalization name for :func:`detectron2.layers.get_norm`.
        """
        super().__init__()
        in_features = list(in_features)
        fine = in_features[:-1][::-1]
        if len(project_channels) != len(fine):
            raise ValueError(
                f"need {len(fine)} projection widths for {fine}, got {list(project_channels)}"
            )
        self.aspp_feature = in_features[-1]
        self.fine_features = fine
        self.aspp = ASPP(
            input_shape[self.aspp_feature].channels,
            aspp_channels,
            list(aspp_dilations),
            norm=norm,
            activation=nn.ReLU(),
            dropout=aspp_dropout,
        )
        self.projections = nn.ModuleList()
        self.fusions = nn.ModuleList()
        x_channels = aspp_channels
        for name, proj in zip(fine, project_channels):
            self.projections.append(
                Conv2d(
                    input_shape[name].channels,
                    proj,
                    kernel_size=1,
                    bias=False,
                    norm=get_norm(norm, proj),
                    activation=F.relu,
                )
            )
            self.fusions.append(DSConv5(x_channels + proj, decoder_channels, norm))
            x_channels = decoder_channels
        self.out_channels = x_channels
        self.out_stride = input_shape[fine[-1] if fine else self.aspp_feature].stride

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """features[name]: (N, C_name, H/s, W/s) -> (N, decoder_channels, H/4, W/4)."""
        x = self.aspp(features[self.aspp_feature])
        for name, proj, fuse in zip(self.fine_features, self.projections, self.fusions):
            y = proj(features[name])
            x = F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True)
            x = fuse(torch.cat([x, y], dim=1))
        return x


@BESTIE_HEADS_REGISTRY.register()
class PanopticDeepLabDecoder(nn.Module):
    """Panoptic-DeepLab dual decoder with a class-wise center head (BESTIE, docs/method.md §3.1).

    Outputs (stride of the finest input feature, 4 for res2):
      ``sem_seg`` (N, C+1, h, w) logits, ``center`` (N, C, h, w) raw heatmaps (no sigmoid),
      ``offset`` (N, 2, h, w) raw ``(dy, dx)``.
    """

    align_corners = True

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        num_classes: int,
        norm="BN",
        bn_momentum: float = 0.01,
        aspp_dilations: Sequence[int] = (3, 6, 9),
        aspp_dropout: float = 0.5,
        sem_aspp_channels: int = 256,
        sem_project_channels: Sequence[int] = (128, 64, 32),
        sem_decoder_channels: int = 256,
        sem_head_channels: int = 256,
        ins_aspp_channels: int = 256,
        ins_project_channels: Sequence[int] = (64, 32, 16),
        ins_decoder_channels: int = 128,
        center_head_channels: int = 128,
        offset_head_channels: int = 32,
        init_std: float = 0.001,
    ):
        """
        NOTE: this interface is experimental.

        Args:
            input_shape: backbone output shapes.
            in_features: backbone features, fine to coarse (the last goes through ASPP).
            num_classes: C, the number of thing classes (semantic output has C + 1 channels).
            norm: normalization of all decoder/head convs ("BN", "SyncBN", "GN"...).
            bn_momentum: momentum of every BN in the heads.
            aspp_dilations, aspp_dropout: shared by both ASPPs.
            sem_*: semantic branch widths (ASPP, projections coarse->fine, decoder, head).
            ins_*: instance branch widths (ASPP, projections coarse->fine, decoder).
            center_head_channels, offset_head_channels: DSConv5 widths of the two heads.
            init_std: std of the normal init of every conv.
        """
        super().__init__()
        self.num_classes = num_classes
        self.in_features = list(in_features)
        common = dict(
            in_features=self.in_features,
            aspp_dilations=aspp_dilations,
            aspp_dropout=aspp_dropout,
            norm=norm,
        )
        self.sem_decoder = DeepLabDecoder(
            input_shape,
            project_channels=sem_project_channels,
            aspp_channels=sem_aspp_channels,
            decoder_channels=sem_decoder_channels,
            **common,
        )
        self.sem_head = DSConv5(sem_decoder_channels, sem_head_channels, norm)
        self.sem_predictor = Conv2d(sem_head_channels, num_classes + 1, kernel_size=1)
        self.ins_decoder = DeepLabDecoder(
            input_shape,
            project_channels=ins_project_channels,
            aspp_channels=ins_aspp_channels,
            decoder_channels=ins_decoder_channels,
            **common,
        )
        self.center_head = DSConv5(ins_decoder_channels, center_head_channels, norm)
        self.center_predictor = Conv2d(center_head_channels, num_classes, kernel_size=1)
        self.offset_head = DSConv5(ins_decoder_channels, offset_head_channels, norm)
        self.offset_predictor = Conv2d(offset_head_channels, 2, kernel_size=1)
        self.output_stride = self.sem_decoder.out_stride

        init_conv_normal(self, init_std)
        set_bn_momentum(self, bn_momentum)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        m = cfg.MODEL.BESTIE
        return {
            "input_shape": input_shape,
            "in_features": list(m.IN_FEATURES),
            "num_classes": cfg.BESTIE.NUM_CLASSES,
            "norm": resolve_norm(m.NORM, cfg.MODEL.DEVICE),
            "bn_momentum": m.BN_MOMENTUM,
            "aspp_dilations": list(m.ASPP_DILATIONS),
            "aspp_dropout": m.ASPP_DROPOUT,
            "sem_aspp_channels": m.ASPP_CHANNELS,
            "sem_project_channels": list(m.SEM_PROJECT_CHANNELS),
            "sem_decoder_channels": m.SEM_DECODER_CHANNELS,
            "sem_head_channels": m.SEM_HEAD_CHANNELS,
            "ins_aspp_channels": m.INS_ASPP_CHANNELS,
            "ins_project_channels": list(m.INS_PROJECT_CHANNELS),
            "ins_decoder_channels": m.INS_DECODER_CHANNELS,
            "center_head_channels": m.CENTER_HEAD_CHANNELS,
            "offset_head_channels": m.OFFSET_HEAD_CHANNELS,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs, ``features[name]`` (N, C_name, H/s, W/s).
        Returns:
            dict: ``sem_seg`` (N, C+1, H/4, W/4), ``center`` (N, C, H/4, W/4),
            ``offset`` (N, 2, H/4, W/4).
        """
        sem = self.sem_predictor(self.sem_head(self.sem_decoder(features)))
        ins = self.ins_decoder(features)
        center = self.center_predictor(self.center_head(ins))
        offset = self.offset_predictor(self.offset_head(ins))
        return {"sem_seg": sem, "center": center, "offset": offset}


def _light_head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, kernel_size=1, bias=True),
    )


@BESTIE_HEADS_REGISTRY.register()
class LightHeads(nn.Module):
    """Three independent conv3x3(bias)-ReLU-conv1x1 heads on one feature (HRNet route, §3.2).

    No norm, no ASPP, no decoder. Outputs are at the input feature's stride and are upsampled by
    the meta-architecture with ``align_corners=False``.
    """

    align_corners = False

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        hidden_channels: int = 256,
        init_std: float = 0.001,
    ):
        """
        NOTE: this interface is experimental.

        Args:
            input_shape: backbone output shapes.
            in_feature: the feature the heads read (HRNet: "hr", stride 4).
            num_classes: C (semantic head has C + 1 outputs, center head C).
            hidden_channels: width of the 3x3 conv of each head.
            init_std: std of the normal init of every conv.
        """
        super().__init__()
        self.num_classes = num_classes
        self.in_feature = in_feature
        c0 = input_shape[in_feature].channels
        self.sem_head = _light_head(c0, hidden_channels, num_classes + 1)
        self.center_head = _light_head(c0, hidden_channels, num_classes)
        self.offset_head = _light_head(c0, hidden_channels, 2)
        self.output_stride = input_shape[in_feature].stride
        init_conv_normal(self, init_std)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return {
            "input_shape": input_shape,
            "in_feature": cfg.MODEL.BESTIE.IN_FEATURES[-1],
            "num_classes": cfg.BESTIE.NUM_CLASSES,
            "hidden_channels": cfg.MODEL.BESTIE.LIGHT_HEAD_CHANNELS,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """features[in_feature]: (N, C0, h, w) -> dict of (N, C+1 | C | 2, h, w)."""
        x = features[self.in_feature]
        return {
            "sem_seg": self.sem_head(x),
            "center": self.center_head(x),
            "offset": self.offset_head(x),
        }


def build_bestie_heads(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build the head set named by ``cfg.MODEL.BESTIE.DECODER``."""
    return BESTIE_HEADS_REGISTRY.get(cfg.MODEL.BESTIE.DECODER)(cfg, input_shape)

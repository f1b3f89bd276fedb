"""HRNet-W32 / W48 backbone (pose-estimation variant), docs/method.md §3.2.

Layout: stem of two stride-2 3x3 convs (64 ch) -> layer1 (4 Bottlenecks, 256 ch) -> stages 2, 3, 4
with 2, 3, 4 parallel branches of widths (W, 2W, 4W, 8W) built from BASIC blocks, SUM fusion
(strided 3x3 convs high -> low resolution, 1x1 conv + BN + nearest upsampling low -> high).
The last module of stage 4 fuses every branch into branch 0 only, so the single output ``"hr"``
has W channels at stride 4.

Module names follow the usual HRNet layout (``conv1, bn1, conv2, bn2, layer1, transition1..3,
stage2..4``) so ImageNet HRNet checkpoints map onto it by name (under the ``backbone.`` prefix).
"""
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

__all__ = ["HRNet", "build_hrnet_backbone"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; (N, in, H, W) -> (N, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, bn_momentum=0.1):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity, inplace=True)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 residual block; (N, in, H, W) -> (N, 4*planes, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, bn_momentum=0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=bn_momentum)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity, inplace=True)


def _make_blocks(block, inplanes, planes, num_blocks, stride=1, bn_momentum=0.1) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion, momentum=bn_momentum),
        )
    layers = [block(inplanes, planes, stride, downsample, bn_momentum)]
    for _ in range(1, num_blocks):
        layers.append(block(planes * block.expansion, planes, bn_momentum=bn_momentum))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BASIC blocks followed by all-to-all SUM fusion.

    Input/output: a list of ``num_branches`` tensors, branch i at stride 4 * 2^i with
    ``channels[i]`` channels. With ``multi_scale_output=False`` only branch 0 is returned.
    """

    def __init__(
        self, channels: Sequence[int], num_blocks: int, multi_scale_output=True, bn_momentum=0.1
    ):
        super().__init__()
        self.num_branches = len(channels)
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(
            _make_blocks(BasicBlock, c, c, num_blocks, bn_momentum=bn_momentum) for c in channels
        )
        n_out = self.num_branches if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList()
        if self.num_branches == 1:
            return
        for i in range(n_out):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:  # lower resolution -> 1x1 conv + BN, nearest upsampling in forward
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False),
                            nn.BatchNorm2d(channels[i], momentum=bn_momentum),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) strided 3x3 convs
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out_ch = channels[i] if last else channels[j]
                        layers = [
                            _conv3x3(channels[j], out_ch, stride=2),
                            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
                        ]
                        if not last:
                            layers.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*layers))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            # summed in branch order j = 0, 1, ... as the reference HRNet (and timm's) does, so a
            # converted checkpoint gives the same float32 result, not just the same function
            y = None
            for j in range(self.num_branches):
                z = xs[j] if j == i else row[j](xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="nearest")
                y = z if y is None else y + z
            out.append(F.relu(y))
        return out


def _make_transition(prev: Sequence[int], cur: Sequence[int], bn_momentum=0.1) -> nn.ModuleList:
    """Branch adapters between stages; new branches come from the last previous branch."""
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(prev):
            if prev[i] != c:
                layers.append(
                    nn.Sequential(
                        _conv3x3(prev[i], c),
                        nn.BatchNorm2d(c, momentum=bn_momentum),
                        nn.ReLU(inplace=True),
                    )
                )
            else:
                layers.append(None)
        else:
            steps = []
            for k in range(i + 1 - len(prev)):
                in_ch = prev[-1]
                out_ch = c if k == i - len(prev) else in_ch
                steps.append(
                    nn.Sequential(
                        _conv3x3(in_ch, out_ch, stride=2),
                        nn.BatchNorm2d(out_ch, momentum=bn_momentum),
                        nn.ReLU(inplace=True),
                    )
                )
            layers.append(nn.Sequential(*steps))
    return layers


class HRNet(Backbone):
    """Pose-HRNet backbone; ``forward(x)`` returns ``{"hr": (N, W, H/4, W/4)}``."""

    #: BESTIE does not override the BN momentum of this backbone (it keeps MODEL.HRNET.BN_MOMENTUM).
    owns_bn_momentum = True

    def __init__(
        self,
        *,
        width: int = 48,
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: int = 4,
        bn_momentum: float = 0.1,
        in_channels: int = 3,
        out_features: Optional[Sequence[str]] = ("hr",),
        init_std: float = 0.001,
    ):
        """
        Args:
            width: W; branch widths are (W, 2W, 4W, 8W). 48 or 32 for the published models;
                tiny values (e.g. 8) for tests.
            num_modules: modules in stages 2, 3, 4.
            num_blocks: BASIC blocks per branch in every module.
            bn_momentum: momentum of every BN.
            in_channels: input image channels.
            out_features: only "hr" is available.
            init_std: std of the normal init of every conv (BN: weight 1, bias 0).
        """
        super().__init__()
        if len(num_modules) != 3:
            raise ValueError(f"num_modules needs 3 entries (stages 2-4), got {list(num_modules)}")
        out_features = list(out_features or ["hr"])
        if out_features != ["hr"]:
            raise ValueError(f"HRNet only provides the 'hr' feature, asked for {out_features}")
        self._out_features = out_features
        bm = bn_momentum
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=bm)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=bm)
        self.layer1 = _make_blocks(Bottleneck, 64, 64, 4, bn_momentum=bm)

        widths = [width * 2**i for i in range(4)]
        prev = [64 * Bottleneck.expansion]
        for s, n_mod in zip((2, 3, 4), num_modules):
            cur = widths[:s]
            setattr(self, f"transition{s - 1}", _make_transition(prev, cur, bm))
            mods = []
            for m in range(n_mod):
                multi = not (s == 4 and m == n_mod - 1)
                mods.append(HighResolutionModule(cur, num_blocks, multi, bm))
            setattr(self, f"stage{s}", nn.Sequential(*mods))
            prev = cur

        self._out_feature_channels = {"hr": widths[0]}
        self._out_feature_strides = {"hr": 4}

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def size_divisibility(self) -> int:
        return 32

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    @staticmethod
    def _run_stage(stage: nn.Sequential, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        for module in stage:
            xs = module(xs)
        return xs

    def forward(self, x: torch.Tensor):
        """x: (N, 3, H, W) normalised image -> {"hr": (N, W, ceil(H/4), ceil(W/4))}."""
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        ys = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f"transition{s - 1}")
            xs = []
            for i, t in enumerate(transition):
                src = ys[i] if i < len(ys) else ys[-1]
                xs.append(src if t is None else t(src))
            ys = self._run_stage(getattr(self, f"stage{s}"), xs)
        return {"hr": ys[0]}


@BACKBONE_REGISTRY.register()
def build_hrnet_backbone(cfg, input_shape: ShapeSpec):
    """HRNet from ``cfg.MODEL.HRNET`` (WIDTH, NUM_MODULES, NUM_BLOCKS, BN_MOMENTUM)."""
    h = cfg.MODEL.HRNET
    return HRNet(
        width=h.WIDTH,
        num_modules=list(h.NUM_MODULES),
        num_blocks=h.NUM_BLOCKS,
        bn_momentum=h.BN_MOMENTUM,
        in_channels=input_shape.channels,
        out_features=list(h.OUT_FEATURES),
    )

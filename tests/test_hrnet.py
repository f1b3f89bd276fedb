"""HRNet backbone: output stride 4, channels W, registry build, layout of the last stage."""
import bestie_d2  # noqa: F401  (prepares detectron2)
import pytest
import torch
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from bestie_d2.modeling.backbone.hrnet import HRNet

from cfg_factory import new_bestie_cfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_hrnet_cfg(width=8):
    cfg = new_bestie_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_hrnet_backbone"
    cfg.MODEL.HRNET.WIDTH = width
    cfg.MODEL.HRNET.NUM_BLOCKS = 1
    cfg.MODEL.HRNET.NUM_MODULES = [1, 1, 2]
    return cfg


def test_registry_builds_hrnet_from_config():
    # MODEL.BACKBONE.NAME resolves through detectron2's registry to this package's builder,
    # which reads the MODEL.HRNET keys (a builder ignoring them would give width 48 here)
    from bestie_d2.modeling.backbone.hrnet import build_hrnet_backbone

    assert BACKBONE_REGISTRY.get("build_hrnet_backbone") is build_hrnet_backbone
    net = build_backbone(tiny_hrnet_cfg(12))
    assert isinstance(net, HRNet) and net.output_shape()["hr"].channels == 12


@pytest.mark.parametrize("size", [(64, 96), (70, 90)])
def test_output_stride_and_channels(size):
    torch.manual_seed(0)
    net = build_backbone(tiny_hrnet_cfg(8))
    shape = net.output_shape()
    assert list(shape) == ["hr"]
    assert shape["hr"].channels == 8 and shape["hr"].stride == 4
    assert net.size_divisibility == 32
    x = torch.randn(2, 3, *size)
    out = net(x)
    h, w = size
    assert out["hr"].shape == (2, 8, -(-h // 4), -(-w // 4))
    out["hr"].mean().backward()
    assert net.conv1.weight.grad is not None
    # the lowest-resolution branch reaches the output through the final fusion
    assert net.stage4[-1].branches[3][0].conv1.weight.grad.abs().sum() > 0


def test_layout_and_bn_momentum():
    net = HRNet(width=8, num_modules=(1, 2, 2), num_blocks=1, bn_momentum=0.1)
    # widths W, 2W, 4W, 8W; stage 2 has 2 branches, stage 4 has 4
    assert len(net.stage2[0].branches) == 2 and len(net.stage4[0].branches) == 4
    assert [b[0].conv1.out_channels for b in net.stage4[0].branches] == [8, 16, 32, 64]
    # all but the last stage-4 module fuse into every branch; the last into branch 0 only
    assert len(net.stage4[0].fuse_layers) == 4
    assert len(net.stage4[-1].fuse_layers) == 1
    assert len(net.layer1) == 4 and net.layer1[0].conv3.out_channels == 256
    assert net.conv1.stride == (2, 2) and net.conv2.stride == (2, 2)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.1 for m in bns)
    names = dict(net.named_parameters())
    for key in ("conv1.weight", "bn2.weight", "layer1.0.downsample.0.weight",
                "transition1.0.0.weight", "transition1.1.0.0.weight",
                "transition3.3.0.0.weight", "stage4.1.fuse_layers.0.3.0.weight"):
        assert key in names, key


def test_w48_widths():
    net = HRNet(width=48, num_modules=(1, 1, 1), num_blocks=1)
    assert net.output_shape()["hr"].channels == 48
    assert [b[0].conv1.out_channels for b in net.stage4[0].branches] == [48, 96, 192, 384]

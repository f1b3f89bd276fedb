"""VGG-16 "D1": the output-stride-8 VGG-16 used by the PAM classifier (docs/method.md §8.1).

Layout (``features.<i>`` indices are torchvision's ``vgg16().features`` indices, so an ImageNet
``vgg16-397923af.pth`` loads by name; see :class:`bestie_d2.modeling.pam.PAMClassifier` for loading
it through ``DetectionCheckpointer``):

* blocks 1-3: standard 3x3 convs + ReLU, each block followed by a 2x2 stride-2 max-pool;
* block 4: 3x3 convs + ReLU, followed by a **3x3 stride-1 pad-1** max-pool (no downsampling);
* block 5: three 3x3 convs with **dilation 2, padding 2** + ReLU, no pool;
* no BatchNorm (``MODEL.VGG.NORM: ""``); output stride 8.

``MODEL.VGG.WIDTH_MULT`` scales every width (tiny CPU models for tests and the toy set).
``MODEL.VGG.NORM: "BN"`` inserts a BatchNorm after every conv (torchvision ``vgg16_bn`` layout and
names): not the paper's model, but a randomly initialised plain VGG trains far too slowly for the
CPU toy demo, so the toy config uses it.
"""
import torch.nn as nn
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

__all__ = ["VGG16D1", "build_vgg16_d1_backbone", "VGG16_BLOCKS"]

# (number of convs, width) per block of VGG-16.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class VGG16D1(Backbone):
    """VGG-16 with a stride-1 pool after block 4 and dilated block 5 (output stride 8).

    Output features: ``conv1`` .. ``conv5`` (after the block's last ReLU, before its pool), with
    strides 1, 2, 4, 8, 8. ``conv5`` is the classifier input.
    """

    def __init__(self, width_mult: float = 1.0, out_features=("conv5",), in_channels: int = 3,
                 norm: str = ""):
        """
        Args:
            width_mult: multiplier of every conv width (1.0 = VGG-16).
            out_features: names among ``conv1`` .. ``conv5`` returned by ``forward``.
            in_channels: input channels (3 for RGB).
            norm: "" (VGG-16, the paper) or "BN" (BatchNorm after every conv, ``vgg16_bn`` layout).
        """
        super().__init__()
        if norm not in ("", "BN"):
            raise ValueError(f"MODEL.VGG.NORM must be '' or 'BN', got {norm!r}")
        layers = []
        self._stage_index = {}  # name -> index in self.features of the block's last ReLU
        self._out_feature_channels = {}
        self._out_feature_strides = {}
        stride = 1
        ch_in = in_channels
        for b, (n_convs, width) in enumerate(VGG16_BLOCKS):
            name = f"conv{b + 1}"
            ch = max(1, int(round(width * width_mult)))
            dilation = 2 if b == 4 else 1
            for _ in range(n_convs):
                layers.append(
                    nn.Conv2d(ch_in, ch, 3, stride=1, padding=dilation, dilation=dilation)
                )
                if norm == "BN":
                    layers.append(nn.BatchNorm2d(ch))
                layers.append(nn.ReLU(inplace=True))
                ch_in = ch
            self._stage_index[name] = len(layers) - 1
            self._out_feature_channels[name] = ch
            self._out_feature_strides[name] = stride
            if b < 3:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                stride *= 2
            elif b == 3:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))

        out_features = list(out_features)
        if not out_features:
            raise ValueError("VGG16D1: out_features is empty")
        for f in out_features:
            if f not in self._stage_index:
                raise ValueError(f"VGG16D1: unknown out feature {f!r}; choose from conv1..conv5")
        self._out_features = out_features
        self._last_index = max(self._stage_index[f] for f in out_features)
        self._index_to_name = {self._stage_index[f]: f for f in out_features}
        # Layers after the last requested output are not built (e.g. a conv4-only backbone).
        self.features = nn.Sequential(*layers[: self._last_index + 1])
        self._init_weights()

    def _init_weights(self):
        # He (fan-out) init as torchvision's VGG; replaced by ImageNet weights when loaded.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def size_divisibility(self) -> int:
        return 0

    def forward(self, x):
        """
        Args:
            x: (N, 3, H, W) normalised images.
        Returns:
            dict name -> (N, C, H/s, W/s) feature.
        """
        outputs = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._index_to_name:
                outputs[self._index_to_name[i]] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vgg16_d1_backbone(cfg, input_shape: ShapeSpec):
    """VGG-16 D1 from ``MODEL.VGG`` (``WIDTH_MULT``, ``OUT_FEATURES``, ``NORM``)."""
    in_channels = input_shape.channels if input_shape is not None else 3
    return VGG16D1(
        width_mult=cfg.MODEL.VGG.WIDTH_MULT,
        out_features=tuple(cfg.MODEL.VGG.OUT_FEATURES),
        in_channels=in_channels,
        norm=cfg.MODEL.VGG.NORM,
    )


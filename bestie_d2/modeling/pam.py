"""Peak Attention Module (PAM) and the PAM classifier (docs/method.md §8.1, supplement §3).

* :class:`PeakAttention`: parameter-free. ``x <- ReLU(x)``; per sample and channel, entries below
  ``alpha * max`` are set to zero, the others pass unchanged (gradients flow through them).
* :class:`PAMClassifier` (``META_ARCH_REGISTRY``): backbone feature ``MODEL.PAM.IN_FEATURE``
  (VGG-16 D1 by default, or any Detectron2 backbone) -> three 3x3 "extra" convs, each followed by
  PAM (layers listed in ``MODEL.PAM.LAYERS``) or ReLU -> 1x1 conv to C channels = the CAM ->
  global average pooling = logits -> ``multilabel_soft_margin_loss``.
* :func:`build_pam_optimizer`: SGD (Nesterov) with the four learning-rate groups of the authors.

Loading ImageNet VGG-16 weights: convert a torchvision ``vgg16-*.pth`` file (a user-given path;
nothing downloads) with ``python -m bestie_d2.tools.convert_weights --source torchvision-vgg16``
and set ``MODEL.WEIGHTS`` to the result. Given the torchvision file directly, the classifier
renames its ``features.*`` keys to ``backbone.features.*`` while loading (and drops the
fully-connected ``classifier.*``) with the same name map, so ``DetectionCheckpointer(model).load``
works on detectron2 v0.6 and main alike.
"""
import logging
import math
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.structures import ImageList

from ..checkpoint.vgg import rename_torchvision_vgg
from .backbone.vgg import VGG16D1

__all__ = ["PeakAttention", "PAMClassifier", "build_pam_optimizer", "pam_param_groups"]

logger = logging.getLogger(__name__)


class PeakAttention(nn.Module):
    """Peak Attention Module: keep, per sample and channel, only activations >= ``alpha * max``.

    ``y = ReLU(x) * [ReLU(x) >= alpha * max_{ij} ReLU(x)]``. The mask is not differentiated, so
    gradients flow unchanged through the kept entries and are zero elsewhere. ``alpha = 0`` is a
    plain ReLU.
    """

    def __init__(self, alpha: float = 0.7):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"PAM alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.alpha == 0.0:
            return x
        peak = x.detach().flatten(2).amax(dim=2)[:, :, None, None]
        keep = x.detach() >= self.alpha * peak
        return x * keep.to(x.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def _init_he_fan_out(conv: nn.Conv2d) -> None:
    """N(0, sqrt(2 / (k*k*out_channels))), bias 0 (3x3x512 -> sqrt(2/4608); 1x1x20 -> sqrt(2/20))."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (k * conv.out_channels)))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


@META_ARCH_REGISTRY.register()
class PAMClassifier(nn.Module):
    """Multi-label image classifier whose last layers carry the Peak Attention Module.

    Training input: ``batched_inputs`` = list of dicts with ``image`` (3, H, W) (pixel values in
    ``INPUT.FORMAT``) and ``image_label`` (C,) multi-hot float. Returns ``{"loss_cls": loss}``.
    Inference returns, per image, ``{"logits": (C,), "cam": (C, h, w)}`` where ``cam`` is the raw
    (pre-ReLU) class activation map at the backbone feature resolution and ``logits`` its mean.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_feature: str,
        num_classes: int,
        extra_channels: int = 512,
        pam_layers: Sequence[int] = (2,),
        alpha: float = 0.7,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        NOTE: this interface is experimental.

        Args:
            backbone: a Detectron2 backbone (e.g. :class:`VGG16D1`).
            in_feature: name of the backbone output feeding the head.
            num_classes: C, the number of thing classes (no background).
            extra_channels: width of the three extra 3x3 convs.
            pam_layers: which extra convs (0, 1, 2) are followed by PAM; the others by ReLU.
            alpha: PAM threshold.
            pixel_mean, pixel_std: input normalisation (per channel, in ``INPUT.FORMAT`` order).
        """
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.num_classes = int(num_classes)
        self.pam_layers = sorted(set(int(i) for i in pam_layers))
        if any(i not in (0, 1, 2) for i in self.pam_layers):
            raise ValueError(f"MODEL.PAM.LAYERS must be a subset of [0, 1, 2], got {pam_layers}")
        shape = backbone.output_shape()[in_feature]
        self.feature_stride = shape.stride or 1

        ch_in = shape.channels
        self.extra_convs = nn.ModuleList()
        self.extra_acts = nn.ModuleList()
        for i in range(3):
            conv = nn.Conv2d(ch_in, extra_channels, 3, padding=1)
            _init_he_fan_out(conv)
            self.extra_convs.append(conv)
            self.extra_acts.append(PeakAttention(alpha) if i in self.pam_layers else nn.ReLU())
            ch_in = extra_channels
        self.cam_conv = nn.Conv2d(ch_in, self.num_classes, 1)
        _init_he_fan_out(self.cam_conv)

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self._register_load_state_dict_pre_hook(self._torchvision_vgg_keys)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "in_feature": cfg.MODEL.PAM.IN_FEATURE,
            "num_classes": cfg.MODEL.PAM.NUM_CLASSES,
            "extra_channels": cfg.MODEL.PAM.EXTRA_CHANNELS,
            "pam_layers": list(cfg.MODEL.PAM.LAYERS),
            "alpha": cfg.MODEL.PAM.ALPHA,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------------------
    def _torchvision_vgg_keys(self, state_dict, prefix, *args):
        """Rename a torchvision VGG state dict (``features.N.*``) to ``backbone.features.N.*``.

        The name map is :func:`bestie_d2.checkpoint.vgg.rename_torchvision_vgg`, the one
        ``convert_weights --source torchvision-vgg16`` writes to a file; converting once with the
        tool gives the same model and prints what was mapped and dropped.
        """
        if not isinstance(self.backbone, VGG16D1):
            return
        own = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        if any(k.startswith("backbone.") for k in own):
            return
        renamed, dropped, _ = rename_torchvision_vgg(own)
        if not renamed:
            return
        for src, dst in renamed:
            state_dict[prefix + dst] = state_dict.pop(prefix + src)
        for src, _ in dropped:
            state_dict.pop(prefix + src)
        logger.info(
            "PAMClassifier: loaded a torchvision VGG state dict (%d backbone tensors; %d "
            "fully-connected tensors dropped). `python -m bestie_d2.tools.convert_weights --source "
            "torchvision-vgg16` writes the same weights to a file.", len(renamed), len(dropped)
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixel values -> normalised float images on the model's device."""
        images = images.to(self.device, non_blocking=True).float()
        return (images - self.pixel_mean) / self.pixel_std

    def cams(self, images: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps of a batch.

        Args:
            images: (N, 3, H, W) tensor of un-normalised pixel values (``INPUT.FORMAT``), any
                dtype; normalised here.
        Returns:
            (N, C, h, w) float CAM (before ReLU) at the backbone feature resolution.
        """
        return self._forward_cam(self.normalize(images))

    def _forward_cam(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)[self.in_feature]
        for conv, act in zip(self.extra_convs, self.extra_acts):
            x = act(conv(x))
        return self.cam_conv(x)

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: list of dicts from :class:`bestie_d2.data.pam_mapper.PAMDatasetMapper`
                (``image``; ``image_label`` in training).
        Returns:
            training: ``{"loss_cls": scalar}``.
            inference: list of ``{"logits": (C,), "cam": (C, h, w)}``, one per image.
        """
        images = [self.normalize(x["image"][None])[0] for x in batched_inputs]
        div = getattr(self.backbone, "size_divisibility", 0) or 0
        images = ImageList.from_tensors(images, div, 0.0)
        cam = self._forward_cam(images.tensor)

        if self.training:
            labels = torch.stack(
                [torch.as_tensor(x["image_label"], dtype=torch.float32) for x in batched_inputs]
            ).to(self.device)
            logits = cam.mean(dim=(2, 3))
            return {"loss_cls": F.multilabel_soft_margin_loss(logits, labels)}

        results = []
        s = self.feature_stride
        for i, (h, w) in enumerate(images.image_sizes):
            c = cam[i, :, : max(1, math.ceil(h / s)), : max(1, math.ceil(w / s))]
            results.append({"logits": c.mean(dim=(1, 2)), "cam": c})
        return results


def pam_param_groups(model: nn.Module):
    """Split trainable parameters into (pretrained weights, pretrained biases, new weights, new biases).

    "Pretrained" = everything under ``model.backbone``; "new" = the extra convs and the CAM conv.
    """
    model = getattr(model, "module", model)  # DDP
    groups = ([], [], [], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = not name.startswith("backbone.")
        bias = name.endswith("bias")
        groups[2 * int(new) + int(bias)].append(p)
    return groups


def build_pam_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with the PAM learning-rate groups (docs/method.md §8.2); Adam/AdamW on request.

    lr = ``SOLVER.BASE_LR`` for pretrained (backbone) weights, x``SOLVER.BIAS_LR_FACTOR`` for their
    biases; ``MODEL.PAM.NEW_LAYER_LR_MULT`` x BASE_LR for new weights and x BIAS_LR_FACTOR of that
    for new biases. Momentum ``SOLVER.MOMENTUM``, Nesterov ``SOLVER.NESTEROV``, weight decay
    ``SOLVER.WEIGHT_DECAY`` (biases: ``SOLVER.WEIGHT_DECAY_BIAS`` when set). Gradient clipping
    follows ``SOLVER.CLIP_GRADIENTS``. ``SOLVER.OPTIMIZER`` "ADAM"/"ADAMW" builds Adam(W) with the
    same four groups (the toy config's choice for a randomly initialised model).
    """
    base_lr = cfg.SOLVER.BASE_LR
    bias_f = cfg.SOLVER.BIAS_LR_FACTOR
    new_f = cfg.MODEL.PAM.NEW_LAYER_LR_MULT
    wd = cfg.SOLVER.WEIGHT_DECAY
    wd_bias = cfg.SOLVER.WEIGHT_DECAY_BIAS if cfg.SOLVER.WEIGHT_DECAY_BIAS is not None else wd
    pw, pb, nw, nb = pam_param_groups(model)
    spec = [
        (pw, base_lr, wd, "pretrained_weight"),
        (pb, base_lr * bias_f, wd_bias, "pretrained_bias"),
        (nw, base_lr * new_f, wd, "new_weight"),
        (nb, base_lr * new_f * bias_f, wd_bias, "new_bias"),
    ]
    param_groups = [
        {"params": ps, "lr": lr, "weight_decay": d, "name": n} for ps, lr, d, n in spec if ps
    ]
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        opt_cls = maybe_add_gradient_clipping(cfg, torch.optim.SGD)
        return opt_cls(
            param_groups,
            lr=base_lr,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=wd,
        )
    if name in ("ADAM", "ADAMW"):
        # Not the authors' recipe: used by the tiny randomly initialised toy model, which SGD
        # trains too slowly for a CPU demo. Same four groups and multipliers.
        base = torch.optim.Adam if name == "ADAM" else torch.optim.AdamW
        return maybe_add_gradient_clipping(cfg, base)(param_groups, lr=base_lr, weight_decay=wd)
    raise ValueError(f"PAM classifier: SOLVER.OPTIMIZER must be SGD, ADAM or ADAMW, got {name!r}")

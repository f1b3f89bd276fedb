"""Initialise a Detectron2 Mask R-CNN (FPN) backbone from a trained BESTIE's ResNet.

The paper's Mask R-CNN stage starts from an ImageNet-pretrained backbone. Where no pretrained
weights exist (the embedded toy set, or any offline setting), the backbone of the BESTIE model
that produced the pseudo labels is the natural stand-in: it was trained on the same images with the
same weak labels, so Mask R-CNN gets no extra supervision, only a warm start.

BESTIE's ResNet (``backbone.<stem|res2..res5>.*``) becomes the FPN's bottom-up network
(``backbone.bottom_up.*``); every other Mask R-CNN weight (FPN, RPN, ROI heads) keeps its random
init. If the two models read images in a different channel order (``INPUT.FORMAT`` RGB vs BGR),
the input channels of the stem's first convolution are reversed so the weights see the same
colours.

The CLI route is ``python -m bestie_d2.tools.convert_weights --source bestie-resnet --target maskrcnn``
(:mod:`bestie_d2.checkpoint`, which also converts torchvision / the authors' weights).
"""
import io
import logging
from typing import Dict

import torch

from bestie_d2.checkpoint.resnet import bestie_resnet_to_maskrcnn
from bestie_d2.utils.io import atomic_write

__all__ = ["bestie_backbone_for_maskrcnn", "write_maskrcnn_init"]

logger = logging.getLogger(__name__)


def bestie_backbone_for_maskrcnn(
    bestie_state: Dict[str, torch.Tensor], src_format: str = "RGB", dst_format: str = "BGR"
) -> Dict[str, torch.Tensor]:
    """BESTIE state dict -> ``{"backbone.bottom_up.<name>": tensor}`` for a Mask R-CNN FPN model.

    Args:
        bestie_state: a BESTIE ``model.state_dict()`` (keys ``backbone.*``, ``sem_seg_head.*``, ...).
        src_format, dst_format: ``INPUT.FORMAT`` of the BESTIE and the Mask R-CNN config.
    """
    if {src_format, dst_format} - {"RGB", "BGR"}:
        raise ValueError(f"only RGB/BGR inputs can be converted, got {src_format} -> {dst_format}")
    return dict(bestie_resnet_to_maskrcnn(bestie_state, src_format, dst_format).weights)


def write_maskrcnn_init(bestie_weights: str, output: str, src_format: str = "RGB", dst_format: str = "BGR") -> str:
    """Read a BESTIE checkpoint (``.pth``), write Mask R-CNN initial weights to ``output`` (atomic).

    Load the result with ``MODEL.WEIGHTS output``; Detectron2's checkpointer reports the (expected)
    missing FPN / RPN / ROI-head keys.
    """
    ckpt = torch.load(bestie_weights, map_location="cpu", weights_only=True)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    weights = bestie_backbone_for_maskrcnn(state, src_format, dst_format)
    buf = io.BytesIO()
    torch.save({"model": weights, "__author__": "bestie_d2 (BESTIE backbone)"}, buf)
    atomic_write(output, buf.getvalue())
    logger.info(f"Mask R-CNN init: {len(weights)} backbone tensors from {bestie_weights} -> {output}")
    return output

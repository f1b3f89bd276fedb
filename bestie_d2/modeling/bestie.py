"""BESTIE meta-architecture (Kim et al., CVPR 2022): weakly-supervised instance segmentation by
semantic knowledge transfer and self-refinement. docs/method.md §3-§6.

Training: backbone -> heads (semantic C+1 logits, class-wise center C, offset 2) -> outputs
upsampled to the crop -> hard-pixel CE + IAG center/offset losses on the pseudo targets of the mapper,
plus (when self-refinement is on) the same losses on targets refined from this step's detached
outputs. Inference: ceil-to-32 resize, outputs upsampled to the original size with offsets
rescaled to the original frame, optional flip TTA, per-class / per-component decoding.
"""
import math
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import BitMasks, Instances
from detectron2.utils.events import get_event_storage

from . import self_refinement
from ..component_engine import ClusterParams
from .heads import build_bestie_heads, resolve_norm, set_bn_momentum
from .iag_loss import weighted_l1_loss, weighted_mse_loss
from .point_decoding import decode_instances_with_points
from .post_processing import decode_instances
from .self_refinement import RefineParams
from .semantic_loss import hard_pixel_cross_entropy

__all__ = ["BESTIE"]

@META_ARCH_REGISTRY.register()
class BESTIE(nn.Module):
    """BESTIE: backbone + :mod:`heads` + IAG losses + online self-refinement + instance decoding.

    Attributes set from outside:
        refine_active (bool): the training hook turns self-refinement on from
            ``MODEL.BESTIE.REFINE.START_ITER``; it only has an effect when ``refine_enabled``.
        return_maps (bool): inference also returns the ``center`` and ``offset`` maps.
        last_refine_stats (dict or None): statistics of the last refinement call (device tensors).
        vis_capture (bool): the next training forward keeps detached CPU copies of its first
            sample's input, pseudo / refined targets and predicted maps in ``last_vis``
            (``TrainingVisHook``, ``VIS_PERIOD > 0``); off otherwise (no extra work).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        heads: nn.Module,
        pixel_mean,
        pixel_std,
        num_classes: int,
        supervision: str = "image",
        ignore_value: int = 255,
        sem_loss_top_k: float = 0.2,
        sem_loss_weight: float = 1.0,
        center_loss_weight: float = 200.0,
        offset_loss_weight: float = 0.01,
        refine_enabled: bool = True,
        refine_params: Optional[RefineParams] = None,
        cluster_params: Optional[ClusterParams] = None,
        test_components_backend: str = "auto",
        test_center_threshold: float = 0.1,
        test_nms_kernel: int = 41,
        test_min_area: int = 50,
        test_flip: bool = False,
        test_use_clustering: bool = True,
        test_size_divisibility: int = 32,
        test_use_image_labels: bool = False,
        test_use_points: bool = False,
    ):
        """
        NOTE: this interface is experimental.

        Args:
            backbone: a :class:`detectron2.modeling.Backbone`.
            heads: a head set (see :mod:`bestie_d2.modeling.heads`) with ``align_corners``.
            pixel_mean, pixel_std: per-channel normalisation of the (RGB, 0-255) input.
            num_classes: C, thing classes.
            supervision: "image" (image-level labels) or "point" (point labels).
            ignore_value: semantic label ignored by the CE loss.
            sem_loss_top_k: hard-pixel fraction of the semantic CE (1.0 = plain CE).
            sem_loss_weight, center_loss_weight, offset_loss_weight: loss weights (1, 200, 0.01).
            refine_enabled: self-refinement allowed (it runs when ``refine_active`` is also set).
            refine_params: ``RefineParams`` of image-label refinement (None: the defaults).
            cluster_params: ``ClusterParams`` of center clustering, used by refinement and, with
                ``test_use_clustering``, by decoding (None: no clustering).
            test_components_backend: component engine of decoding, "auto" | "opencv" | "torch" | "triton"
                (refinement's is ``refine_params.components_backend``; both from the same key).
            test_*: inference settings (docs/method.md §6); ``test_use_points``: decode with the
                input's ``points`` (one instance per point,
                :func:`~bestie_d2.modeling.point_decoding.decode_instances_with_points`).
        """
        super().__init__()
        if supervision not in ("image", "point"):
            raise ValueError(f"supervision must be 'image' or 'point', got {supervision!r}")
        self.backbone = backbone
        self.heads = heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.num_classes = num_classes
        self.supervision = supervision
        self.ignore_value = ignore_value
        self.sem_loss_top_k = sem_loss_top_k
        self.sem_loss_weight = sem_loss_weight
        self.center_loss_weight = center_loss_weight
        self.offset_loss_weight = offset_loss_weight
        self.refine_enabled = refine_enabled
        self.refine_params = refine_params
        self.cluster_params = cluster_params
        self.test_components_backend = test_components_backend
        self.test_center_threshold = test_center_threshold
        self.test_nms_kernel = test_nms_kernel
        self.test_min_area = test_min_area
        self.test_flip = test_flip
        self.test_use_clustering = test_use_clustering
        self.test_size_divisibility = test_size_divisibility
        self.test_use_image_labels = test_use_image_labels
        self.test_use_points = test_use_points

        self.refine_active = False
        self.return_maps = False
        self.last_refine_stats: Optional[dict] = None
        self.vis_capture = False
        self.last_vis: Optional[dict] = None

    @classmethod
    def from_config(cls, cfg):
        bcfg = cfg
        norm = cfg.MODEL.RESNETS.NORM
        resolved = resolve_norm(norm, cfg.MODEL.DEVICE)
        if resolved != norm:
            bcfg = cfg.clone()
            bcfg.defrost()
            bcfg.MODEL.RESNETS.NORM = resolved
        backbone = build_backbone(bcfg)
        if not getattr(backbone, "owns_bn_momentum", False):
            set_bn_momentum(backbone, cfg.MODEL.BESTIE.BN_MOMENTUM)
        heads = build_bestie_heads(cfg, backbone.output_shape())
        m = cfg.MODEL.BESTIE
        return {
            "backbone": backbone,
            "heads": heads,
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "num_classes": cfg.BESTIE.NUM_CLASSES,
            "supervision": cfg.BESTIE.SUPERVISION,
            "ignore_value": m.IGNORE_VALUE,
            "sem_loss_top_k": m.SEM_LOSS_TOP_K,
            "sem_loss_weight": m.SEM_LOSS_WEIGHT,
            "center_loss_weight": m.CENTER_LOSS_WEIGHT,
            "offset_loss_weight": m.OFFSET_LOSS_WEIGHT,
            "refine_enabled": m.REFINE.ENABLED,
            "refine_params": RefineParams.from_config(cfg),
            "cluster_params": ClusterParams.from_config(cfg),
            "test_components_backend": m.COMPONENTS_BACKEND,
            "test_center_threshold": m.TEST.CENTER_THRESHOLD,
            "test_nms_kernel": m.TEST.NMS_KERNEL,
            "test_min_area": m.TEST.MIN_AREA,
            "test_flip": m.TEST.FLIP,
            "test_use_clustering": m.TEST.USE_CLUSTERING,
            "test_size_divisibility": m.TEST.SIZE_DIVISIBILITY,
            "test_use_image_labels": m.TEST.USE_IMAGE_LABELS,
            "test_use_points": m.TEST.USE_POINTS,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------------------
    # shared pieces
    # ------------------------------------------------------------------------------------------
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (N, 3, H, W) uint8/float RGB 0-255 -> normalised float on ``device``."""
        image = image.to(self.device, non_blocking=True).float()
        return (image - self.pixel_mean) / self.pixel_std

    def predict_maps(self, images: torch.Tensor, out_size) -> Dict[str, torch.Tensor]:
        """Run backbone + heads and upsample every output to ``out_size`` (bilinear).

        Args:
            images: (N, 3, H, W) normalised.
            out_size: (H_out, W_out).
        Returns:
            dict: ``sem_seg`` (N, C+1, H_out, W_out) logits, ``center`` (N, C, H_out, W_out),
            ``offset`` (N, 2, H_out, W_out) in units of the network input's pixels.
        """
        raw = self.heads(self.backbone(images))
        ac = bool(getattr(self.heads, "align_corners", True))
        size = (int(out_size[0]), int(out_size[1]))
        return {
            k: F.interpolate(v, size=size, mode="bilinear", align_corners=ac)
            for k, v in raw.items()
        }

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def forward(self, batched_inputs: List[dict]):
        """
        Args:
            batched_inputs: a list of mapper dicts (docs/DEVELOPING.md "Mapper output"). Training
                needs ``image`` (3, H, W) uint8 (all of one size), ``sem_seg`` (H, W),
                ``center`` (C, H, W), ``offset`` (2, H, W), ``weight`` (H, W), ``image_label`` (C,)
                and, for the point route with refinement, ``points`` (K, 3) [y, x, c].
                Inference needs ``image`` and optionally ``height``, ``width``, ``image_label``.
        Returns:
            In training, a dict of scalar losses ``loss_sem_seg``, ``loss_center``, ``loss_offset``.
            In inference, a list of dicts, one per image: ``instances`` (:class:`Instances` at
            (height, width) with ``pred_masks``, ``pred_classes``, ``scores``, ``pred_boxes``),
            ``sem_seg`` (C+1, height, width) probabilities, and with ``return_maps`` also
            ``center`` (C, height, width) and ``offset`` (2, height, width).
        """
        if not self.training:
            return self.inference(batched_inputs)
        images = torch.stack([self.normalize(x["image"]) for x in batched_inputs])
        maps = self.predict_maps(images, images.shape[-2:])
        targets = self._batch_targets(batched_inputs)
        return self.losses(maps, targets, batched_inputs)

    def _batch_targets(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        dev = self.device

        def stack(key, dtype):
            tensors = [x[key].to(dev, non_blocking=True) for x in batched_inputs]
            return torch.stack(tensors).to(dtype)

        t = {
            "sem_seg": stack("sem_seg", torch.long),
            "center": stack("center", torch.float32),
            "offset": stack("offset", torch.float32),
            "weight": stack("weight", torch.float32),
        }
        if t["weight"].dim() == 4:  # (N, 1, H, W)
            t["weight"] = t["weight"][:, 0]
        if "image_label" in batched_inputs[0]:
            t["image_label"] = stack("image_label", torch.float32)
        return t

    def losses(self, maps, targets, batched_inputs) -> Dict[str, torch.Tensor]:
        """docs/method.md §4: ``Lseg + 200 Lctr + 0.01 Loff``, refined parts averaged in when active."""
        loss_sem = hard_pixel_cross_entropy(
            maps["sem_seg"], targets["sem_seg"], self.ignore_value, self.sem_loss_top_k
        )
        ctr_p = self.center_loss_weight * weighted_mse_loss(
            maps["center"], targets["center"], targets["weight"]
        )
        off_p = self.offset_loss_weight * weighted_l1_loss(
            maps["offset"], targets["offset"], targets["weight"]
        )
        loss_center, loss_offset = ctr_p, off_p
        refined = None
        if self.refine_enabled and self.refine_active:
            refined = self.refine(maps, targets, batched_inputs)
            off_r = self.offset_loss_weight * weighted_l1_loss(
                maps["offset"], refined["offset"], refined["weight"]
            )
            loss_offset = 0.5 * (off_p + off_r)
            logs = {"loss_offset_pseudo": off_p, "loss_offset_refined": off_r}
            if self.supervision == "image":
                ctr_r = self.center_loss_weight * weighted_mse_loss(
                    maps["center"], refined["center"], refined["weight"]
                )
                loss_center = 0.5 * (ctr_p + ctr_r)
                logs.update(loss_center_pseudo=ctr_p, loss_center_refined=ctr_r)
            self._put_scalars(logs)
        if self.vis_capture:
            self.last_vis = self._vis_snapshot(maps, targets, batched_inputs, refined)
        return {
            "loss_sem_seg": self.sem_loss_weight * loss_sem,
            "loss_center": loss_center,
            "loss_offset": loss_offset,
        }

    @torch.no_grad()
    def refine(self, maps, targets, batched_inputs) -> Dict[str, torch.Tensor]:
        """Refined targets from this step's **detached** outputs (docs/method.md §5).

        Returns ``offset`` (N, 2, H, W), ``weight`` (N, H, W) in [0, 1] and, for the image route,
        ``center`` (N, C, H, W), on ``device``. The stats dict goes to ``last_refine_stats``.
        """
        wsss = targets["sem_seg"]
        image_label = targets["image_label"]
        offset = maps["offset"].detach()
        if self.supervision == "image":
            out, stats = self_refinement.refine_image_label(
                maps["sem_seg"].detach(),
                maps["center"].detach(),
                offset,
                image_label,
                wsss,
                self.refine_params,
                self.cluster_params,
            )
        else:
            points = [x["points"].to(self.device) for x in batched_inputs]
            out, stats = self_refinement.refine_point(offset, points, image_label, wsss)
        self.last_refine_stats = stats
        out = {k: v.to(self.device, torch.float32) for k, v in out.items() if torch.is_tensor(v)}
        if out["weight"].dim() == 4:
            out["weight"] = out["weight"][:, 0]
        return out

    @torch.no_grad()
    def _vis_snapshot(self, maps, targets, batched_inputs, refined) -> dict:
        """Detached CPU copies of the first sample of the batch (for ``TrainingVisHook``)."""
        x = batched_inputs[0]

        def first(d, keys):
            return {k: d[k][0].detach().float().cpu() for k in keys if k in d}

        return {
            "image": x["image"].detach().cpu(),
            "image_id": x.get("image_id"),
            "points": x["points"].detach().cpu() if "points" in x else None,
            "supervision": self.supervision,
            "pred": first(maps, ("center", "offset")),
            "pseudo": first(targets, ("sem_seg", "center", "offset", "weight")),
            "refined": None if refined is None else first(refined, ("center", "offset", "weight")),
        }

    @staticmethod
    def _put_scalars(scalars: Dict[str, torch.Tensor]) -> None:
        try:
            storage = get_event_storage()
        except AssertionError:  # not inside a trainer
            return
        for k, v in scalars.items():
            storage.put_scalar(k, float(v.detach()))

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def inference(self, batched_inputs: List[dict]) -> List[dict]:
        """Per image: resize to multiples of ``test_size_divisibility``, predict, upsample to the
        original size, rescale offsets, (flip TTA), decode. See :meth:`forward` for outputs."""
        results = []
        for inp in batched_inputs:
            maps = self.inference_maps(inp)
            prob, center, offset = maps["sem_seg"], maps["center"], maps["offset"]
            label = None
            if self.test_use_image_labels and "image_label" in inp:
                label = inp["image_label"].to(self.device, torch.float32)
                prob = prob.clone()
                prob[1:] *= label.view(-1, 1, 1)
            if self.test_use_points:
                if "points" not in inp:
                    raise ValueError(
                        f"test_use_points (MODEL.BESTIE.TEST.USE_POINTS) is set, but the input of image "
                        f"{inp.get('image_id', '?')!r} has no 'points' (BestieDatasetMapper(test_points=True) adds them)"
                    )
                masks, classes, scores = decode_instances_with_points(prob, offset, inp["points"].to(self.device), label)
            else:
                masks, classes, scores = self._decode(prob, center, offset)
            h, w = prob.shape[-2:]
            inst = Instances((h, w))
            masks = masks.to(self.device).bool()
            inst.pred_masks = masks
            inst.pred_classes = classes.to(self.device).long()
            inst.scores = scores.to(self.device).float()
            boxes = BitMasks(masks).get_bounding_boxes()
            boxes.tensor = boxes.tensor.to(self.device)
            inst.pred_boxes = boxes
            res = {"instances": inst, "sem_seg": prob}
            if self.return_maps:
                res["center"] = center
                res["offset"] = offset
            results.append(res)
        return results

    def inference_maps(self, inp: dict) -> Dict[str, torch.Tensor]:
        """Network maps of one test image at its original size.

        Returns ``sem_seg`` (C+1, H, W) softmax probabilities, ``center`` (C, H, W) and ``offset``
        (2, H, W) in original-image pixels, with (H, W) = (``height``, ``width``) of the input
        (default: the image size). With flip TTA the probabilities and centers are averaged with
        the un-flipped maps of the mirrored image; offsets come from the direct pass only.
        """
        x = self.normalize(inp["image"])
        h0, w0 = x.shape[-2:]
        out_h, out_w = int(inp.get("height", h0)), int(inp.get("width", w0))
        d = self.test_size_divisibility
        net_h, net_w = h0, w0
        if d and d > 0:
            net_h, net_w = int(math.ceil(h0 / d) * d), int(math.ceil(w0 / d) * d)
        x = x.unsqueeze(0)
        if (net_h, net_w) != (h0, w0):
            x = F.interpolate(x, size=(net_h, net_w), mode="bilinear", align_corners=False)
        if self.test_flip:
            x = torch.cat([x, x.flip(-1)], dim=0)
        maps = self.predict_maps(x, (out_h, out_w))
        prob = F.softmax(maps["sem_seg"], dim=1)
        center = maps["center"]
        if self.test_flip:
            prob = 0.5 * (prob[0] + prob[1].flip(-1))
            center = 0.5 * (center[0] + center[1].flip(-1))
        else:
            prob, center = prob[0], center[0]
        # Offsets are in network-input pixels: bring them to the output frame (dy*H/H', dx*W/W').
        scale = torch.tensor([out_h / net_h, out_w / net_w], device=x.device, dtype=x.dtype)
        offset = maps["offset"][0] * scale.view(2, 1, 1)
        return {"sem_seg": prob, "center": center, "offset": offset}

    def _decode(self, prob, center, offset):
        """Instance decoding via :func:`bestie_d2.modeling.post_processing.decode_instances`."""
        cluster = self.cluster_params if self.test_use_clustering else None
        return decode_instances(prob, center, offset, center_threshold=self.test_center_threshold,
                                nms_kernel=self.test_nms_kernel, min_area=self.test_min_area, cluster=cluster,
                                backend=self.test_components_backend)

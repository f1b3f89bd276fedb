"""BESTIE meta-architecture and heads: shapes, a training step, refinement wiring, inference."""
import glob
import os
import types

import bestie_d2  # noqa: F401  (prepares detectron2)
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

from bestie_d2.modeling.bestie import BESTIE
from bestie_d2.modeling.heads import LightHeads, PanopticDeepLabDecoder, resolve_norm
from bestie_d2.modeling import self_refinement
from bestie_d2.modeling.iag_loss import weighted_l1_loss, weighted_mse_loss

from cfg_factory import TINY_BESTIE_CONFIG, new_bestie_cfg
from repo_paths import REPO as ROOT
C = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(route="resnet", supervision="image"):
    cfg = new_bestie_cfg(TINY_BESTIE_CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.BESTIE.NUM_CLASSES = C
    cfg.BESTIE.SUPERVISION = supervision
    m = cfg.MODEL.BESTIE
    m.ASPP_DROPOUT = 0.0  # deterministic forward for the by-hand loss checks
    if route == "resnet":
        m.ASPP_CHANNELS = m.INS_ASPP_CHANNELS = 16
        m.SEM_PROJECT_CHANNELS = [8, 8, 8]
        m.INS_PROJECT_CHANNELS = [8, 4, 4]
        m.SEM_DECODER_CHANNELS = m.SEM_HEAD_CHANNELS = 16
        m.INS_DECODER_CHANNELS = m.CENTER_HEAD_CHANNELS = 16
        m.OFFSET_HEAD_CHANNELS = 8
    else:
        cfg.MODEL.BACKBONE.NAME = "build_hrnet_backbone"
        cfg.MODEL.HRNET.WIDTH = 8
        cfg.MODEL.HRNET.NUM_BLOCKS = 1
        cfg.MODEL.HRNET.NUM_MODULES = [1, 1, 1]
        m.DECODER = "LightHeads"
        m.IN_FEATURES = ["hr"]
        m.LIGHT_HEAD_CHANNELS = 16
    return cfg


def make_batch(n=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        weight = torch.zeros(h, w)
        weight[8:40, 8:40] = 1.0
        out.append(
            {
                "image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                "sem_seg": torch.randint(0, C + 1, (h, w), generator=g),
                "center": torch.rand(C, h, w, generator=g),
                "offset": torch.randn(2, h, w, generator=g) * 5,
                "weight": weight,
                "points": torch.tensor([[20, 20, 0], [30, 10, 1]]),
                "image_label": torch.tensor([1.0, 1.0, 0.0]),
                "height": h,
                "width": w,
            }
        )
    return out


@pytest.fixture(scope="module")
def resnet_model():
    torch.manual_seed(0)
    return build_model(tiny_cfg("resnet"))


def test_all_bestie_yamls_merge(bestie_cfg_factory):
    files = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*BESTIE*.yaml"), recursive=True))
    files += sorted(glob.glob(os.path.join(ROOT, "configs", "**", "bestie_*.yaml"), recursive=True))
    assert len(files) >= 11
    for f in files:
        cfg = bestie_cfg_factory(f)
        assert cfg.MODEL.META_ARCHITECTURE == "BESTIE"


def test_resolve_norm_falls_back_on_cpu():
    assert resolve_norm("SyncBN", "cpu") == "BN"
    assert resolve_norm("SyncBN") == "BN"  # single process
    assert resolve_norm("GN", "cpu") == "GN"
    cfg = tiny_cfg("resnet")
    cfg.MODEL.BESTIE.NORM = "SyncBN"
    cfg.MODEL.RESNETS.NORM = "SyncBN"
    model = build_model(cfg)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == cfg.MODEL.BESTIE.BN_MOMENTUM for m in bns)


@pytest.mark.parametrize("route", ["resnet", "hrnet"])
def test_output_shapes(route):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(route))
    assert isinstance(model, BESTIE)
    heads = model.heads
    assert isinstance(heads, PanopticDeepLabDecoder if route == "resnet" else LightHeads)
    assert heads.align_corners == (route == "resnet")
    x = torch.randn(2, 3, 64, 96)
    raw = heads(model.backbone(x))
    assert raw["sem_seg"].shape == (2, C + 1, 16, 24)
    assert raw["center"].shape == (2, C, 16, 24)  # class-wise centers
    assert raw["offset"].shape == (2, 2, 16, 24)
    maps = model.predict_maps(x, (64, 96))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "sem_seg": (2, C + 1, 64, 96), "center": (2, C, 64, 96), "offset": (2, 2, 64, 96)}


def test_decoder_widths_and_init():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("resnet"))
    h = model.heads
    assert h.sem_predictor.out_channels == C + 1 and h.center_predictor.out_channels == C
    assert h.offset_predictor.out_channels == 2
    assert [p.out_channels for p in h.ins_decoder.projections] == [8, 4, 4]
    assert h.offset_head.pointwise.out_channels == 8
    assert h.sem_decoder.aspp.convs[1].dilation == (3, 3)
    assert h.sem_decoder.aspp.convs[3].dilation == (9, 9)
    assert h.sem_predictor.weight.std().item() < 0.01
    assert h.sem_predictor.bias.abs().sum() == 0


@pytest.mark.parametrize("route", ["resnet", "hrnet"])
def test_train_step_gradients_reach_every_head(route):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(route))
    model.train()
    losses = model(make_batch())
    assert set(losses) == {"loss_sem_seg", "loss_center", "loss_offset"}
    total = sum(losses.values())
    assert all(torch.isfinite(v) for v in losses.values())
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    h = model.heads
    if route == "resnet":
        heads = [h.sem_predictor, h.center_predictor, h.offset_predictor,
                 h.sem_decoder.aspp.project, h.ins_decoder.projections[-1]]
    else:
        heads = [h.sem_head[2], h.center_head[2], h.offset_head[2], h.sem_head[0]]
    for mod in heads:
        assert mod.weight.grad.abs().sum() > 0
    first = model.backbone.conv1 if route == "hrnet" else model.backbone.stem.conv1
    assert first.weight.grad.abs().sum() > 0


def _expected_losses(model, batch, refined=None, point=False):
    images = torch.stack([model.normalize(x["image"]) for x in batch])
    with torch.no_grad():
        maps = model.predict_maps(images, images.shape[-2:])
    t = model._batch_targets(batch)
    ctr_p = 200 * weighted_mse_loss(maps["center"], t["center"], t["weight"])
    off_p = 0.01 * weighted_l1_loss(maps["offset"], t["offset"], t["weight"])
    if refined is None:
        return ctr_p, off_p
    off_r = 0.01 * weighted_l1_loss(maps["offset"], refined["offset"], refined["weight"])
    if point:
        return ctr_p, 0.5 * (off_p + off_r)
    ctr_r = 200 * weighted_mse_loss(maps["center"], refined["center"], refined["weight"])
    return 0.5 * (ctr_p + ctr_r), 0.5 * (off_p + off_r)


def _fake_refine_module(calls):
    mod = types.SimpleNamespace()

    def targets(b, h, w, center=True):
        weight = torch.zeros(b, h, w)
        weight[:, 30:60, 30:60] = 0.5
        out = {"offset": torch.full((b, 2, h, w), 3.0), "weight": weight}
        if center:
            out["center"] = torch.full((b, C, h, w), 0.25)
        return out

    def refine_image_label(sem_logits, center, offset, image_label, wsss, params, cluster):
        assert not (sem_logits.requires_grad or center.requires_grad or offset.requires_grad)
        assert sem_logits.shape[1] == C + 1 and center.shape[1] == C and wsss.dim() == 3
        assert image_label.shape == (sem_logits.shape[0], C)
        calls.append(("image", params, cluster))
        b, _, h, w = offset.shape
        return targets(b, h, w), {"refined_instances": 7}

    def refine_point(offset, points, image_label, wsss):
        assert not offset.requires_grad
        assert isinstance(points, list) and points[0].shape[1] == 3
        calls.append(("point",))
        b, _, h, w = offset.shape
        return targets(b, h, w, center=False), {"refined_instances": 3}

    mod.refine_image_label = refine_image_label
    mod.refine_point = refine_point
    mod.targets = targets
    return mod


@pytest.mark.parametrize("supervision", ["image", "point"])
def test_refinement_loss_combination(monkeypatch, supervision):
    calls = []
    fake = _fake_refine_module(calls)
    monkeypatch.setattr(self_refinement, "refine_image_label", fake.refine_image_label)
    monkeypatch.setattr(self_refinement, "refine_point", fake.refine_point)
    torch.manual_seed(0)
    model = build_model(tiny_cfg("resnet", supervision))
    model.cluster_params = "cluster-params"  # passed through to refine_image_label as is
    model.train()
    batch = make_batch()

    # refinement inactive: plain pseudo losses
    ctr, off = _expected_losses(model, batch)
    losses = model(batch)
    assert not calls
    assert losses["loss_center"].item() == pytest.approx(ctr.item(), rel=1e-4)
    assert losses["loss_offset"].item() == pytest.approx(off.item(), rel=1e-4)

    model.refine_active = True
    refined = fake.targets(2, 64, 64, center=supervision == "image")
    ctr, off = _expected_losses(model, batch, refined, point=supervision == "point")
    with EventStorage(0) as storage:
        losses = model(batch)
        logged = set(storage.histories())
    assert len(calls) == 1 and calls[0][0] == supervision
    if supervision == "image":
        assert calls[0][2] == "cluster-params"
        assert {"loss_center_pseudo", "loss_center_refined"} <= logged
    assert {"loss_offset_pseudo", "loss_offset_refined"} <= logged
    assert losses["loss_center"].item() == pytest.approx(ctr.item(), rel=1e-4)
    assert losses["loss_offset"].item() == pytest.approx(off.item(), rel=1e-4)
    assert model.last_refine_stats["refined_instances"] == (7 if supervision == "image" else 3)
    sum(losses.values()).backward()

    # refinement disabled by config: the hook's flag alone does nothing
    model.refine_enabled = False
    model(batch)
    assert len(calls) == 1


def _fake_decode(prob, center, offset):
    labels = prob.argmax(0)
    masks, classes, scores = [], [], []
    for c in range(center.shape[0]):
        m = labels == c + 1
        if m.any():
            masks.append(m)
            classes.append(c)
            scores.append(prob[c + 1][m].mean())
    if not masks:
        empty = torch.zeros(0, *prob.shape[-2:], dtype=torch.bool)
        return empty, torch.zeros(0).long(), torch.zeros(0)
    return torch.stack(masks), torch.tensor(classes), torch.stack(scores)


def test_inference_odd_size_instances(monkeypatch, resnet_model):
    model = resnet_model
    model.eval()
    model.return_maps = True
    img = torch.randint(0, 256, (3, 70, 93), dtype=torch.uint8)
    try:
        (out,) = model([{"image": img, "height": 70, "width": 93}])
    finally:
        model.return_maps = False
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (70, 93)
    assert inst.pred_masks.shape[1:] == (70, 93) and inst.pred_masks.dtype == torch.bool
    assert len(inst.pred_classes) == len(inst.scores) == len(inst.pred_boxes) == len(inst)
    assert out["sem_seg"].shape == (C + 1, 70, 93)
    assert torch.allclose(out["sem_seg"].sum(0), torch.ones(70, 93), atol=1e-5)
    assert out["center"].shape == (C, 70, 93) and out["offset"].shape == (2, 70, 93)


class _ConstHeads(torch.nn.Module):
    """Heads with constant outputs (offset dy = dx = 1 network-input pixel)."""

    align_corners = True

    def forward(self, features):
        x = features["res2"]
        n, _, h, w = x.shape
        return {
            "sem_seg": torch.zeros(n, C + 1, h, w),
            "center": torch.zeros(n, C, h, w),
            "offset": torch.ones(n, 2, h, w),
        }


def test_offsets_rescaled_to_original_frame(monkeypatch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("resnet")).eval()
    monkeypatch.setattr(model, "heads", _ConstHeads())
    maps = model.inference_maps({"image": torch.zeros(3, 70, 93, dtype=torch.uint8)})
    # network input is 96 x 96; outputs go straight to 70 x 93
    assert maps["offset"].shape == (2, 70, 93)
    assert torch.allclose(maps["offset"][0], torch.full((70, 93), 70 / 96))
    assert torch.allclose(maps["offset"][1], torch.full((70, 93), 93 / 96))
    # height / width of the input dict define the output frame
    maps = model.inference_maps(
        {"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 128, "width": 96})
    assert maps["center"].shape == (C, 128, 96)
    assert torch.allclose(maps["offset"][0], torch.full((128, 96), 2.0))
    assert torch.allclose(maps["offset"][1], torch.full((128, 96), 1.5))


def test_flip_tta_unflips(monkeypatch):
    """Outputs = pointwise function of the image + a column ramp (not flip-equivariant)."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg("resnet")).eval()
    h, w = 64, 96  # multiples of 32: no test-time resize

    def fake_maps(images, out_size):
        assert tuple(out_size) == (h, w)
        ramp = torch.linspace(0, 1, w).view(1, 1, 1, w)
        base = images[:, :1]
        return {
            "sem_seg": torch.cat([base * (k + 1) + ramp * k for k in range(C + 1)], 1),
            "center": torch.cat([base + ramp * (k + 1) for k in range(C)], 1),
            "offset": torch.cat([base, ramp.expand_as(base)], 1),
        }

    monkeypatch.setattr(model, "predict_maps", fake_maps)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    x = model.normalize(img)[None]
    direct, mirrored = fake_maps(x, (h, w)), fake_maps(x.flip(-1), (h, w))
    p_direct = F.softmax(direct["sem_seg"], 1)[0]
    p_mirror = F.softmax(mirrored["sem_seg"], 1)[0]
    exp_prob = 0.5 * (p_direct + p_mirror.flip(-1))
    exp_center = 0.5 * (direct["center"][0] + mirrored["center"][0].flip(-1))

    model.test_flip = True
    maps = model.inference_maps({"image": img})
    assert torch.allclose(maps["center"], exp_center, atol=1e-5)
    assert torch.allclose(maps["sem_seg"], exp_prob, atol=1e-5)
    assert torch.allclose(maps["offset"], direct["offset"][0], atol=1e-6)  # direct pass only
    # image-dependent part is unchanged by the un-flip, the ramp is symmetrised
    ramp = torch.linspace(0, 1, w)
    assert torch.allclose(maps["center"][0] - direct["center"][0, 0], (0.5 * (ramp + ramp.flip(0))
                          - ramp).expand(h, w), atol=1e-5)

    model.test_flip = False
    maps = model.inference_maps({"image": img})
    assert torch.allclose(maps["center"], direct["center"][0], atol=1e-6)


def test_image_labels_zero_absent_classes(monkeypatch, resnet_model):
    model = resnet_model
    model.eval()
    seen = {}

    def spy(prob, center, offset):
        seen["prob"] = prob
        return _fake_decode(prob, center, offset)

    monkeypatch.setattr(model, "_decode", spy)
    monkeypatch.setattr(model, "test_use_image_labels", True)
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    model([{"image": img, "image_label": torch.tensor([0.0, 1.0, 0.0])}])
    p = seen["prob"]
    assert p[1].abs().sum() == 0 and p[3].abs().sum() == 0 and p[2].abs().sum() > 0


@pytest.mark.parametrize("supervision", ["image", "point"])
def test_train_step_with_real_refinement(supervision):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("resnet", supervision))
    model.train()
    model.refine_active = True
    batch = make_batch()
    for x in batch:
        sem = torch.zeros(64, 64, dtype=torch.long)
        sem[8:30, 8:30] = 1
        sem[35:60, 35:60] = 2
        x["sem_seg"] = sem
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert isinstance(model.last_refine_stats, dict)
    assert model.heads.offset_predictor.weight.grad.abs().sum() > 0

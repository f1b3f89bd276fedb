"""PAM classifier: PeakAttention, VGG-16 D1, the meta-arch, optimizer groups, mapper, evaluator, configs."""
import numpy as np
import pytest
import torch

import bestie_d2  # noqa: F401
from bestie_d2.data.pam_mapper import PAMDatasetMapper, color_jitter, labels_to_multi_hot
from bestie_d2.evaluation.multilabel import (
    MultiLabelClassificationEvaluator,
    average_precision,
    mean_average_precision,
)
from bestie_d2.modeling.backbone.vgg import VGG16D1
from bestie_d2.modeling.pam import PAMClassifier, PeakAttention, build_pam_optimizer

from bestie_d2.engine.checkpoint import SafeCheckpointer
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from cfg_factory import new_bestie_cfg
from overfit_case import PAM_ITERATIONS, run_pam_overfit

# at least 10 points under the worst run measured (see test_tiny_classifier_overfits_image_labels)
PAM_MIN_MAP = 85.0

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def tiny_cfg(*opts):
    cfg = new_bestie_cfg("configs/toy/pam.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""] + list(opts))
    return cfg


def tiny_model(num_classes=3, layers=(2,), alpha=0.7, width=0.125, extra=32):
    return PAMClassifier(
        backbone=VGG16D1(width), in_feature="conv5", num_classes=num_classes, extra_channels=extra,
        pam_layers=layers, alpha=alpha, pixel_mean=MEAN, pixel_std=STD,
    )


# ------------------------------------------------------------------------------------------------
# PeakAttention
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7, 1.0])
def test_pam_zeroes_exactly_below_alpha_max(alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 7, 9, generator=g)
    x[1, 2] = -1.0  # a channel with nothing positive
    y = PeakAttention(alpha)(x)
    xn = x.numpy()
    for n in range(3):
        for c in range(4):
            r = np.maximum(xn[n, c], 0)
            m = r.max()
            expected = np.where(r >= alpha * m, r, 0.0)
            np.testing.assert_array_equal(y[n, c].numpy(), expected)
            if m > 0:
                kept = r >= alpha * m
                # kept entries pass unchanged, the others are exactly zero
                assert np.array_equal(y[n, c].numpy()[kept], r[kept])
                assert (y[n, c].numpy()[~kept] == 0).all()
                assert kept.sum() >= 1
    assert (y[1, 2] == 0).all()


def test_pam_alpha_zero_is_relu_and_gradients_flow():
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(PeakAttention(0.0)(x), torch.relu(x))
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y = PeakAttention(0.5)(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    kept = (y.detach() > 0)
    assert kept.any()
    # d y / d x = 1 on kept entries (gradient passes unchanged), 0 elsewhere
    torch.testing.assert_close(x.grad[kept], w[kept])
    assert (x.grad[~kept] == 0).all()
    with pytest.raises(ValueError):
        PeakAttention(1.5)


# ------------------------------------------------------------------------------------------------
# VGG-16 D1
# ------------------------------------------------------------------------------------------------
def test_vgg16_d1_output_stride_8_and_layout():
    net = VGG16D1(width_mult=0.125, out_features=("conv3", "conv4", "conv5"))
    out = net(torch.zeros(2, 3, 64, 96))
    assert out["conv5"].shape == (2, 64, 8, 12)
    assert out["conv4"].shape == (2, 64, 8, 12)
    assert out["conv3"].shape == (2, 32, 16, 24)
    shapes = net.output_shape()
    assert shapes["conv5"].stride == 8 and shapes["conv5"].channels == 64
    convs = [(i, m) for i, m in enumerate(net.features) if isinstance(m, torch.nn.Conv2d)]
    # torchvision vgg16().features conv indices
    assert [i for i, _ in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert all(m.dilation == (2, 2) and m.padding == (2, 2) for i, m in convs[-3:])
    assert all(m.dilation == (1, 1) for i, m in convs[:-3])
    pool4 = net.features[23]
    assert isinstance(pool4, torch.nn.MaxPool2d) and pool4.kernel_size == 3 and pool4.stride == 1
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert len(net.features) == 30  # no pool after block 5
    full = VGG16D1(1.0)
    assert full.output_shape()["conv5"].channels == 512
    assert sum(p.numel() for p in full.parameters()) == 14714688  # torchvision vgg16 features
    # NORM "BN": torchvision vgg16_bn layout (conv, bn, relu), same output stride
    bn = VGG16D1(0.125, norm="BN")
    conv_idx = [i for i, m in enumerate(bn.features) if isinstance(m, torch.nn.Conv2d)]
    assert conv_idx == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert isinstance(bn.features[1], torch.nn.BatchNorm2d)
    assert bn(torch.zeros(2, 3, 64, 96))["conv5"].shape == (2, 64, 8, 12)
    # a shallower output: later blocks are not built
    c3 = VGG16D1(0.125, out_features=("conv3",))
    assert len(c3.features) == 16 and c3(torch.zeros(1, 3, 32, 32))["conv3"].shape == (1, 32, 8, 8)
    assert c3.output_shape()["conv3"].stride == 4


def test_classifier_loads_torchvision_vgg_state_dict(tmp_path):
    model = tiny_model(width=0.125)
    tv = {}
    for i, m in enumerate(model.backbone.features):
        if isinstance(m, torch.nn.Conv2d):
            tv[f"features.{i}.weight"] = torch.full_like(m.weight, float(i))
            tv[f"features.{i}.bias"] = torch.full_like(m.bias, -float(i))
    tv["classifier.0.weight"] = torch.zeros(4, 4)
    path = str(tmp_path / "vgg16-tv.pth")
    torch.save(tv, path)
    head_before = model.cam_conv.weight.detach().clone()
    SafeCheckpointer(model).load(path)
    for i, m in enumerate(model.backbone.features):
        if isinstance(m, torch.nn.Conv2d):
            assert (m.weight == float(i)).all() and (m.bias == -float(i)).all()
    assert torch.equal(model.cam_conv.weight, head_before)
    # our own checkpoints still load normally
    model2 = tiny_model(width=0.125)
    torch.save({"model": model.state_dict()}, str(tmp_path / "own.pth"))
    DetectionCheckpointer(model2).load(str(tmp_path / "own.pth"))
    assert torch.equal(model2.backbone.features[0].weight, model.backbone.features[0].weight)


# ------------------------------------------------------------------------------------------------
# Meta-arch, optimizer
# ------------------------------------------------------------------------------------------------
def test_pam_classifier_from_config_train_and_inference():
    cfg = tiny_cfg("MODEL.VGG.WIDTH_MULT", 0.125, "MODEL.PAM.EXTRA_CHANNELS", 16,
                   "MODEL.PAM.LAYERS", [0, 2], "MODEL.PAM.ALPHA", 0.5, "MODEL.VGG.NORM", "",
                   "MODEL.VGG.OUT_FEATURES", ["conv5"], "MODEL.PAM.IN_FEATURE", "conv5")
    model = build_model(cfg)
    assert isinstance(model, PAMClassifier)
    assert [type(a).__name__ for a in model.extra_acts] == ["PeakAttention", "ReLU", "PeakAttention"]
    assert model.extra_acts[0].alpha == 0.5
    std = model.extra_convs[0].weight.std().item()
    assert abs(std - (2.0 / (9 * 16)) ** 0.5) < 0.03
    assert (model.extra_convs[0].bias == 0).all()
    batch = [
        {"image": torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8),
         "image_label": labels_to_multi_hot([1, 3], 5)},
        {"image": torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8),
         "image_label": labels_to_multi_hot([0], 5)},
    ]
    model.train()
    losses = model(batch)
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].ndim == 0
    losses["loss_cls"].backward()
    assert model.backbone.features[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(batch)
        cams = model.cams(torch.stack([b["image"] for b in batch]))
    assert len(out) == 2
    assert out[0]["logits"].shape == (5,) and out[0]["cam"].shape == (5, 6, 6)
    torch.testing.assert_close(out[0]["logits"], out[0]["cam"].mean(dim=(1, 2)))
    torch.testing.assert_close(cams[1], out[1]["cam"])
    # the toy config's head reads conv3 (stride 4)
    toy = build_model(tiny_cfg())
    assert toy.feature_stride == 4 and len(toy.backbone.features) == 23  # 7 convs with BN
    toy.eval()
    with torch.no_grad():
        assert toy(batch[:1])[0]["cam"].shape == (5, 12, 12)


def test_build_pam_optimizer_param_groups():
    cfg = tiny_cfg("SOLVER.BASE_LR", 0.001, "SOLVER.BIAS_LR_FACTOR", 2.0, "SOLVER.OPTIMIZER", "SGD",
                   "SOLVER.WEIGHT_DECAY", 5e-4, "SOLVER.WEIGHT_DECAY_BIAS", 5e-4,
                   "MODEL.PAM.NEW_LAYER_LR_MULT", 10.0, "MODEL.VGG.WIDTH_MULT", 0.125,
                   "MODEL.VGG.NORM", "", "MODEL.PAM.EXTRA_CHANNELS", 16,
                   "MODEL.VGG.OUT_FEATURES", ["conv5"], "MODEL.PAM.IN_FEATURE", "conv5")
    model = build_model(cfg)
    opt = build_pam_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.SGD)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"pretrained_weight", "pretrained_bias", "new_weight", "new_bias"}
    lrs = {k: g["lr"] for k, g in groups.items()}
    assert lrs == pytest.approx(
        {"pretrained_weight": 1e-3, "pretrained_bias": 2e-3, "new_weight": 1e-2, "new_bias": 2e-2}
    )
    for g in opt.param_groups:
        assert g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
    assert len(groups["pretrained_weight"]["params"]) == 13
    assert len(groups["new_weight"]["params"]) == 4 and len(groups["new_bias"]["params"]) == 4
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))
    cfg.SOLVER.OPTIMIZER = "ADAM"
    opt = build_pam_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 2e-3, 1e-2, 2e-2])


@pytest.mark.parametrize("iterations", [PAM_ITERATIONS])
def test_tiny_classifier_overfits_image_labels(iterations):
    """A tiny PAM classifier learns the image labels of 10 synthetic images (``overfit_case``).

    Spread (``benchmarks/quality_spread.py --case pam``; seeds x torch threads x
    detectron2 version as listed; multi-label mAP after PAM_ITERATIONS Adam steps; min / median / max):

    detectron2 0.6               1 thread : 100.0 / 100.0 / 100.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 0.6               2 threads: 100.0 / 100.0 / 100.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     1 thread : 100.0 / 100.0 / 100.0  (seeds 1,2,3,4,5,6,7,8)
    detectron2 main 02b5c4e2     2 threads: 100.0 / 100.0 / 100.0  (seeds 1,2,3,4,5,6,7,8)
    all 32 runs:                         100.0 / 100.0 / 100.0

    At 100 iterations seed 4 with 2 threads stopped at 71.0 (both detectron2 versions; the PAM
    code does not depend on the version), hence 200. Untrained: 51.8 - 73.3 over seeds 1-3
    (seed 1, the test's: 73.3). The threshold is at least 10 points under the worst run.
    """
    res = run_pam_overfit(seed=1, threads=1, iterations=iterations)
    assert res["mAP"] > PAM_MIN_MAP, res


def test_untrained_classifier_fails_gate():
    """The gate is meaningful: the untrained classifier fails it (multi-label mAP has a high chance
    level here, 52-73 over seeds 1-3, because most images hold most classes)."""
    res = run_pam_overfit(seed=1, threads=1, iterations=0)
    assert res["mAP"] < PAM_MIN_MAP, res


# ------------------------------------------------------------------------------------------------
# Mapper
# ------------------------------------------------------------------------------------------------
def _write_image(path, h, w, seed=0):
    import cv2

    img = np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(path, img[:, :, ::-1])
    return img


def test_pam_mapper_train_and_test(tmp_path):
    img = _write_image(str(tmp_path / "a.png"), 50, 70)
    rec = {"file_name": str(tmp_path / "a.png"), "image_id": "a", "height": 50, "width": 70,
           "image_label": [0, 2], "annotations": []}
    cfg = tiny_cfg("INPUT.PAM.RESIZE", 40, "INPUT.PAM.CROP", 32, "INPUT.PAM.TEST_SIZE", 48)
    np.random.seed(0)
    out = PAMDatasetMapper(cfg, is_train=True)(rec)
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.uint8
    assert out["image_label"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert "annotations" not in out and rec["annotations"] == []  # input left untouched
    out = PAMDatasetMapper(cfg, is_train=False)(rec)
    assert out["image"].shape == (3, 48, 48)
    assert (out["height"], out["width"]) == (50, 70)
    # no jitter, no flip, crop = resize: the train image is the plain square resize
    m = PAMDatasetMapper(False, num_classes=5, resize=48, crop=48, color_jitter=(0, 0, 0, 0),
                         flip=False, test_size=48)
    m_train = PAMDatasetMapper(True, num_classes=5, resize=48, crop=48, color_jitter=(0, 0, 0, 0),
                               flip=False, test_size=48)
    assert torch.equal(m(rec)["image"], m_train(rec)["image"])
    import cv2

    expected = cv2.resize(img, (48, 48), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert torch.equal(m(rec)["image"], torch.as_tensor(np.ascontiguousarray(expected)))


def test_color_jitter():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (20, 30, 3)).astype(np.uint8)
    assert np.array_equal(color_jitter(img, 0, 0, 0, 0, rng=rng), img)
    out = color_jitter(img, 0.3, 0.3, 0.3, 0.1, rng=rng)
    assert out.dtype == np.uint8 and out.shape == img.shape and not np.array_equal(out, img)
    gray = np.repeat(rng.randint(0, 256, (20, 30, 1)), 3, axis=2).astype(np.uint8)
    # saturation / hue leave gray pixels gray
    out = color_jitter(gray, 0, 0, 0.5, 0.1, rng=rng)
    assert np.abs(out.astype(int) - gray.astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------
# Evaluator
# ------------------------------------------------------------------------------------------------
def test_average_precision_hand_computed():
    # ranks: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.6 (neg): AP = 1*0.5 + (2/3)*0.5
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0.1, 0.2, 0.3], [0, 1, 1]) == pytest.approx(1.0)
    # tied scores form one threshold: P = 1/2 at R = 1
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0.5, 0.2], [0, 0]))
    m, aps = mean_average_precision(
        np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1]]), np.array([[1, 0, 0], [0, 1, 0]])
    )
    assert m == pytest.approx(1.0) and np.isnan(aps[2])


def test_multilabel_evaluator_percent():
    ev = MultiLabelClassificationEvaluator("pam_test_unregistered2", distributed=False)
    ev.reset()
    inputs = [{"image_label": torch.tensor([1.0, 0.0])}, {"image_label": torch.tensor([0.0, 1.0])},
              {"image_label": torch.tensor([1.0, 1.0])}]
    outputs = [{"logits": torch.tensor([2.0, -1.0])}, {"logits": torch.tensor([-3.0, 0.5])},
               {"logits": torch.tensor([-4.0, 0.4])}]
    ev.process(inputs[:2], outputs[:2])
    ev.process(inputs[2:], outputs[2:])
    res = ev.evaluate()["classification"]
    # class 0: scores 2 (pos), -3 (neg), -4 (pos) -> AP = 0.5*1 + 0.5*(2/3); class 1: AP = 1
    assert res["mAP"] == pytest.approx(100 * (0.5 + 1 / 3 + 1.0) / 2)
    assert res["AP-1"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["configs/Base-PAM.yaml", "configs/VOC/pam_vgg16.yaml", "configs/COCO/pam_vgg16.yaml",
             "configs/toy/pam.yaml"],
)
def test_pam_configs_merge(path, bestie_cfg_factory):
    cfg = bestie_cfg_factory(path)
    assert cfg.MODEL.META_ARCHITECTURE == "PAMClassifier"
    assert cfg.SOLVER.OPTIMIZER == ("ADAM" if "toy" in path else "SGD") and cfg.SOLVER.NESTEROV
    assert cfg.INPUT.FORMAT == "RGB"
    assert cfg.SOLVER.MAX_ITER > max(cfg.SOLVER.STEPS)
    if "VOC" in path or "Base" in path:
        ipe = 10582 // 10
        assert tuple(cfg.SOLVER.STEPS) == (5 * ipe, 10 * ipe) and cfg.SOLVER.MAX_ITER == 15 * ipe
    if "toy" in path:
        assert cfg.MODEL.PAM.NUM_CLASSES == 5 and cfg.MODEL.DEVICE == "cpu"

"""Weight conversion (issue 14, items 1-2): ``bestie_d2.checkpoint`` + ``tools/convert_weights``.

Nothing is downloaded. Two kinds of checks:

* **authors' layouts** (no package builds the authors' models): random state dicts made from the
  key lists in ``tests/data/checkpoint_layouts`` must be covered 100 % both ways: every source key
  mapped or dropped with a reason, every tensor of the bestie_d2 config filled (0 missing,
  0 unexpected, equal shapes), through the real ``SafeCheckpointer`` load.
* **equivalence** where a package builds the source architecture (timm's HRNet, torchvision's
  ResNet / VGG) with random weights (BN statistics randomised too, so a swapped statistic
  would show): convert, load into bestie_d2's model, run the same image through both (each side
  normalising it the way its config says) and compare features: max |diff| <= 1e-4. The
  measured numbers are printed at the end of the module (``pytest -s``).
"""
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from bestie_d2.checkpoint import (
    ConversionError,
    UnknownKeysError,
    check_against_model,
    convert,
    load_state_dict_file,
    save_conversion,
)
from bestie_d2.checkpoint.core import model_state_shapes
from bestie_d2.config import load_config
from bestie_d2.engine.checkpoint import SafeCheckpointer
from detectron2.modeling import build_model
from layout_keys import read_layout

from repo_paths import REPO
TOL = 1e-4
MEASURED = OrderedDict()  # name -> (max |diff|, max |reference|)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def random_state(layout, seed=0):
    """A state dict with the layout's names/shapes: random floats, positive running_var, long
    counters."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for k, shape in layout.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    return sd


def cfg_of(config, *opts):
    return load_config(os.path.join(REPO, config), list(opts) + ["MODEL.DEVICE", "cpu"])


def randomise_bn(model, seed=0, forward=None):
    """Random BN affine parameters and statistics (default init would hide a swapped statistic).

    With ``forward`` (a callable running the model on a batch), the running statistics are then
    set to the statistics of that batch (momentum 1, one train-mode pass), so features stay O(1)
    through a deep random network and float32 rounding does not dominate the comparison."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.75)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)
        if forward is not None:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.momentum = 1.0
            model.train()
            forward(model, torch.randn(2, 3, 64, 64, generator=g))
            for m, mom in zip(bns, momenta):
                m.momentum = mom
    return model.eval()


def load_with_checkpointer(model, path):
    """The real MODEL.WEIGHTS path: SafeCheckpointer's file reading + detectron2's name loading;
    returns (missing, unexpected, incorrect_shapes) as the checkpointer reports them."""
    ck = SafeCheckpointer(model)
    inc = ck._load_model(ck._load_file(path))
    return list(inc.missing_keys), list(inc.unexpected_keys), list(inc.incorrect_shapes)


def assert_source_covered(conv, state):
    """Every source key is mapped or dropped, exactly once."""
    seen = [s for s, _ in conv.mapped] + [s for s, _ in conv.dropped]
    assert sorted(seen) == sorted(state), "source keys neither mapped nor dropped (or twice)"


def compare(name, ours, ref):
    """Record and check max |ours - ref|. float64 runs must agree to TOL; float32 runs to TOL
    relative to the feature scale (random deep networks amplify the last-bit differences of two
    normalisation formulas, e.g. (x - 123.675) / 58.395 vs (x / 255 - 0.485) / 0.229)."""
    assert ours.shape == ref.shape, name
    key = f"{name} [{str(ref.dtype).replace('torch.', '')}]"
    diff = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    old = MEASURED.get(key, (0.0, 0.0))
    MEASURED[key] = (max(diff, old[0]), max(scale, old[1]))
    limit = TOL if ref.dtype == torch.float64 else TOL * max(1.0, scale)
    assert diff <= limit, f"{key}: max |diff| {diff:.3g} > {limit:.3g} (max |ref| {scale:.3g})"


def same_tensor(name, ours, ref):
    """Both sides fed the identical normalised float32 tensor: the weights alone are compared
    (expected bit-identical: same operations in the same order)."""
    compare(name + ", same normalised tensor", ours, ref)
    assert torch.equal(ours, ref), f"{name}: not bit-identical on the same input tensor"


def set_float64(model, cfg=None):
    """``model.double()``, with its pixel statistics re-read from ``cfg`` in float64."""
    model.double()
    if cfg is not None and hasattr(model, "pixel_mean"):
        model.pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=torch.float64).view(-1, 1, 1)
        model.pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=torch.float64).view(-1, 1, 1)
    return model


def both_precisions(source, src_model, dst_model, cfg, target=None, *, src_cfg=None, extra=()):
    """Yield ``torch.float32`` (the weights as loaded from the converted file), then
    ``torch.float64``: both models in float64, pixel statistics from the configs in float64 and the
    weights converted again from the float64 source (the converter keeps the dtype), so that only
    float64 rounding separates the two sides. Back to float32 afterwards."""
    try:
        yield torch.float32
        set_float64(src_model, src_cfg)
        set_float64(dst_model, cfg)
        for m in extra:
            m.double()
        conv = convert(source, src_model.state_dict(), target, cfg)
        assert all(v.dtype in (torch.float64, torch.long) for v in conv.weights.values())
        incompatible = dst_model.load_state_dict(conv.weights, strict=False)
        assert not incompatible.unexpected_keys
        yield torch.float64
    finally:
        for m in (src_model, dst_model, *extra):
            m.float()


@pytest.fixture(scope="module", autouse=True)
def report_measured():
    yield
    if MEASURED:
        print("\nmeasured max |diff| (max |reference|) per conversion:")
        for k, (d, s) in MEASURED.items():
            print(f"  {k:55s} {d:.2e}  ({s:.3g})")


def rgb_image(h=64, w=64, seed=0):
    rng = np.random.RandomState(seed)
    return torch.as_tensor(rng.randint(0, 256, (3, h, w)).astype(np.float32))  # RGB, 0-255


def torchvision_normalise(rgb255, dtype=torch.float32):
    """torchvision's ImageNet preprocessing of a (3, H, W) 0-255 RGB image, computed in ``dtype``."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=dtype).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=dtype).view(3, 1, 1)
    return ((rgb255.to(dtype) / 255.0 - mean) / std)[None]


# ------------------------------------------------------------------------------------------------
# authors' layouts: 100 % key coverage both ways
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hrnet48_models():
    torch.manual_seed(0)
    return {
        sup: build_model(cfg_of(f"configs/VOC/bestie_HRNet48_{sup}_label.yaml")).eval()
        for sup in ("image", "point")
    }


@pytest.fixture(scope="module")
def authors_hrnet48_file(tmp_path_factory):
    layout = read_layout("authors_BESTIE_HRNet48.keys.tsv")
    state = random_state(layout)
    path = str(tmp_path_factory.mktemp("authors") / "BESTIE_HRNet48_image_label.pt")
    torch.save({"model": state}, path)  # the authors' file format
    return path, state


def test_authors_hrnet48_fills_both_voc_configs(authors_hrnet48_file, hrnet48_models, tmp_path):
    path, state = authors_hrnet48_file
    assert len(state) == 1764 and sum(not k.endswith("num_batches_tracked") for k in state) == 1472
    conv = convert("authors-bestie", load_state_dict_file(path))
    assert_source_covered(conv, state)
    assert (len(conv.mapped), len(conv.dropped), len(conv.fresh)) == (1764, 0, 0)
    # a name map: 1,460 + 292 counters verbatim under backbone., the 12 head tensors renamed
    verbatim = [s for s, d in conv.mapped if d == "backbone." + s]
    assert len(verbatim) == 1752
    heads = {s: d for s, d in conv.mapped if not d.startswith("backbone.")}
    assert heads["seg.0.weight"] == "heads.sem_head.0.weight" and heads["offset.2.bias"] == "heads.offset_head.2.bias"
    out = save_conversion(conv, str(tmp_path / "bestie_HRNet48.pth"))
    for sup, model in hrnet48_models.items():
        # the CLI's check builds the model on the meta device: same names and shapes
        meta = model_state_shapes(cfg_of(f"configs/VOC/bestie_HRNet48_{sup}_label.yaml"))
        assert [(k, v.shape) for k, v in meta.items()] == [(k, v.shape) for k, v in model.state_dict().items()]
        report = check_against_model(conv.weights, model)
        assert report.complete, (sup, report.summary())
        assert report.filled == report.num_model_keys == 1764
        missing, unexpected, shapes = load_with_checkpointer(model, out)
        assert (missing, unexpected, shapes) == ([], [], []), sup
        loaded = model.state_dict()
        for src, dst in conv.mapped:
            assert torch.equal(loaded[dst], state[src]), (sup, src, dst)


def test_authors_hrnet32_layout_fills_w32_config():
    state = random_state(read_layout("authors_BESTIE_HRNet32.keys.tsv"))
    conv = convert("authors-bestie", state)
    assert_source_covered(conv, state)
    model = build_model(cfg_of("configs/VOC/bestie_HRNet48_image_label.yaml", "MODEL.HRNET.WIDTH", 32))
    report = check_against_model(conv.weights, model)
    assert report.complete and report.filled == 1764, report.summary()


def test_authors_r50_layout_and_the_documented_difference(tmp_path):
    """Our R50 has two more 256-vectors than the authors' (445 vs 443 tensors): detectron2's ASPP
    image-pooling conv has a bias. The converter writes them as zeros (the same function)."""
    layout = read_layout("authors_BESTIE_R50.keys.tsv")
    state = random_state(layout)
    model = build_model(cfg_of("configs/VOC/bestie_R50_image_label.yaml"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: s for k, s in layout.items() if not k.endswith("num_batches_tracked")}
    assert (len(ours), len(theirs)) == (445, 443)
    conv = convert("authors-bestie", state)
    assert_source_covered(conv, state)
    assert len(conv.mapped) == 530 and not conv.dropped
    assert sorted(k for k, _ in conv.fresh) == [
        "heads.ins_decoder.aspp.convs.4.1.bias", "heads.sem_decoder.aspp.convs.4.1.bias"]
    assert all(torch.equal(conv.weights[k], torch.zeros(256)) for k, _ in conv.fresh)
    report = check_against_model(conv.weights, model)
    assert report.complete, report.summary()
    missing, unexpected, shapes = load_with_checkpointer(model, save_conversion(conv, str(tmp_path / "r50.pth")))
    assert (missing, unexpected, shapes) == ([], [], [])


def test_authors_pam_fills_voc_pam_config(tmp_path):
    layout = read_layout("authors_PAM_VGG16.keys.tsv")
    feats = random_state(OrderedDict((k, s) for k, s in layout.items() if not k.startswith("layer")))
    from bestie_d2.checkpoint.vgg import AUTHORS_PAM_ALIASES

    state = OrderedDict()
    for k in layout:  # the aliases are the same tensors as features.N (saved twice)
        name, part = k.split(".", 1) if k.startswith("layer") else (None, None)
        state[k] = feats[f"features.{AUTHORS_PAM_ALIASES[name]}.{part}"] if name else feats[k]
        assert tuple(state[k].shape) == layout[k]
    path = str(tmp_path / "PAM.pth")
    torch.save({"model": state, "epoch": 15, "iter": 15870}, path)  # the authors' PAM format
    conv = convert("authors-pam", load_state_dict_file(path))
    assert_source_covered(conv, state)
    assert (len(conv.mapped), len(conv.dropped), len(conv.fresh)) == (34, 26, 0)
    assert dict(conv.mapped)["extra_conv4.weight"] == "cam_conv.weight"
    assert dict(conv.mapped)["extra_conv1.bias"] == "extra_convs.0.bias"
    assert conv.config["MODEL.PAM.LAYERS"] == [0, 1, 2]
    model = build_model(cfg_of("configs/VOC/pam_vgg16.yaml", "MODEL.PAM.LAYERS", [0, 1, 2]))
    report = check_against_model(conv.weights, model)
    assert report.complete and report.filled == 34, report.summary()
    missing, unexpected, shapes = load_with_checkpointer(model, save_conversion(conv, str(tmp_path / "pam.pth")))
    assert (missing, unexpected, shapes) == ([], [], [])
    # a "second name" that is not the same tensor is refused
    bad = OrderedDict(state)
    bad["layer2_conv1.weight"] = bad["layer2_conv1.weight"] + 1
    with pytest.raises(ConversionError, match="differ"):
        convert("authors-pam", bad)


# ------------------------------------------------------------------------------------------------
# equivalence with packages that build the source architecture
# ------------------------------------------------------------------------------------------------
def test_timm_hrnet48_naming_and_features(hrnet48_models, tmp_path):
    timm = pytest.importorskip("timm")
    if "hrnet_w48" not in timm.list_models("hrnet*"):
        pytest.skip(f"timm {timm.__version__} has no hrnet_w48")
    torch.manual_seed(1)
    src = randomise_bn(timm.create_model("hrnet_w48", pretrained=False), seed=1, forward=lambda m, x: m.forward_features(x))
    state = src.state_dict()
    conv = convert("timm-hrnet", state)
    assert_source_covered(conv, state)
    # timm's naming of the backbone = the authors' (which loads hrnet_w48-8ef0771d.pth by name)
    authors = read_layout("authors_BESTIE_HRNet48.keys.tsv")
    authors_backbone = {k: s for k, s in authors.items() if k.split(".")[0] not in ("seg", "center", "offset")}
    assert {d[len("backbone."):]: tuple(conv.weights[d].shape) for _, d in conv.mapped} == authors_backbone
    dropped_tops = {s.split(".")[0] for s, _ in conv.dropped}
    assert dropped_tops == {"incre_modules", "downsamp_modules", "final_layer", "classifier", "stage4"}
    assert all(s.startswith(("stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3."))
               for s, _ in conv.dropped if s.startswith("stage4"))
    model = hrnet48_models["image"]
    missing, unexpected, shapes = load_with_checkpointer(model, save_conversion(conv, str(tmp_path / "w48.pth")))
    assert unexpected == [] and shapes == [] and all(k.startswith("heads.") for k in missing) and len(missing) == 12
    img = rgb_image()
    with torch.no_grad():
        x = torchvision_normalise(img)
        same_tensor("timm hrnet_w48 -> bestie HRNet-W48 (hr)", model.backbone(x)["hr"], timm_hr(src, x))
        for dtype in both_precisions("timm-hrnet", src, model, cfg_of("configs/VOC/bestie_HRNet48_image_label.yaml")):
            ours = model.backbone(model.normalize(img[None]))["hr"]
            ref = timm_hr(src, torchvision_normalise(img, dtype))
            compare("timm hrnet_w48 -> bestie HRNet-W48 (hr feature)", ours, ref)


def timm_hr(src, x):
    """timm HRNet's stride-4 branch after stage 4 (the feature the pose HRNet returns)."""
    x = src.act1(src.bn1(src.conv1(x)))
    x = src.act2(src.bn2(src.conv2(x)))
    return src.stages(x)[0]


def test_timm_hrnet32_naming():
    timm = pytest.importorskip("timm")
    src = timm.create_model("hrnet_w32", pretrained=False)
    conv = convert("timm-hrnet", src.state_dict())
    authors = read_layout("authors_BESTIE_HRNet32.keys.tsv")
    assert {d[len("backbone."):] for d in conv.weights} == {
        k for k in authors if k.split(".")[0] not in ("seg", "center", "offset")}


@pytest.fixture(scope="module")
def tv_resnet50():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(2)
    return randomise_bn(tvm.resnet50(weights=None), seed=2, forward=lambda m, x: m(x))


def tv_features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = {}
    for i, name in enumerate(("res2", "res3", "res4", "res5")):
        x = getattr(net, f"layer{i + 1}")(x)
        out[name] = x
    return out


@pytest.fixture(scope="module")
def bestie_r50():
    return build_model(cfg_of("configs/VOC/bestie_R50_image_label.yaml")).eval()


def test_torchvision_r50_to_bestie_r50(tv_resnet50, bestie_r50, tmp_path):
    cfg = cfg_of("configs/VOC/bestie_R50_image_label.yaml")
    conv = convert("torchvision-resnet", tv_resnet50.state_dict(), "bestie", cfg)
    assert_source_covered(conv, tv_resnet50.state_dict())
    assert [s for s, _ in conv.dropped] == ["fc.weight", "fc.bias"]
    assert conv.config["INPUT.FORMAT"] == "RGB" and conv.config["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    missing, unexpected, shapes = load_with_checkpointer(bestie_r50, save_conversion(conv, str(tmp_path / "r50.pth")))
    assert unexpected == [] and shapes == [] and missing and all(k.startswith("heads.") for k in missing)
    img = rgb_image(seed=3)
    with torch.no_grad():
        x = torchvision_normalise(img)
        same_tensor("torchvision resnet50 -> BESTIE R50 (res5)", bestie_r50.backbone(x)["res5"], tv_features(tv_resnet50, x)["res5"])
        # the float32 baseline: torchvision's own model fed the two normalisation formulas
        x_d2 = (img[None] - torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
        a, b = tv_features(tv_resnet50, x_d2)["res5"], tv_features(tv_resnet50, x)["res5"]
        MEASURED["baseline: torchvision resnet50 itself, d2 vs torchvision normalisation formula (res5) [float32]"] = (
            (a - b).abs().max().item(), b.abs().max().item())
        for dtype in both_precisions("torchvision-resnet", tv_resnet50, bestie_r50, cfg, "bestie"):
            ours = bestie_r50.backbone(bestie_r50.normalize(img[None]))
            ref = tv_features(tv_resnet50, torchvision_normalise(img, dtype))
            for name in ref:
                compare(f"torchvision resnet50 -> BESTIE R50 ({name})", ours[name], ref[name])


@pytest.mark.parametrize("convention", ["BGR-std1", "RGB-torchvision"])
def test_torchvision_r50_to_maskrcnn_bottom_up(tv_resnet50, tmp_path, convention):
    opts = ["MODEL.RESNETS.STRIDE_IN_1X1", False]
    if convention == "RGB-torchvision":
        opts += ["INPUT.FORMAT", "RGB", "MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53],
                 "MODEL.PIXEL_STD", [58.395, 57.12, 57.375]]
    cfg = cfg_of("configs/VOC/mask_rcnn_R50_FPN_refine.yaml", *opts)
    conv = convert("torchvision-resnet", tv_resnet50.state_dict(), "maskrcnn", cfg)
    assert_source_covered(conv, tv_resnet50.state_dict())
    # FrozenBN has no batch counters: dropped (and listed)
    assert sum("num_batches_tracked" in s for s, _ in conv.dropped) == 53
    model = build_model(cfg).eval()
    missing, unexpected, shapes = load_with_checkpointer(model, save_conversion(conv, str(tmp_path / "mrcnn.pth")))
    assert unexpected == [] and shapes == [] and not any(k.startswith("backbone.bottom_up.") for k in missing)
    img = rgb_image(seed=4)
    pixels = img if cfg.INPUT.FORMAT == "RGB" else img.flip(0)  # what the data loader would give
    with torch.no_grad():
        if convention == "RGB-torchvision":
            x = torchvision_normalise(img)
            same_tensor("torchvision resnet50 -> Mask R-CNN bottom-up (res5, RGB-torchvision)",
                        model.backbone.bottom_up(x)["res5"], tv_features(tv_resnet50, x)["res5"])
        for dtype in both_precisions("torchvision-resnet", tv_resnet50, model, cfg, "maskrcnn"):
            ours = model.backbone.bottom_up(model.preprocess_image([{"image": pixels}]).tensor)
            ref = tv_features(tv_resnet50, torchvision_normalise(img, dtype))
            for name in ref:
                compare(f"torchvision resnet50 -> Mask R-CNN bottom-up ({name}, {convention})", ours[name], ref[name])
    with pytest.raises(ConversionError, match="STRIDE_IN_1X1"):
        convert("torchvision-resnet", tv_resnet50.state_dict(), "maskrcnn",
                cfg_of("configs/VOC/mask_rcnn_R50_FPN_refine.yaml"))


def test_torchvision_r101_to_d2_resnet():
    tvm = pytest.importorskip("torchvision.models")
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_resnet_backbone

    torch.manual_seed(5)
    src = randomise_bn(tvm.resnet101(weights=None), seed=5, forward=lambda m, x: m(x))
    cfg = cfg_of("configs/VOC/bestie_R50_image_label.yaml", "MODEL.RESNETS.DEPTH", 101, "MODEL.RESNETS.NORM", "BN")
    conv = convert("torchvision-resnet", src.state_dict(), "bestie", cfg)
    assert conv.config["MODEL.RESNETS.DEPTH"] == 101
    holder = torch.nn.Module()  # the ResNet where a BESTIE model has it (backbone.*)
    holder.backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    assert set(conv.weights) == set(holder.state_dict())
    holder.load_state_dict(conv.weights, strict=True)
    img = rgb_image(seed=6)
    with torch.no_grad():
        for dtype in both_precisions("torchvision-resnet", src, holder, cfg, "bestie"):
            mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=dtype).view(1, 3, 1, 1)
            std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=dtype).view(1, 3, 1, 1)
            ours = holder.backbone((img[None].to(dtype) - mean) / std)
            ref = tv_features(src, torchvision_normalise(img, dtype))
            compare("torchvision resnet101 -> d2 R101 (res5)", ours["res5"], ref["res5"])


def test_torchvision_vgg16_to_pam_and_load_time_renaming(tmp_path):
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(7)
    src = randomise_bn(tvm.vgg16(weights=None), seed=7)
    state = src.state_dict()
    conv = convert("torchvision-vgg16", state)
    assert_source_covered(conv, state)
    assert (len(conv.mapped), len(conv.dropped)) == (26, 6)
    cfg = cfg_of("configs/VOC/pam_vgg16.yaml")
    model = build_model(cfg).eval()
    out = save_conversion(conv, str(tmp_path / "vgg16_pam.pth"))
    missing, unexpected, shapes = load_with_checkpointer(model, out)
    assert unexpected == [] and shapes == [] and sorted({k.split(".")[0] for k in missing}) == ["cam_conv", "extra_convs"]
    img = rgb_image(seed=8)
    with torch.no_grad():
        x = torchvision_normalise(img)
        same_tensor("torchvision vgg16 -> PAM VGG-16 D1 (conv4)", model.backbone.features[:23](x), src.features[:23](x))
    # D1 = the same weights with pool 4 at stride 1 and block 5 dilated: built from torchvision's modules
    d1 = torch.nn.Sequential(*[src.features[i] for i in range(30)])
    d1[23] = torch.nn.MaxPool2d(3, 1, 1)
    for i in (24, 26, 28):
        d1[i] = torch.nn.Conv2d(512, 512, 3, padding=2, dilation=2)
        d1[i].load_state_dict(src.features[i].state_dict())
    with torch.no_grad():
        for dtype in both_precisions("torchvision-vgg16", src, model, cfg, extra=[d1]):
            x, x_ref = model.normalize(img[None]), torchvision_normalise(img, dtype)
            # blocks 1-4 (conv4, before the pool) are torchvision's VGG-16 as is
            compare("torchvision vgg16 -> PAM VGG-16 D1 (conv4)", model.backbone.features[:23](x), src.features[:23](x_ref))
            compare("torchvision vgg16 -> PAM VGG-16 D1 (conv5)", model.backbone(x)["conv5"], d1(x_ref))
    # the torchvision file given directly as MODEL.WEIGHTS (load-time renaming, same name map)
    raw = str(tmp_path / "vgg16-raw.pth")
    torch.save(state, raw)
    direct = build_model(cfg)
    SafeCheckpointer(direct).load(raw)
    a, b = model.state_dict(), direct.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))


def test_bestie_resnet_to_maskrcnn_adapts_channels_and_std(bestie_r50, tmp_path):
    """A trained BESTIE R50 (RGB, torchvision std) initialises the VOC Mask R-CNN (BGR, std 1):
    the stem is reordered and rescaled, so the bottom-up features are those of BESTIE's backbone."""
    randomise_bn(bestie_r50, seed=9, forward=lambda m, x: m.backbone(x * 50))
    cfg = cfg_of("configs/VOC/mask_rcnn_R50_FPN_refine.yaml", "MODEL.RESNETS.STRIDE_IN_1X1", False)
    state = bestie_r50.state_dict()
    conv = convert("bestie-resnet", state, "maskrcnn", cfg)
    assert_source_covered(conv, state)
    assert all(s.startswith("heads.") or s.endswith("num_batches_tracked") for s, _ in conv.dropped)
    model = build_model(cfg).eval()
    missing, unexpected, shapes = load_with_checkpointer(model, save_conversion(conv, str(tmp_path / "init.pth")))
    assert unexpected == [] and shapes == [] and not any(k.startswith("backbone.bottom_up.") for k in missing)
    img = rgb_image(seed=10)
    with torch.no_grad():
        for dtype in both_precisions("bestie-resnet", bestie_r50, model, cfg, "maskrcnn",
                                     src_cfg=cfg_of("configs/VOC/bestie_R50_image_label.yaml")):
            ours = model.backbone.bottom_up(model.preprocess_image([{"image": img.flip(0)}]).tensor)
            ref = bestie_r50.backbone(bestie_r50.normalize(img[None]))
            compare("bestie R50 -> Mask R-CNN bottom-up (res5, RGB/std58 -> BGR/std1)", ours["res5"], ref["res5"])


# ------------------------------------------------------------------------------------------------
# errors, file formats, the command line
# ------------------------------------------------------------------------------------------------
def test_wrong_source_and_unknown_keys_are_loud(tv_resnet50):
    with pytest.raises(UnknownKeysError, match="--source"):
        convert("timm-hrnet", tv_resnet50.state_dict())
    with pytest.raises(UnknownKeysError):
        convert("torchvision-vgg16", tv_resnet50.state_dict())
    sd = dict(tv_resnet50.state_dict())
    sd["layer1.0.se.fc.weight"] = torch.zeros(1)
    with pytest.raises(UnknownKeysError, match="layer1.0.se.fc.weight"):
        convert("torchvision-resnet", sd)
    with pytest.raises(ConversionError, match="not an authors' BESTIE"):
        convert("authors-bestie", sd)
    with pytest.raises(ConversionError, match="converts for"):
        convert("torchvision-vgg16", {}, "maskrcnn")
    with pytest.raises(ConversionError, match="mean"):
        convert("torchvision-resnet", tv_resnet50.state_dict(), "maskrcnn",
                cfg_of("configs/VOC/mask_rcnn_R50_FPN_refine.yaml", "MODEL.RESNETS.STRIDE_IN_1X1", False,
                       "MODEL.PIXEL_MEAN", [0.0, 0.0, 0.0]))


def test_input_file_variants(tmp_path):
    sd = OrderedDict([("features.0.weight", torch.randn(4, 3, 3, 3)), ("features.0.bias", torch.randn(4))])
    variants = {
        "plain.pth": sd,
        "model.pt": {"model": sd, "epoch": 3},
        "state_dict.pth": {"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items())},
    }
    for name, obj in variants.items():
        torch.save(obj, str(tmp_path / name))
        got = load_state_dict_file(str(tmp_path / name))
        assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd), name
    from safetensors.torch import save_file

    save_file(dict(sd), str(tmp_path / "w.safetensors"))
    assert sorted(load_state_dict_file(str(tmp_path / "w.safetensors"))) == sorted(sd)

    class Evil:  # pickled code is refused, as by SafeCheckpointer
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": sd, "x": Evil()}, str(tmp_path / "evil.pth"))
    with pytest.raises(ConversionError, match="weights_only"):
        load_state_dict_file(str(tmp_path / "evil.pth"))
    with pytest.raises(ConversionError, match=".pth"):
        save_conversion(convert("torchvision-vgg16", sd), str(tmp_path / "out.pkl"))


def test_cli_writes_checks_and_reports(tmp_path, capsys):
    from bestie_d2.tools.convert_weights import cli, main

    tvm = pytest.importorskip("torchvision.models")
    vgg = str(tmp_path / "vgg16.pth")
    torch.save(tvm.vgg16(weights=None).features.state_dict(prefix="features."), vgg)
    out = str(tmp_path / "pam_init.pth")
    res = main(["--source", "torchvision-vgg16", "--input", vgg, "--output", out,
                "--config-file", os.path.join(REPO, "configs/VOC/pam_vgg16.yaml"), "MODEL.PAM.NUM_CLASSES", "5"])
    text = capsys.readouterr().out
    assert res["ok"] and res["output"] == out and os.path.isfile(out)
    assert (res["mapped"], res["dropped"], res["fresh"]) == (26, 0, 0)
    assert res["check"]["unexpected"] == [] and res["check"]["filled"] == 26
    assert "mapped : 26 tensors" in text and "keep the model's init" in text and f"MODEL.WEIGHTS {out}" in text
    # the toy PAM config (quarter width, BN, conv3 only) does not fit -> exit 1, nothing written
    bad = str(tmp_path / "bad.pth")
    assert cli(["--source", "torchvision-vgg16", "--input", vgg, "--output", bad,
                "--config-file", os.path.join(REPO, "configs/toy/pam.yaml")]) == 1
    text = capsys.readouterr().out
    assert not os.path.exists(bad) and "NOT written" in text and "shape mismatch" in text and "unexpected:" in text
    # a file the source does not describe -> exit 2 with the reason
    assert cli(["--source", "timm-hrnet", "--input", vgg, "--output", bad]) == 2
    assert "not part of the 'timm-hrnet' layout" in capsys.readouterr().err

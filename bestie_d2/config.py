"""Configuration: every key bestie_d2 adds (``add_bestie_config``), and how config files load.

``add_bestie_config(cfg)`` adds each key with its default and meaning, one function per concept.
Defaults reproduce the authors' training code (docs/method.md Appendix A); where the paper/supplement
disagrees, the paper's value is one config change away (noted per key).

Config files build on each other through ``_BASE_``; a base may also be
``"model_zoo://<path>"``, a file of detectron2's model zoo (``detectron2.model_zoo.get_config_file``),
so the Mask R-CNN configs build on the zoo's ``Base-RCNN-FPN.yaml`` instead of a copy of it. Both
ways of making a config read such files:

* Detectron2's own pattern, as in every Detectron2 project's ``train_net.py``:
  ``cfg = detectron2.config.get_cfg(); add_bestie_config(cfg); cfg.merge_from_file(path)`` —
  :func:`add_bestie_config` also lets that ``cfg`` resolve ``model_zoo://`` bases
  (:func:`enable_model_zoo_bases`);
* :func:`get_cfg` / :func:`load_config` (the tools), whose nodes are :class:`BestieCfgNode`.

Unknown keys, in a file or among the ``KEY VALUE`` overrides, raise :class:`ConfigKeyError`: one
line naming the key and the nearest existing keys (:func:`merge_overrides`, :func:`merge_config_file`).
"""
import difflib
import logging
import os
import re
from typing import List, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as d2_get_cfg

__all__ = [
    "add_bestie_config", "get_cfg", "load_config", "BestieCfgNode", "MODEL_ZOO_PREFIX",
    "enable_model_zoo_bases", "resolve_model_zoo_path", "ConfigKeyError", "config_keys", "nearest_keys",
    "check_override_keys", "merge_overrides", "merge_config_file",
    "add_data_config", "add_augmentation_config", "add_model_config", "add_inference_config",
    "add_refinement_config", "add_backbone_config", "add_pam_config", "add_solver_config",
    "add_evaluation_config", "add_pointrend_refiner_config",
]

#: ``_BASE_`` prefix naming a config of detectron2's model zoo, e.g. ``model_zoo://Base-RCNN-FPN.yaml``.
MODEL_ZOO_PREFIX = "model_zoo://"


def add_bestie_config(cfg):
    """Add the BESTIE / PAM / pseudo-label keys to ``cfg`` in place. Safe to call twice.

    One function per concept (each adds its own nodes): data, augmentation, model, inference,
    refinement, backbones, PAM, solver, evaluation, and the PointRend refinement stage's keys. Also
    lets ``cfg.merge_from_file`` read the ``model_zoo://`` base of the Mask R-CNN configs
    (:func:`enable_model_zoo_bases`), so every file of ``configs/`` merges into
    ``detectron2.config.get_cfg()`` after this call.
    """
    enable_model_zoo_bases(cfg)
    if hasattr(cfg, "BESTIE"):  # already added
        return
    for add in (add_data_config, add_augmentation_config, add_model_config, add_inference_config,
                add_refinement_config, add_backbone_config, add_pam_config, add_solver_config,
                add_evaluation_config, add_pointrend_refiner_config):
        add(cfg)


def add_data_config(cfg):
    """``BESTIE.SUPERVISION / NUM_CLASSES``, ``BESTIE.DATA.*`` (per-image inputs, data check) and
    ``BESTIE.PSEUDO_COCO.*`` (the pseudo-label json of the Mask R-CNN stage)."""
    cfg.BESTIE = CN()
    # Supervision route: "image" (image-level labels, PAM peak cues) or "point" (one GT point per
    # instance, read from Center_points).
    cfg.BESTIE.SUPERVISION = "image"
    # Number of thing classes (VOC 20, COCO 80). Semantic maps have NUM_CLASSES + 1 labels (0 = bg).
    cfg.BESTIE.NUM_CLASSES = 20

    cfg.BESTIE.DATA = CN()
    # Folder of cue files "<id>.txt" for the image-label route. "" = the record's default
    # (<root>/Peak_points). Lines: "x y c conf", x/y in original-image pixels, c in 0..C-1.
    cfg.BESTIE.DATA.PEAK_POINTS_DIR = ""
    # Folder of point-label files "<id>.txt" for the point route. "" = <root>/Center_points.
    cfg.BESTIE.DATA.CENTER_POINTS_DIR = ""
    # Folder of WSSS semantic maps "<id>.png" (0 bg, c+1 class c, 255 ignore). "" = <root>/WSSS_maps.
    cfg.BESTIE.DATA.WSSS_DIR = ""
    # Keep a cue only if its confidence is strictly greater than this. Code: 0.7; supplement: 0.5.
    cfg.BESTIE.DATA.CUE_THRESHOLD = 0.7
    # What to do with a training image whose image / cue file / WSSS map is missing: "error" (one
    # clear error before training starts) or "skip" (dropped; the count is logged once).
    cfg.BESTIE.DATA.MISSING_INPUT = "error"
    # Data check at the start of BESTIE training (bestie_d2.data.input_check): "full" parses every
    # cue file and reads every WSSS map (bad files: one error listing them all; class conventions
    # counted); "exists" only checks that the files exist (faster, for very large sets).
    cfg.BESTIE.DATA.CHECK_INPUTS = "full"
    # Data check: a data set whose cues / WSSS maps disagree with the image labels (1-based cue
    # classes, WSSS maps without the background shift) on more than this fraction of its images
    # is an error naming the likely cause; fewer: a warning.
    cfg.BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION = 0.05
    # Data check: the same for images whose kept cues all lie outside their class's WSSS region
    # (swapped/rescaled coordinates?); higher, since weak WSSS maps legitimately miss some objects.
    cfg.BESTIE.DATA.MAX_CUES_OUTSIDE_FRACTION = 0.3

    # Pseudo-label COCO json for the Mask R-CNN refinement stage (docs/method.md §9), registered by
    # bestie_d2.maskrcnn_refinement.register_pseudo_coco_from_config (train_net.setup calls it).
    cfg.BESTIE.PSEUDO_COCO = CN()
    cfg.BESTIE.PSEUDO_COCO.NAME = ""  # data set name to register the json as ("" = register nothing)
    cfg.BESTIE.PSEUDO_COCO.JSON = ""  # path of the json written by bestie_d2.tools.export_pseudo_coco
    cfg.BESTIE.PSEUDO_COCO.IMAGE_ROOT = ""  # folder of the json's file_name ("" = the source data set's images)
    cfg.BESTIE.PSEUDO_COCO.SOURCE_DATASET = ""  # data set the labels were predicted on (classes/ids copied from it)

    # ------------------------------------------------------------------------------------------
    # BESTIE training augmentation (docs/method.md §1.2)
    # ------------------------------------------------------------------------------------------


def add_augmentation_config(cfg):
    """``BESTIE.INPUT.*``: BESTIE training augmentation and target drawing (docs/method.md §1.2)."""
    cfg.BESTIE.INPUT = CN()
    # Photometric distortion (brightness, contrast, hue; no saturation, no channel swap).
    cfg.BESTIE.INPUT.PHOTOMETRIC = True
    cfg.BESTIE.INPUT.BRIGHTNESS_DELTA = 16.0  # add U[-d, d] with p = 0.5
    cfg.BESTIE.INPUT.CONTRAST_RANGE = [0.5, 1.5]  # multiply by U[lo, hi] with p = 0.5
    cfg.BESTIE.INPUT.HUE_DELTA = 36.0  # degrees, add U[-d, d] with p = 0.5
    # Long side resized to RESIZE_LONG (449), sides then made 32k+1 (RESIZE_FACTOR = 32).
    cfg.BESTIE.INPUT.RESIZE_LONG = 449
    cfg.BESTIE.INPUT.RESIZE_FACTOR = 32
    # Random scale factors, chosen uniformly.
    cfg.BESTIE.INPUT.SCALES = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    # How the WSSS map is resized (resize and random-scale steps): "nearest_exact" (cv2
    # INTER_NEAREST_EXACT, pixel centres aligned with the bilinear image) or "nearest" (cv2
    # INTER_NEAREST, the authors' code: up to half a pixel off). docs/method.md §13, BENCHMARKS.md.
    cfg.BESTIE.INPUT.MAP_INTERPOLATION = "nearest_exact"
    # Square crop side; smaller images are padded with the image placed randomly inside.
    cfg.BESTIE.INPUT.CROP_SIZE = 416
    # Image padding value (RGB, 0..255); the semantic map is padded with 0 (background).
    cfg.BESTIE.INPUT.PAD_VALUE = [123, 116, 103]
    cfg.BESTIE.INPUT.FLIP = True
    # Gaussian sigma of center targets, in input pixels (kernel side 6*sigma+3).
    cfg.BESTIE.INPUT.GAUSSIAN_SIGMA = 6.0
    # Semantic components smaller than this (pixels) never become pseudo instances.
    cfg.BESTIE.INPUT.MIN_INSTANCE_AREA = 50
    # Max points per class carried to the model (for the point-route refinement).
    cfg.BESTIE.INPUT.MAX_POINTS_PER_CLASS = 128


def add_model_config(cfg):
    """``MODEL.BESTIE.*``: decoder / heads (docs/method.md §3) and loss weights (§4)."""
    cfg.MODEL.BESTIE = CN()
    # "PanopticDeepLabDecoder" (ResNet route, §3.1) or "LightHeads" (HRNet route, §3.2).
    cfg.MODEL.BESTIE.DECODER = "PanopticDeepLabDecoder"
    # Backbone features fed to the decoder, low to high stride (the last goes through ASPP).
    cfg.MODEL.BESTIE.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BESTIE.NORM = "BN"  # "BN", "SyncBN" (multi-GPU; CPU falls back to BN), "GN"
    cfg.MODEL.BESTIE.BN_MOMENTUM = 0.01  # applied to every BN of the model (HRNet route: 0.1)
    cfg.MODEL.BESTIE.ASPP_CHANNELS = 256
    cfg.MODEL.BESTIE.ASPP_DILATIONS = [3, 6, 9]
    cfg.MODEL.BESTIE.ASPP_DROPOUT = 0.5
    cfg.MODEL.BESTIE.SEM_PROJECT_CHANNELS = [128, 64, 32]  # res4, res3, res2 projections
    cfg.MODEL.BESTIE.SEM_DECODER_CHANNELS = 256
    cfg.MODEL.BESTIE.SEM_HEAD_CHANNELS = 256
    cfg.MODEL.BESTIE.INS_ASPP_CHANNELS = 256
    cfg.MODEL.BESTIE.INS_PROJECT_CHANNELS = [64, 32, 16]
    cfg.MODEL.BESTIE.INS_DECODER_CHANNELS = 128
    cfg.MODEL.BESTIE.CENTER_HEAD_CHANNELS = 128
    cfg.MODEL.BESTIE.OFFSET_HEAD_CHANNELS = 32
    # LightHeads (HRNet) hidden width.
    cfg.MODEL.BESTIE.LIGHT_HEAD_CHANNELS = 256
    # Loss.
    cfg.MODEL.BESTIE.IGNORE_VALUE = 255
    cfg.MODEL.BESTIE.SEM_LOSS_TOP_K = 0.2  # DeepLabCE hard-pixel fraction (supp: 1.0 = plain CE)
    cfg.MODEL.BESTIE.SEM_LOSS_WEIGHT = 1.0
    cfg.MODEL.BESTIE.CENTER_LOSS_WEIGHT = 200.0
    cfg.MODEL.BESTIE.OFFSET_LOSS_WEIGHT = 0.01


def add_inference_config(cfg):
    """``MODEL.BESTIE.TEST.*``: decoding at test time (docs/method.md §6)."""
    cfg.MODEL.BESTIE.TEST = CN()
    cfg.MODEL.BESTIE.TEST.CENTER_THRESHOLD = 0.1
    cfg.MODEL.BESTIE.TEST.NMS_KERNEL = 41
    cfg.MODEL.BESTIE.TEST.MIN_AREA = 50  # predicted semantic components below this are dropped
    cfg.MODEL.BESTIE.TEST.FLIP = False  # flip TTA (authors: off for image labels, on for points)
    cfg.MODEL.BESTIE.TEST.USE_CLUSTERING = True  # center clustering also at test (authors' code)
    # Test images are resized to multiples of this before the network (authors: ceil to 32).
    cfg.MODEL.BESTIE.TEST.SIZE_DIVISIBILITY = 32
    # Use the image labels to zero absent classes at test ("val_clean"; uses GT, off by default).
    cfg.MODEL.BESTIE.TEST.USE_IMAGE_LABELS = False
    # Decode with the image's point labels instead of predicted centers: one instance per point
    # (input "points", from the mapper's points file; uses labels: for the pseudo labels of the
    # point route's training images, never for evaluation). Off by default.
    cfg.MODEL.BESTIE.TEST.USE_POINTS = False


def add_refinement_config(cfg):
    """``MODEL.BESTIE.REFINE.*`` (self-refinement, docs/method.md §5) and ``MODEL.BESTIE.CLUSTER.*``
    (center clustering, supplement §1)."""
    cfg.MODEL.BESTIE.REFINE = CN()
    cfg.MODEL.BESTIE.REFINE.ENABLED = True
    cfg.MODEL.BESTIE.REFINE.START_ITER = 0  # refinement runs when iter >= START_ITER
    cfg.MODEL.BESTIE.REFINE.CENTER_THRESHOLD = 0.3
    cfg.MODEL.BESTIE.REFINE.NMS_KERNEL = 41
    cfg.MODEL.BESTIE.REFINE.MAX_INSTANCES = 5  # components grouped into more are skipped
    cfg.MODEL.BESTIE.REFINE.MIN_AREA = 50
    # Component engine backend of refinement and decoding: "auto" (OpenCV for CPU tensors, the Triton
    # kernels for CUDA tensors, plain torch on other devices or without Triton), "opencv", "torch" or
    # "triton"; identical outputs (bestie_d2.component_engine).
    cfg.MODEL.BESTIE.COMPONENTS_BACKEND = "auto"

    # Center clustering (supplement §1).
    cfg.MODEL.BESTIE.CLUSTER = CN()
    cfg.MODEL.BESTIE.CLUSTER.OFFSET_THRESHOLD = 2.5  # |offset| below this, in input pixels
    cfg.MODEL.BESTIE.CLUSTER.AREA = 21  # expected area of a candidate region (pixels)
    cfg.MODEL.BESTIE.CLUSTER.AREA_EPS = 3  # keep regions with AREA - EPS < area < AREA + EPS
    cfg.MODEL.BESTIE.CLUSTER.MIN_HEATMAP = 0.05  # candidate kept only if center map > this there
    cfg.MODEL.BESTIE.CLUSTER.MERGE_DISTANCE = 100.0  # add a candidate only this far from peaks (px)


def add_backbone_config(cfg):
    """``MODEL.HRNET.*`` (docs/method.md §3.2) and ``MODEL.VGG.*`` (VGG-16 D1, §8)."""
    cfg.MODEL.HRNET = CN()
    cfg.MODEL.HRNET.WIDTH = 48  # 32 or 48 (branch widths W, 2W, 4W, 8W)
    cfg.MODEL.HRNET.BN_MOMENTUM = 0.1
    # Stage layout: modules per stage 2..4 and blocks per branch (pose-HRNet defaults).
    cfg.MODEL.HRNET.NUM_MODULES = [1, 4, 3]
    cfg.MODEL.HRNET.NUM_BLOCKS = 4
    cfg.MODEL.HRNET.OUT_FEATURES = ["hr"]  # the fused stride-4 feature

    # VGG-16 D1, the PAM classifier's backbone.
    cfg.MODEL.VGG = CN()
    cfg.MODEL.VGG.OUT_FEATURES = ["conv5"]  # stride 8
    cfg.MODEL.VGG.WIDTH_MULT = 1.0  # <1 for tiny CPU models (tests / toy)
    cfg.MODEL.VGG.NORM = ""  # "" = no norm (paper); "BN" after every conv (random-init toy model only)


def add_pam_config(cfg):
    """``MODEL.PAM.*`` (the PAM classifier, docs/method.md §8), ``INPUT.PAM.*`` and ``PAM_CUES.*``
    (cue extraction and ``cam_to_semantic``, §8.3)."""
    cfg.MODEL.PAM = CN()
    cfg.MODEL.PAM.NUM_CLASSES = 20
    cfg.MODEL.PAM.IN_FEATURE = "conv5"
    cfg.MODEL.PAM.EXTRA_CHANNELS = 512
    # Which of the three extra convs are followed by PAM (0, 1, 2); default: the last only
    # (supp Table 3). The authors' code: [0, 1, 2]. [] = plain CAM.
    cfg.MODEL.PAM.LAYERS = [2]
    cfg.MODEL.PAM.ALPHA = 0.7
    # Learning-rate multipliers of the new layers over SOLVER.BASE_LR (weights x10, biases x20
    # with SOLVER.BIAS_LR_FACTOR = 2).
    cfg.MODEL.PAM.NEW_LAYER_LR_MULT = 10.0

    cfg.INPUT.PAM = CN()
    cfg.INPUT.PAM.RESIZE = 384  # square resize (aspect not kept)
    cfg.INPUT.PAM.CROP = 321
    cfg.INPUT.PAM.COLOR_JITTER = [0.3, 0.3, 0.3, 0.1]  # brightness, contrast, saturation, hue
    cfg.INPUT.PAM.TEST_SIZE = 321  # square test size for cue extraction

    # Cue extraction (extract_cues, docs/method.md §8.3).
    cfg.PAM_CUES = CN()
    cfg.PAM_CUES.SMOOTH_KERNEL = 3
    cfg.PAM_CUES.NMS_KERNEL = 15
    cfg.PAM_CUES.TOP_K = 25
    cfg.PAM_CUES.CONF_THRESHOLD = 0.1
    cfg.PAM_CUES.FLIP = True
    # cam_to_semantic: a pixel is background when every labelled class CAM is below this.
    cfg.PAM_CUES.BG_THRESHOLD = 0.25
    # How cam_to_semantic turns CAMs into semantic maps: "none" = the threshold/argmax rule above
    # (plain CAM baseline); "grabcut" = per labelled class, OpenCV GrabCut seeded by the CAM
    # (bestie_d2.modeling.cam_grabcut; BG_THRESHOLD is then unused). A training-free stand-in for
    # the DeepLab-V2-on-DRS refinement behind the paper's WSSS maps; ~0.1 s per 160 px image.
    cfg.PAM_CUES.SEMANTIC_REFINE = "none"
    cfg.PAM_CUES.GRABCUT = CN()
    cfg.PAM_CUES.GRABCUT.FG_THRESHOLD = 0.5  # CAM >= this: sure foreground of the class
    cfg.PAM_CUES.GRABCUT.PROBABLE_FG_THRESHOLD = 0.1  # CAM >= this: probable foreground
    cfg.PAM_CUES.GRABCUT.BG_THRESHOLD = 0.0  # every CAM < this: sure background (0 = none)
    cfg.PAM_CUES.GRABCUT.ITERATIONS = 3


def add_solver_config(cfg):
    """``SOLVER.OPTIMIZER / POLY_LR_POWER / CHECK_FINITE_LOSS / AMP.PRECISION / CHECKPOINT_MAX_KEEP``
    (``bestie_d2.engine.solver``, ``bestie_d2.engine.train_loop``, ``bestie_d2.engine.checkpoint_retention``)."""
    cfg.SOLVER.OPTIMIZER = "ADAM"  # "ADAM" (BESTIE) or "SGD" (PAM, Mask R-CNN)
    cfg.SOLVER.POLY_LR_POWER = 0.9  # for LR_SCHEDULER_NAME "WarmupPolyLR"
    # Stop training with a clear error when the loss is NaN/inf (last good checkpoint kept).
    cfg.SOLVER.CHECK_FINITE_LOSS = True
    # Autocast precision of SOLVER.AMP.ENABLED training: "float16" (with a gradient scaler) or
    # "bfloat16" (bestie_d2.engine.train_loop.PrecisionAMPTrainer).
    cfg.SOLVER.AMP.PRECISION = "float16"
    # Periodic checkpoints (every SOLVER.CHECKPOINT_PERIOD iterations) kept in OUTPUT_DIR: the
    # newest N, older ones deleted (bestie_d2.engine.checkpoint_retention); 0 = keep all. An R50
    # BESTIE checkpoint is ~634 MiB with its Adam state. model_final.pth is always kept.
    cfg.SOLVER.CHECKPOINT_MAX_KEEP = 3


def add_evaluation_config(cfg):
    """``TEST.VOC_IOU_THRESHOLDS`` (the IoUs of VOCInstanceEvaluator) and ``TEST.EVALUATORS``
    (which evaluators run, ``bestie_d2.engine.trainer.build_evaluator``)."""
    cfg.TEST.VOC_IOU_THRESHOLDS = [0.25, 0.5, 0.7, 0.75]
    # Evaluators of every test set: [] = the data set's metadata evaluator_type ("voc_instance"
    # for VOC and the toy set, "coco" for COCO); else any of "voc_instance", "coco", e.g.
    # ["voc_instance", "coco"] for COCO mask AP on VOC as well (COCOEvaluator converts the records).
    cfg.TEST.EVALUATORS = []


def add_pointrend_refiner_config(cfg):
    """Detectron2's own PointRend keys (``MODEL.POINT_HEAD.*``, ``MODEL.IMPLICIT_POINTREND.*``,
    ``MODEL.ROI_MASK_HEAD.{IN_FEATURES, FC_DIM, NUM_FC, OUTPUT_SIDE_RESOLUTION, POINT_HEAD_ON}``,
    ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA``, ``INPUT.COLOR_AUG_SSD``; defaults and meanings in
    ``detectron2/projects/point_rend/config.py``), so that the PointRend refinement configs
    (``configs/*/pointrend_*refine.yaml``) merge into every bestie config. Importing
    ``detectron2.projects.point_rend`` also registers ``PointRendROIHeads`` and
    ``PointRendMaskHead``; no key of another model reads these. Skipped when already present."""
    from detectron2.projects.point_rend import add_pointrend_config  # (registers the PointRend heads)

    if not hasattr(cfg.MODEL, "POINT_HEAD"):
        add_pointrend_config(cfg)


class BestieCfgNode(CN):
    """detectron2's ``CfgNode`` whose ``_BASE_`` may also be ``"model_zoo://<path in the zoo>"``.

    fvcore joins a relative ``_BASE_`` to the folder of the file that names it before loading it,
    so the prefix is looked for anywhere in the path; the part after it goes to
    ``detectron2.model_zoo.get_config_file`` (the zoo's YAMLs ship with both detectron2 installs).
    """

    @classmethod
    def load_yaml_with_base(cls, filename, allow_unsafe=False):
        return super().load_yaml_with_base(resolve_model_zoo_path(filename), allow_unsafe=allow_unsafe)


def resolve_model_zoo_path(filename: str) -> str:
    """``.../model_zoo://Base-RCNN-FPN.yaml`` -> the zoo's file; any other path unchanged."""
    if MODEL_ZOO_PREFIX not in filename:
        return filename
    from .compat import quiet_library_imports

    with quiet_library_imports():  # detectron2.model_zoo imports the deprecated pkg_resources
        from detectron2 import model_zoo

    return model_zoo.get_config_file(filename.split(MODEL_ZOO_PREFIX, 1)[1])


def enable_model_zoo_bases(cfg) -> None:
    """Let ``cfg.merge_from_file`` resolve ``model_zoo://`` bases, for any detectron2 ``CfgNode``
    (e.g. ``detectron2.config.get_cfg()``); called by :func:`add_bestie_config`.

    detectron2's ``merge_from_file`` (0.6 and main) reads the file with
    ``self.load_yaml_with_base``: an entry in this node's instance ``__dict__`` (where yacs keeps
    its own per-node flags) takes the place of the class's reader for this node only, and
    :meth:`BestieCfgNode.load_yaml_with_base` resolves the prefix at every level of the base
    chain. Nothing global changes; clones and pickles of ``cfg`` keep it.
    """
    if not isinstance(cfg, BestieCfgNode):
        cfg.__dict__["load_yaml_with_base"] = BestieCfgNode.load_yaml_with_base


def get_cfg() -> BestieCfgNode:
    """detectron2's default config with every bestie_d2 key, as a :class:`BestieCfgNode`.

    The keys are added before the conversion, so every node is a ``BestieCfgNode`` (yacs refuses
    to merge a file into a node of another class); add further nodes with ``type(cfg)()``.
    """
    cfg = d2_get_cfg()
    add_bestie_config(cfg)
    return BestieCfgNode(cfg)


# ------------------------------------------------------------------------------------------------
# Unknown keys: one line naming the key and the nearest existing ones
# ------------------------------------------------------------------------------------------------
class ConfigKeyError(KeyError):
    """A config key that does not exist (a typo, a key of another version), or a tool option
    placed among the ``KEY VALUE`` overrides. ``str()`` is the one-line message (not ``repr``)."""

    def __init__(self, message: str, keys: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.keys = list(keys)

    def __str__(self):
        return self.message


_YACS_UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: (\S+)")
_OPTION = re.compile(r"^--?[A-Za-z][A-Za-z0-9_-]*(=.*)?$")


def config_keys(cfg, prefix: str = "") -> List[str]:
    """Every leaf key of ``cfg`` as a dotted name (``MODEL.BESTIE.TEST.FLIP``), in config order."""
    out = []
    for k, v in cfg.items():
        full = prefix + k
        if isinstance(v, CN):
            out.extend(config_keys(v, full + "."))
        else:
            out.append(full)
    return out


def nearest_keys(key: str, keys: Sequence[str], n: int = 3) -> List[str]:
    """Up to ``n`` keys of ``keys`` closest to ``key`` (whole dotted name first, else its last part)."""
    close = difflib.get_close_matches(key, keys, n=n, cutoff=0.75)
    if close:
        return close
    last = key.rsplit(".", 1)[-1]
    by_last = {}
    for k in keys:
        by_last.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    names = difflib.get_close_matches(last, list(by_last), n=n, cutoff=0.6)
    return [k for name in names for k in by_last[name]][:n]


def _exists(cfg, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return False
        node = node[part]
    return True


def _unknown_key_message(key: str, cfg, where: str) -> str:
    near = nearest_keys(key, config_keys(cfg))
    hint = f"; nearest existing keys: {', '.join(near)}" if near else "; no similar key exists"
    return f"unknown config key {key} ({where}){hint}"


def check_override_keys(cfg, opts: Sequence[str], where: str = "command-line override") -> None:
    """Check ``KEY VALUE`` overrides before yacs merges them: every key must exist in ``cfg`` and
    no tool option may stand among them. All problems in one :class:`ConfigKeyError` line."""
    opts = [str(o) for o in (opts or [])]
    options = [o for o in opts[0::2] if _OPTION.match(o)]
    if len(opts) % 2 and not options:
        options = [o for o in opts if _OPTION.match(o)]
    if options:
        raise ConfigKeyError(
            f"option {options[0]} stands among the KEY VALUE config overrides ({' '.join(opts[:4])}"
            f"{' ...' if len(opts) > 4 else ''}): put the tool's options before the first KEY VALUE pair",
            options,
        )
    if len(opts) % 2:
        raise ConfigKeyError(f"the {where}s are not KEY VALUE pairs: {len(opts)} items, the last is {opts[-1]!r}")
    bad = [k for k in opts[0::2] if not (_exists(cfg, k) or cfg.key_is_deprecated(k))]
    if bad:
        raise ConfigKeyError("; ".join(_unknown_key_message(k, cfg, where) for k in bad), bad)


def merge_overrides(cfg, opts: Sequence[str]) -> None:
    """:func:`check_override_keys`, then ``cfg.merge_from_list(opts)``."""
    check_override_keys(cfg, opts)
    cfg.merge_from_list(list(opts or []))


def merge_config_file(cfg, config_file: str) -> None:
    """``cfg.merge_from_file(config_file)``; an unknown key in it (or in its ``_BASE_`` files) is a
    :class:`ConfigKeyError` naming the file, the key and the nearest existing keys."""
    try:
        cfg.merge_from_file(config_file)
    except KeyError as e:
        m = _YACS_UNKNOWN_KEY.search(str(e.args[0]) if e.args else "")
        if m is None:
            raise
        key = m.group(1)
        raise ConfigKeyError(_unknown_key_message(key, cfg, f"in {config_file} or its _BASE_ files"), [key]) from None


def load_config(config_file, opts=(), *, freeze=True):
    """:func:`get_cfg` + the YAML file + ``KEY VALUE`` overrides.

    A missing file is a clear ``FileNotFoundError``; an unknown key (file or overrides) a one-line
    :class:`ConfigKeyError`; ``MODEL.DEVICE cuda*`` falls back to ``cpu`` (with a warning) when
    CUDA is unavailable. The shared first step of every bestie_d2 tool.
    """
    import torch

    cfg = get_cfg()
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file!r} does not exist")
    merge_config_file(cfg, config_file)
    merge_overrides(cfg, opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: using MODEL.DEVICE cpu")
        cfg.MODEL.DEVICE = "cpu"
    if freeze:
        cfg.freeze()
    return cfg

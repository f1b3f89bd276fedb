"""``add_bestie_config(cfg)``: every configuration key bestie_d2 adds, with its default and meaning.

Defaults reproduce the authors' training code (docs/method.md Appendix A); where the paper/supplement
disagrees, the paper's value is one config change away (noted per key).
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_bestie_config", "load_config"]


def add_bestie_config(cfg):
    """Add the BESTIE / PAM / pseudo-label keys to ``cfg`` in place. Safe to call twice."""
    if hasattr(cfg, "BESTIE"):  # already added
        return
    _C = cfg

    # ------------------------------------------------------------------------------------------
    # Data sets and their optional per-image inputs
    # ------------------------------------------------------------------------------------------
    _C.BESTIE = CN()
    # Supervision route: "image" (image-level labels, PAM peak cues) or "point" (one GT point per
    # instance, read from Center_points).
    _C.BESTIE.SUPERVISION = "image"
    # Number of thing classes (VOC 20, COCO 80). Semantic maps have NUM_CLASSES + 1 labels (0 = bg).
    _C.BESTIE.NUM_CLASSES = 20

    _C.BESTIE.DATA = CN()
    # Folder of cue files "<id>.txt" for the image-label route. "" = the record's default
    # (<root>/Peak_points). Lines: "x y c conf", x/y in original-image pixels, c in 0..C-1.
    _C.BESTIE.DATA.PEAK_POINTS_DIR = ""
    # Folder of point-label files "<id>.txt" for the point route. "" = <root>/Center_points.
    _C.BESTIE.DATA.CENTER_POINTS_DIR = ""
    # Folder of WSSS semantic maps "<id>.png" (0 bg, c+1 class c, 255 ignore). "" = <root>/WSSS_maps.
    _C.BESTIE.DATA.WSSS_DIR = ""
    # Keep a cue only if its confidence is strictly greater than this. Code: 0.7; supplement: 0.5.
    _C.BESTIE.DATA.CUE_THRESHOLD = 0.7
    # What to do with a training image whose image / cue file / WSSS map is missing: "error" (one
    # clear error before training starts) or "skip" (dropped; the count is logged once).
    _C.BESTIE.DATA.MISSING_INPUT = "error"
    # Data check at the start of BESTIE training (bestie_d2.data.input_check): "full" parses every
    # cue file and reads every WSSS map (bad files: one error listing them all; class conventions
    # counted); "exists" only checks that the files exist (faster, for very large sets).
    _C.BESTIE.DATA.CHECK_INPUTS = "full"
    # Data check: a data set whose cues / WSSS maps disagree with the image labels (1-based cue
    # classes, WSSS maps without the background shift) on more than this fraction of its images
    # is an error naming the likely cause; fewer: a warning.
    _C.BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION = 0.05
    # Data check: the same for images whose kept cues all lie outside their class's WSSS region
    # (swapped/rescaled coordinates?); higher, since weak WSSS maps legitimately miss some objects.
    _C.BESTIE.DATA.MAX_CUES_OUTSIDE_FRACTION = 0.3

    # Pseudo-label COCO json for the Mask R-CNN refinement stage (docs/method.md §9), registered by
    # bestie_d2.data.pseudo_coco.register_pseudo_coco_from_config (train_net.setup calls it).
    _C.BESTIE.PSEUDO_COCO = CN()
    _C.BESTIE.PSEUDO_COCO.NAME = ""  # data set name to register the json as ("" = register nothing)
    _C.BESTIE.PSEUDO_COCO.JSON = ""  # path of the json written by bestie_d2.tools.export_pseudo_coco
    _C.BESTIE.PSEUDO_COCO.IMAGE_ROOT = ""  # folder of the json's file_name ("" = the source data set's images)
    _C.BESTIE.PSEUDO_COCO.SOURCE_DATASET = ""  # data set the labels were predicted on (classes/ids copied from it)

    # ------------------------------------------------------------------------------------------
    # BESTIE training augmentation (docs/method.md §1.2)
    # ------------------------------------------------------------------------------------------
    _C.BESTIE.INPUT = CN()
    # Photometric distortion (brightness, contrast, hue; no saturation, no channel swap).
    _C.BESTIE.INPUT.PHOTOMETRIC = True
    _C.BESTIE.INPUT.BRIGHTNESS_DELTA = 16.0  # add U[-d, d] with p = 0.5
    _C.BESTIE.INPUT.CONTRAST_RANGE = [0.5, 1.5]  # multiply by U[lo, hi] with p = 0.5
    _C.BESTIE.INPUT.HUE_DELTA = 36.0  # degrees, add U[-d, d] with p = 0.5
    # Long side resized to RESIZE_LONG (449), sides then made 32k+1 (RESIZE_FACTOR = 32).
    _C.BESTIE.INPUT.RESIZE_LONG = 449
    _C.BESTIE.INPUT.RESIZE_FACTOR = 32
    # Random scale factors, chosen uniformly.
    _C.BESTIE.INPUT.SCALES = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    # Square crop side; smaller images are padded with the image placed randomly inside.
    _C.BESTIE.INPUT.CROP_SIZE = 416
    # Image padding value (RGB, 0..255); the semantic map is padded with 0 (background).
    _C.BESTIE.INPUT.PAD_VALUE = [123, 116, 103]
    _C.BESTIE.INPUT.FLIP = True
    # Gaussian sigma of center targets, in input pixels (kernel side 6*sigma+3).
    _C.BESTIE.INPUT.GAUSSIAN_SIGMA = 6.0
    # Semantic components smaller than this (pixels) never become pseudo instances.
    _C.BESTIE.INPUT.MIN_INSTANCE_AREA = 50
    # Max points per class carried to the model (for the point-route refinement).
    _C.BESTIE.INPUT.MAX_POINTS_PER_CLASS = 128

    # ------------------------------------------------------------------------------------------
    # BESTIE model (docs/method.md §3) and loss (§4)
    # ------------------------------------------------------------------------------------------
    _C.MODEL.BESTIE = CN()
    # "PanopticDeepLabDecoder" (ResNet route, §3.1) or "LightHeads" (HRNet route, §3.2).
    _C.MODEL.BESTIE.DECODER = "PanopticDeepLabDecoder"
    # Backbone features fed to the decoder, low to high stride (the last goes through ASPP).
    _C.MODEL.BESTIE.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    _C.MODEL.BESTIE.NORM = "BN"  # "BN", "SyncBN" (multi-GPU; CPU falls back to BN), "GN"
    _C.MODEL.BESTIE.BN_MOMENTUM = 0.01  # applied to every BN of the model (HRNet route: 0.1)
    _C.MODEL.BESTIE.ASPP_CHANNELS = 256
    _C.MODEL.BESTIE.ASPP_DILATIONS = [3, 6, 9]
    _C.MODEL.BESTIE.ASPP_DROPOUT = 0.5
    _C.MODEL.BESTIE.SEM_PROJECT_CHANNELS = [128, 64, 32]  # res4, res3, res2 projections
    _C.MODEL.BESTIE.SEM_DECODER_CHANNELS = 256
    _C.MODEL.BESTIE.SEM_HEAD_CHANNELS = 256
    _C.MODEL.BESTIE.INS_ASPP_CHANNELS = 256
    _C.MODEL.BESTIE.INS_PROJECT_CHANNELS = [64, 32, 16]
    _C.MODEL.BESTIE.INS_DECODER_CHANNELS = 128
    _C.MODEL.BESTIE.CENTER_HEAD_CHANNELS = 128
    _C.MODEL.BESTIE.OFFSET_HEAD_CHANNELS = 32
    # LightHeads (HRNet) hidden width.
    _C.MODEL.BESTIE.LIGHT_HEAD_CHANNELS = 256
    # Loss.
    _C.MODEL.BESTIE.IGNORE_VALUE = 255
    _C.MODEL.BESTIE.SEM_LOSS_TOP_K = 0.2  # DeepLabCE hard-pixel fraction (supp: 1.0 = plain CE)
    _C.MODEL.BESTIE.SEM_LOSS_WEIGHT = 1.0
    _C.MODEL.BESTIE.CENTER_LOSS_WEIGHT = 200.0
    _C.MODEL.BESTIE.OFFSET_LOSS_WEIGHT = 0.01

    # Inference (§6).
    _C.MODEL.BESTIE.TEST = CN()
    _C.MODEL.BESTIE.TEST.CENTER_THRESHOLD = 0.1
    _C.MODEL.BESTIE.TEST.NMS_KERNEL = 41
    _C.MODEL.BESTIE.TEST.MIN_AREA = 50  # predicted semantic components below this are dropped
    _C.MODEL.BESTIE.TEST.FLIP = False  # flip TTA (authors: off for image labels, on for points)
    _C.MODEL.BESTIE.TEST.USE_CLUSTERING = True  # center clustering also at test (authors' code)
    # Test images are resized to multiples of this before the network (authors: ceil to 32).
    _C.MODEL.BESTIE.TEST.SIZE_DIVISIBILITY = 32
    # Use the image labels to zero absent classes at test ("val_clean"; uses GT, off by default).
    _C.MODEL.BESTIE.TEST.USE_IMAGE_LABELS = False

    # Self-refinement (§5).
    _C.MODEL.BESTIE.REFINE = CN()
    _C.MODEL.BESTIE.REFINE.ENABLED = True
    _C.MODEL.BESTIE.REFINE.START_ITER = 0  # refinement runs when iter >= START_ITER
    _C.MODEL.BESTIE.REFINE.CENTER_THRESHOLD = 0.3
    _C.MODEL.BESTIE.REFINE.NMS_KERNEL = 41
    _C.MODEL.BESTIE.REFINE.MAX_INSTANCES = 5  # components grouped into more are skipped
    _C.MODEL.BESTIE.REFINE.MIN_AREA = 50

    # Center clustering (supplement §1).
    _C.MODEL.BESTIE.CLUSTER = CN()
    _C.MODEL.BESTIE.CLUSTER.OFFSET_THRESHOLD = 2.5  # |offset| below this, in input pixels
    _C.MODEL.BESTIE.CLUSTER.AREA = 21  # expected area of a candidate region (pixels)
    _C.MODEL.BESTIE.CLUSTER.AREA_EPS = 3  # keep regions with AREA - EPS < area < AREA + EPS
    _C.MODEL.BESTIE.CLUSTER.MIN_HEATMAP = 0.05  # candidate kept only if center map > this there
    _C.MODEL.BESTIE.CLUSTER.MERGE_DISTANCE = 100.0  # add a candidate only this far from peaks (px)

    # ------------------------------------------------------------------------------------------
    # HRNet backbone (docs/method.md §3.2)
    # ------------------------------------------------------------------------------------------
    _C.MODEL.HRNET = CN()
    _C.MODEL.HRNET.WIDTH = 48  # 32 or 48 (branch widths W, 2W, 4W, 8W)
    _C.MODEL.HRNET.BN_MOMENTUM = 0.1
    # Stage layout: modules per stage 2..4 and blocks per branch (pose-HRNet defaults).
    _C.MODEL.HRNET.NUM_MODULES = [1, 4, 3]
    _C.MODEL.HRNET.NUM_BLOCKS = 4
    _C.MODEL.HRNET.OUT_FEATURES = ["hr"]  # the fused stride-4 feature

    # ------------------------------------------------------------------------------------------
    # VGG-16 D1 backbone and the PAM classifier (docs/method.md §8)
    # ------------------------------------------------------------------------------------------
    _C.MODEL.VGG = CN()
    _C.MODEL.VGG.OUT_FEATURES = ["conv5"]  # stride 8
    _C.MODEL.VGG.WIDTH_MULT = 1.0  # <1 for tiny CPU models (tests / toy)
    _C.MODEL.VGG.NORM = ""  # "" = no norm (paper); "BN" after every conv (random-init toy model only)

    _C.MODEL.PAM = CN()
    _C.MODEL.PAM.NUM_CLASSES = 20
    _C.MODEL.PAM.IN_FEATURE = "conv5"
    _C.MODEL.PAM.EXTRA_CHANNELS = 512
    # Which of the three extra convs are followed by PAM (0, 1, 2); default: the last only
    # (supp Table 3). The authors' code: [0, 1, 2]. [] = plain CAM.
    _C.MODEL.PAM.LAYERS = [2]
    _C.MODEL.PAM.ALPHA = 0.7
    # Learning-rate multipliers of the new layers over SOLVER.BASE_LR (weights x10, biases x20
    # with SOLVER.BIAS_LR_FACTOR = 2).
    _C.MODEL.PAM.NEW_LAYER_LR_MULT = 10.0

    _C.INPUT.PAM = CN()
    _C.INPUT.PAM.RESIZE = 384  # square resize (aspect not kept)
    _C.INPUT.PAM.CROP = 321
    _C.INPUT.PAM.COLOR_JITTER = [0.3, 0.3, 0.3, 0.1]  # brightness, contrast, saturation, hue
    _C.INPUT.PAM.TEST_SIZE = 321  # square test size for cue extraction

    # Cue extraction (extract_cues, docs/method.md §8.3).
    _C.PAM_CUES = CN()
    _C.PAM_CUES.SMOOTH_KERNEL = 3
    _C.PAM_CUES.NMS_KERNEL = 15
    _C.PAM_CUES.TOP_K = 25
    _C.PAM_CUES.CONF_THRESHOLD = 0.1
    _C.PAM_CUES.FLIP = True
    # cam_to_semantic: a pixel is background when every labelled class CAM is below this.
    _C.PAM_CUES.BG_THRESHOLD = 0.25
    # How cam_to_semantic turns CAMs into semantic maps: "none" = the threshold/argmax rule above
    # (plain CAM baseline); "grabcut" = per labelled class, OpenCV GrabCut seeded by the CAM
    # (bestie_d2.modeling.cam_grabcut; BG_THRESHOLD is then unused). A training-free stand-in for
    # the DeepLab-V2-on-DRS refinement behind the paper's WSSS maps; ~0.1 s per 160 px image.
    _C.PAM_CUES.SEMANTIC_REFINE = "none"
    _C.PAM_CUES.GRABCUT = CN()
    _C.PAM_CUES.GRABCUT.FG_THRESHOLD = 0.5  # CAM >= this: sure foreground of the class
    _C.PAM_CUES.GRABCUT.PROBABLE_FG_THRESHOLD = 0.1  # CAM >= this: probable foreground
    _C.PAM_CUES.GRABCUT.BG_THRESHOLD = 0.0  # every CAM < this: sure background (0 = none)
    _C.PAM_CUES.GRABCUT.ITERATIONS = 3

    # ------------------------------------------------------------------------------------------
    # Solver additions
    # ------------------------------------------------------------------------------------------
    _C.SOLVER.OPTIMIZER = "ADAM"  # "ADAM" (BESTIE) or "SGD" (PAM, Mask R-CNN)
    _C.SOLVER.POLY_LR_POWER = 0.9  # for LR_SCHEDULER_NAME "WarmupPolyLR"
    # Stop training with a clear error when the loss is NaN/inf (last good checkpoint kept).
    _C.SOLVER.CHECK_FINITE_LOSS = True

    # ------------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------------
    _C.TEST.VOC_IOU_THRESHOLDS = [0.25, 0.5, 0.7, 0.75]


def load_config(config_file, opts=(), *, freeze=True):
    """``get_cfg()`` + :func:`add_bestie_config` + the YAML file + ``KEY VALUE`` overrides.

    A missing file is a clear ``FileNotFoundError``; ``MODEL.DEVICE cuda*`` falls back to ``cpu``
    (with a warning) when CUDA is unavailable. The shared first step of every bestie_d2 tool.
    """
    import logging
    import os

    import torch
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_bestie_config(cfg)
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file!r} does not exist")
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: using MODEL.DEVICE cpu")
        cfg.MODEL.DEVICE = "cpu"
    if freeze:
        cfg.freeze()
    return cfg

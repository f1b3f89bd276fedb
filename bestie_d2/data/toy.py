"""Deterministic generator of the embedded "toy" instance-segmentation data set (docs/architecture.md §5).

Five shape classes (:data:`TOY_CLASSES`), each with its own colour family and texture:

==========  ==================  ===========================================
class       colour family       texture
==========  ==================  ===========================================
disc        red                 radial shading (bright centre)
square      blue                stripes along a random direction
triangle    green               checker pattern
cross       yellow / orange     linear gradient
ring        purple              grainy noise
==========  ==================  ===========================================

Images are 128-192 px on each side (sizes vary), on a smooth low-saturation background with
noise and thin clutter lines. Each image holds 1-5 instances; about half of the instances repeat a
class already present, and many are placed touching / overlapping an earlier one (later
instances occlude earlier ones; every instance keeps at least 40 % of its area and one dominant
connected part).

On-disk layout (VOC style, see ``datasets/README.md``)::

    <root>/JPEGImages/<id>.jpg                 RGB, JPEG quality 95
    <root>/SegmentationClass/<id>.png          palette PNG: 0 bg, c+1 class c (no 255)
    <root>/SegmentationObject/<id>.png         palette PNG: 0 bg, 1..N instance index
    <root>/ImageSets/Segmentation/{train,val}.txt
    <root>/cls_labels/{train,val}_cls.txt      "<id> c1 c2 ..." (sorted class indices 0..4)
    <root>/Center_points/<id>.txt              one "x y c 1.000" per instance (GT point labels)
    <root>/annotations/instances_{train,val}.json   COCO instances (RLE, category ids 1..5,
                                                    image ids = the string ids)
    <root>/.toy_stamp.json                     generator version + parameters

Ids are ``toy_train_000012`` / ``toy_val_000003``. Image ``i`` of a split depends only on
``(seed, split, i)``, so the same seed gives byte-identical files.
"""
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..utils.io import new_file_mode
from .errors import BestieDataError
from .points import write_points

__all__ = ["TOY_CLASSES", "TOY_GENERATOR_VERSION", "generate_toy_dataset", "toy_image_ids"]

logger = logging.getLogger(__name__)

TOY_CLASSES: Tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring")
#: Bumped whenever the generated pixels / files change; part of the cache stamp.
TOY_GENERATOR_VERSION = 1
STAMP_FILE = ".toy_stamp.json"

_SPLIT_CODES = {"train": 1, "val": 2}
_BASE_RGB = np.array(
    [
        [205, 50, 45],  # disc: red
        [45, 85, 210],  # square: blue
        [45, 170, 65],  # triangle: green
        [230, 190, 35],  # cross: yellow/orange
        [170, 55, 190],  # ring: purple
    ],
    dtype=np.float32,
)
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SCALE = 1 << _SHIFT


def toy_image_ids(split: str, n: int) -> List[str]:
    """The ids of the first ``n`` images of ``split`` ("train" or "val")."""
    return [f"toy_{split}_{i:06d}" for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------
def _fill_poly(canvas, pts):
    cv2.fillPoly(canvas, [np.round(np.asarray(pts) * _SCALE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)


def _ellipse(canvas, cx, cy, ax, ay, angle, value):
    cv2.ellipse(
        canvas,
        (int(round(cx * _SCALE)), int(round(cy * _SCALE))),
        (int(round(ax * _SCALE)), int(round(ay * _SCALE))),
        float(angle), 0.0, 360.0, int(value), -1, cv2.LINE_8, _SHIFT,
    )


def _rotated_rect(cx, cy, w, h, angle):
    return cv2.boxPoints(((float(cx), float(cy)), (float(w), float(h)), float(angle)))


def _shape_mask(cls: int, H: int, W: int, cx: float, cy: float, r: float, angle: float, rng) -> np.ndarray:
    canvas = np.zeros((H, W), dtype=np.uint8)
    name = TOY_CLASSES[cls]
    if name == "disc":
        _ellipse(canvas, cx, cy, r, r * rng.uniform(0.82, 1.0), angle, 1)
    elif name == "square":
        s = 1.6 * r
        _fill_poly(canvas, _rotated_rect(cx, cy, s, s * rng.uniform(0.85, 1.0), angle))
    elif name == "triangle":
        R = 1.25 * r
        t = np.deg2rad(angle) + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
        _fill_poly(canvas, np.stack([cx + R * np.cos(t), cy + R * np.sin(t)], 1))
    elif name == "cross":
        L, T = 2.1 * r, 0.62 * r
        _fill_poly(canvas, _rotated_rect(cx, cy, L, T, angle))
        _fill_poly(canvas, _rotated_rect(cx, cy, L, T, angle + 90.0))
    elif name == "ring":
        _ellipse(canvas, cx, cy, r, r, 0.0, 1)
        inner = r * rng.uniform(0.5, 0.6)
        _ellipse(canvas, cx, cy, inner, inner, 0.0, 0)
    else:  # pragma: no cover
        raise AssertionError(name)
    return canvas.astype(bool)


def _texture(cls: int, H: int, W: int, cx: float, cy: float, r: float, angle: float, rng) -> np.ndarray:
    """Full-frame (H, W, 3) float32 appearance of one instance."""
    colour = _BASE_RGB[cls] + rng.normal(0.0, 16.0, 3).astype(np.float32)
    colour = colour * np.float32(rng.uniform(0.82, 1.12))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    th = np.deg2rad(angle)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    name = TOY_CLASSES[cls]
    if name == "disc":
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(r, 1.0)
        f = 1.18 - 0.38 * np.clip(d, 0, 1)
    elif name == "square":
        period = rng.uniform(5.0, 8.0)
        f = np.where(np.sin(2 * np.pi * u / period) > 0, 1.05, 0.72)
    elif name == "triangle":
        period = rng.uniform(5.0, 7.0)
        chk = (np.floor(u / period) + np.floor(v / period)) % 2
        f = np.where(chk > 0, 1.05, 0.78)
    elif name == "cross":
        f = 0.85 + 0.3 * np.clip((u + r) / (2 * r + 1e-6), 0, 1)
    else:  # ring
        f = 1.0 + rng.normal(0.0, 0.14, (H, W)).astype(np.float32)
    return (f[..., None].astype(np.float32) * colour[None, None, :]).astype(np.float32)


def _background(rng, H: int, W: int) -> np.ndarray:
    gh, gw = rng.integers(3, 7, size=2)
    low = rng.uniform(50, 200, (gh, gw, 3)).astype(np.float32)
    low = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)
    grey = low.mean(-1, keepdims=True)
    bg = 0.45 * low + 0.55 * grey  # low saturation
    mid = rng.normal(0.0, 12.0, (12, 12, 1)).astype(np.float32)
    bg = bg + cv2.resize(mid, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    for _ in range(int(rng.integers(0, 5))):  # clutter lines
        p0 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        p1 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        g = float(rng.uniform(40, 220))
        col = tuple(float(g + d) for d in rng.normal(0, 10, 3))
        cv2.line(bg, p0, p1, col, int(rng.integers(1, 3)), cv2.LINE_AA)
    return np.clip(bg, 0, 255)


def _largest_component_fraction(mask: np.ndarray) -> float:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.max()) / float(areas.sum())


def _render_image(rng) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """One image: ``rgb`` (H,W,3) uint8, ``obj`` (H,W) uint8 instance index, class per instance."""
    H, W = (int(v) for v in rng.integers(128, 193, size=2))
    canvas = _background(rng, H, W)
    n = int(rng.choice([1, 2, 3, 4, 5], p=[0.14, 0.24, 0.26, 0.2, 0.16]))
    obj = np.zeros((H, W), dtype=np.uint8)
    classes: List[int] = []
    full_areas: List[int] = []
    centres: List[Tuple[float, float, float]] = []
    for _ in range(n):
        if classes and rng.random() < 0.5:
            cls = int(classes[int(rng.integers(len(classes)))])
        else:
            cls = int(rng.integers(len(TOY_CLASSES)))
        for _attempt in range(40):
            r = float(rng.uniform(12.0, 27.0))
            if centres and rng.random() < 0.45:  # touching / overlapping an earlier instance
                jx, jy, jr = centres[int(rng.integers(len(centres)))]
                phi = rng.uniform(0, 2 * np.pi)
                d = (jr + r) * rng.uniform(0.78, 1.02)
                cx, cy = jx + d * np.cos(phi), jy + d * np.sin(phi)
            else:
                cx, cy = rng.uniform(0.6 * r, W - 0.6 * r), rng.uniform(0.6 * r, H - 0.6 * r)
            angle = float(rng.uniform(0.0, 360.0))
            mask = _shape_mask(cls, H, W, cx, cy, r, angle, rng)
            area = int(mask.sum())
            if area < 150:
                continue
            new_obj = obj.copy()
            new_obj[mask] = len(classes) + 1
            ok = True
            for j, full in enumerate(full_areas + [area]):
                vis = new_obj == j + 1
                a = int(vis.sum())
                if a < max(100, 0.4 * full) or _largest_component_fraction(vis) < 0.85:
                    ok = False
                    break
            if not ok:
                continue
            tex = _texture(cls, H, W, cx, cy, r, angle, rng)
            canvas[mask] = tex[mask]
            obj = new_obj
            classes.append(cls)
            full_areas.append(area)
            centres.append((cx, cy, r))
            break
    if not classes:  # pragma: no cover (the first object always fits)
        raise RuntimeError("toy generator could not place any object")
    canvas = cv2.GaussianBlur(canvas, (3, 3), 0.7)
    canvas = canvas + rng.normal(0.0, 6.0, canvas.shape).astype(np.float32)
    rgb = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return rgb, obj, classes


def _instance_point(mask: np.ndarray) -> Tuple[int, int]:
    """The mask pixel farthest from the mask boundary (image border counts as boundary): (x, y)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    idx = int(np.argmax(dist))
    y, x = divmod(idx, mask.shape[1])
    assert mask[y, x]
    return x, y


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _write_split(out: str, split: str, n: int, seed: int) -> None:
    from .datasets.label_maps import write_label_map  # (import here: datasets imports this module)

    ids = toy_image_ids(split, n)
    cls_lines, images, anns = [], [], []
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_CODES[split], i]))
        rgb, obj, classes = _render_image(rng)
        H, W = obj.shape
        cls_map = np.zeros_like(obj)
        for k, c in enumerate(classes):
            cls_map[obj == k + 1] = c + 1
        ok = cv2.imwrite(
            os.path.join(out, "JPEGImages", image_id + ".jpg"),
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )
        if not ok:  # pragma: no cover
            raise OSError(f"cv2.imwrite failed for {image_id}.jpg in {out}")
        write_label_map(os.path.join(out, "SegmentationClass", image_id + ".png"), cls_map)
        write_label_map(os.path.join(out, "SegmentationObject", image_id + ".png"), obj)
        pts = []
        images.append({"id": image_id, "file_name": image_id + ".jpg", "height": H, "width": W})
        for k, c in enumerate(classes):
            m = obj == k + 1
            x, y = _instance_point(m)
            pts.append((x, y, c, 1.0))
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            bbox = [float(v) for v in mask_util.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": c + 1,
                    "segmentation": rle,
                    "area": float(m.sum()),
                    "bbox": bbox,
                    "iscrowd": 0,
                }
            )
        write_points(os.path.join(out, "Center_points", image_id + ".txt"), pts)
        cls_lines.append(" ".join([image_id] + [str(c) for c in sorted(set(classes))]))
    with open(os.path.join(out, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
        f.write("".join(i + "\n" for i in ids))
    with open(os.path.join(out, "cls_labels", f"{split}_cls.txt"), "w") as f:
        f.write("".join(line + "\n" for line in cls_lines))
    coco = {
        "info": {
            "description": f"bestie_d2 toy data set, split {split}",
            "version": str(TOY_GENERATOR_VERSION),
        },
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": c + 1, "name": name, "supercategory": "shape"} for c, name in enumerate(TOY_CLASSES)
        ],
    }
    with open(os.path.join(out, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(coco, f, separators=(",", ":"))


def _stamp(seed: int, num_train: int, num_val: int) -> Dict:
    return {
        "generator": "bestie_d2.data.toy",
        "generator_version": TOY_GENERATOR_VERSION,
        "seed": int(seed),
        "num_train": int(num_train),
        "num_val": int(num_val),
    }


def _read_stamp(root: str):
    try:
        with open(os.path.join(root, STAMP_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_toy_dataset(root, *, seed: int = 0, num_train: int = 300, num_val: int = 60, force: bool = False) -> str:
    """Generate the toy data set under ``root`` (once) and return ``root``.

    Nothing is done when ``root`` already holds a data set stamped with the same generator
    version and parameters (unless ``force``). Otherwise everything is written into a temporary
    sibling folder which is then renamed to ``root``, so ``root`` is never half-written. An
    existing ``root`` that is not a toy data set (no stamp, not empty) is never deleted unless
    ``force=True``. Regenerating (other parameters, a new generator version, ``force``) replaces
    the whole folder, including files written there later (cues, WSSS maps).
    """
    root = os.path.abspath(os.fspath(root))
    for name, v in (("seed", seed), ("num_train", num_train), ("num_val", num_val)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"generate_toy_dataset: {name} must be a non-negative integer, got {v!r}")
    if num_train + num_val == 0:
        raise ValueError("generate_toy_dataset: num_train + num_val must be > 0")
    stamp = _stamp(seed, num_train, num_val)
    if not force and _read_stamp(root) == stamp:
        return root
    if os.path.exists(root):
        if not os.path.isdir(root):
            raise BestieDataError("toy data set root exists and is not a folder", path=root)
        if _read_stamp(root) is None and os.listdir(root) and not force:
            raise BestieDataError(
                "folder exists, is not empty and is not a generated toy data set (no "
                f"{STAMP_FILE}); refusing to overwrite it. Choose another root or pass force=True",
                path=root,
            )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    logger.info("Generating the toy data set (seed=%d, %d train, %d val) in %s", seed, num_train, num_val, root)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(root) + ".tmp-", dir=parent)
    try:
        os.chmod(tmp, new_file_mode(0o777))  # mkdtemp makes 0700 folders
        for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation",
                    "cls_labels", "Center_points", "annotations"):
            os.makedirs(os.path.join(tmp, sub), exist_ok=True)
        _write_split(tmp, "train", num_train, seed)
        _write_split(tmp, "val", num_val, seed)
        with open(os.path.join(tmp, STAMP_FILE), "w") as f:
            json.dump(stamp, f, sort_keys=True)
        _move_into_place(tmp, root, stamp, force)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _move_into_place(tmp: str, root: str, stamp: Dict, force: bool) -> None:
    if os.path.exists(root) and not force and _read_stamp(root) == stamp:
        return  # another process generated the same set meanwhile (identical bytes): keep it
    if os.path.exists(root):  # stale cache (other parameters/version) or force=True
        old = tempfile.mkdtemp(prefix="." + os.path.basename(root) + ".old-", dir=os.path.dirname(root))
        os.rmdir(old)
        os.rename(root, old)
        try:
            os.rename(tmp, root)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, root)
    except OSError:
        if _read_stamp(root) == stamp:  # lost a race against an identical generation
            return
        raise

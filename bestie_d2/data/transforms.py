"""BESTIE training augmentation (docs/method.md §1.2), with the instance cues carried along.

Order, each step a small piece with every constant from ``cfg.BESTIE.INPUT``:

1. :class:`PhotometricDistort` - brightness (p=.5, add U[-16, 16]), then with p=.5 either
   contrast -> hue or hue -> contrast; contrast (p=.5, x U[0.5, 1.5]); hue (p=.5, add U[-36, 36]
   degrees, wrapped) through cv2's float HSV, then rounded back to uint8. No saturation jitter,
   no channel swap.
2. :func:`bestie_resize_shape` - long side to ``RESIZE_LONG`` (449, aspect kept, floor), each side
   then rounded up to ``32k+1`` (minus 32 if that exceeds the snapped maximum).
   Image bilinear, semantic map nearest (``MAP_INTERPOLATION``: cv2 ``INTER_NEAREST_EXACT``,
   pixel-centre aligned with the bilinear image, by default; the authors' ``INTER_NEAREST``
   samples at ``floor(i * old / new)``, up to half a pixel off), points ``floor(p * new / old)``.
3. Random scale from ``SCALES`` (image bilinear, map nearest, points ``p * s`` as floats).
4. Random padding to at least ``CROP_SIZE`` (image placed randomly; image pad ``PAD_VALUE``,
   semantic pad 0 = background), then a uniformly random ``CROP_SIZE`` crop; points outside the
   crop are dropped.
5. Horizontal flip with p=.5 (points ``x <- W - 1 - x``).
6. Point coordinates are truncated to int.

The geometric steps are Detectron2 / fvcore ``Transform`` objects (``ResizeTransform`` with cv2
resampling, ``PadTransform`` with a per-channel value, ``CropTransform``, ``HFlipTransform``) and
are returned as a ``TransformList``. Points are pixel *indices* (not the continuous coordinates of
``Transform.apply_coords``), see :func:`apply_to_points`.

Randomness comes from an explicit ``numpy.random.Generator`` passed to every call (the mapper keeps
one per process, seeded from numpy's global state, which Detectron2 seeds per worker).
"""
import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, HFlipTransform, PadTransform

__all__ = [
    "PhotometricDistort",
    "bestie_resize_shape",
    "CV2ResizeTransform",
    "ColorPadTransform",
    "apply_to_points",
    "BestieAugmentation",
    "MAP_INTERPOLATIONS",
]

#: ``BESTIE.INPUT.MAP_INTERPOLATION`` -> the cv2 flag that resizes the WSSS map.
MAP_INTERPOLATIONS = {"nearest_exact": cv2.INTER_NEAREST_EXACT, "nearest": cv2.INTER_NEAREST}


# ------------------------------------------------------------------------------------------------
# 1. Photometric distortion
# ------------------------------------------------------------------------------------------------
class PhotometricDistort:
    """Brightness / contrast / hue jitter of a uint8 ``(H, W, 3)`` image (docs/method.md §1.2 step 1)."""

    def __init__(
        self, brightness_delta=16.0, contrast_range=(0.5, 1.5), hue_delta=36.0, image_format="RGB"
    ):
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"PhotometricDistort supports RGB or BGR images, got {image_format!r}")
        lo, hi = contrast_range
        if not 0 <= lo <= hi:
            raise ValueError(f"contrast_range must satisfy 0 <= lo <= hi, got {contrast_range}")
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(lo), float(hi))
        self.hue_delta = float(hue_delta)
        self._to_hsv = cv2.COLOR_RGB2HSV if image_format == "RGB" else cv2.COLOR_BGR2HSV
        self._from_hsv = cv2.COLOR_HSV2RGB if image_format == "RGB" else cv2.COLOR_HSV2BGR

    def _contrast(self, img, rng):
        if rng.random() < 0.5:
            img *= rng.uniform(*self.contrast_range)
            np.clip(img, 0.0, 255.0, out=img)
        return img

    def _hue(self, img, rng):
        if rng.random() < 0.5:
            delta = rng.uniform(-self.hue_delta, self.hue_delta)
            # float input: H in [0, 360), S in [0, 1], V keeps the 0..255 scale
            hsv = cv2.cvtColor(img, self._to_hsv)
            h = hsv[..., 0]
            h += delta
            np.mod(h, 360.0, out=h)
            img = cv2.cvtColor(hsv, self._from_hsv)
        return img

    def __call__(self, image, rng):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"PhotometricDistort expects an (H, W, 3) image, got {image.shape}")
        img = image.astype(np.float32)
        if rng.random() < 0.5:
            img += rng.uniform(-self.brightness_delta, self.brightness_delta)
            np.clip(img, 0.0, 255.0, out=img)
        if rng.random() < 0.5:
            img = self._hue(self._contrast(img, rng), rng)
        else:
            img = self._contrast(self._hue(img, rng), rng)
        np.clip(img, 0.0, 255.0, out=img)
        return np.rint(img).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# 2. Resize rule
# ------------------------------------------------------------------------------------------------
def _snap_up(n, factor, max_size):
    """Round ``n`` up to ``factor*k + 1``; subtract ``factor`` if that exceeds ``max_size``."""
    if factor <= 0:
        return n
    n = n + (factor - (n - 1) % factor) % factor
    if n > max_size:
        n -= factor
    return n


def bestie_resize_shape(h, w, long_side=449, factor=32):
    """Output ``(new_h, new_w)`` of the BESTIE resize (docs/method.md §1.2 step 2).

    The long side becomes ``long_side`` snapped down to ``factor*k + 1`` (449 stays 449), the short
    side ``floor(short * long / max(h, w))``; then each side is rounded up to ``factor*k + 1``
    (minus ``factor`` if that exceeds the snapped long side). 500x375 -> 449x353 (w x h).
    """
    h, w, long_side, factor = int(h), int(w), int(long_side), int(factor)
    if h <= 0 or w <= 0:
        raise ValueError(f"invalid image size {h}x{w}")
    max_size = long_side - ((long_side - 1) % factor if factor > 0 else 0)
    m = max(h, w)
    # integer arithmetic: exact floor (the long side maps exactly to max_size)
    nh = max(1, h * max_size // m)
    nw = max(1, w * max_size // m)
    return _snap_up(nh, factor, max_size), _snap_up(nw, factor, max_size)


# ------------------------------------------------------------------------------------------------
# Geometric transforms (Detectron2 / fvcore Transform subclasses)
# ------------------------------------------------------------------------------------------------
class CV2ResizeTransform(T.ResizeTransform):
    """``ResizeTransform`` resampled with cv2 (bilinear image, nearest segmentation).

    ``point_scale`` ``(sx, sy)``, if given, is the factor applied to coordinates instead of
    ``new/old`` (the random-scale step scales points by the drawn factor itself);
    ``seg_interp`` is the cv2 flag of the segmentation (default ``INTER_NEAREST_EXACT``).
    """

    def __init__(self, h, w, new_h, new_w, point_scale=None, seg_interp=cv2.INTER_NEAREST_EXACT):
        super().__init__(h, w, new_h, new_w)
        self.point_scale = point_scale
        self.seg_interp = seg_interp

    def _resize(self, img, interp):
        assert img.shape[:2] == (self.h, self.w), (img.shape, self.h, self.w)
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=interp)

    def apply_image(self, img, interp=None):
        return self._resize(img, cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation):
        return self._resize(segmentation, self.seg_interp)

    def apply_coords(self, coords):
        sx, sy = self.point_scale or (self.new_w / self.w, self.new_h / self.h)
        coords[:, 0] = coords[:, 0] * sx
        coords[:, 1] = coords[:, 1] * sy
        return coords

    def inverse(self):
        return CV2ResizeTransform(self.new_h, self.new_w, self.h, self.w, seg_interp=self.seg_interp)


class ColorPadTransform(PadTransform):
    """``PadTransform`` whose image pad value may be per channel (e.g. the RGB mean)."""

    def apply_image(self, img):
        value = self.pad_value
        if img.ndim == 3 and np.ndim(value) == 1:
            if len(value) != img.shape[2]:
                raise ValueError(f"pad value {value} does not match {img.shape[2]} channels")
            out = np.empty(
                (img.shape[0] + self.y0 + self.y1, img.shape[1] + self.x0 + self.x1, img.shape[2]),
                dtype=img.dtype,
            )
            out[...] = np.asarray(value, dtype=img.dtype)
            out[self.y0 : self.y0 + img.shape[0], self.x0 : self.x0 + img.shape[1]] = img
            return out
        return super().apply_image(img)


def apply_to_points(tfm, points_xy):
    """Apply a geometric transform to float pixel indices ``(N, 2)`` ``[x, y]`` (a new array).

    Same as ``tfm.apply_coords`` except for horizontal flips, which map pixel index ``x`` to
    ``W - 1 - x`` (``apply_coords`` flips continuous coordinates: ``W - x``).
    """
    pts = np.array(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return pts
    tfms = tfm.transforms if isinstance(tfm, T.TransformList) else [tfm]
    for t in tfms:
        if isinstance(t, HFlipTransform):
            pts[:, 0] = t.width - 1 - pts[:, 0]
        else:
            pts = t.apply_coords(pts)
    return pts


# ------------------------------------------------------------------------------------------------
# The whole pipeline
# ------------------------------------------------------------------------------------------------
class BestieAugmentation:
    """The docs/method.md §1.2 training pipeline for (image, WSSS map, cues)."""

    def __init__(
        self,
        *,
        photometric=True,
        brightness_delta=16.0,
        contrast_range=(0.5, 1.5),
        hue_delta=36.0,
        resize_long=449,
        resize_factor=32,
        scales=(0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
        crop_size=416,
        pad_value=(123, 116, 103),
        flip=True,
        image_format="RGB",
        map_interpolation="nearest_exact",
    ):
        if map_interpolation not in MAP_INTERPOLATIONS:
            raise ValueError(f"BESTIE.INPUT.MAP_INTERPOLATION must be one of {', '.join(MAP_INTERPOLATIONS)}, "
                             f"got {map_interpolation!r}")
        self.map_interp = MAP_INTERPOLATIONS[map_interpolation]
        self.photometric = (
            PhotometricDistort(brightness_delta, contrast_range, hue_delta, image_format)
            if photometric else None
        )
        self.resize_long = int(resize_long)
        self.resize_factor = int(resize_factor)
        self.scales = tuple(float(s) for s in scales) or (1.0,)
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be > 0, got {self.scales}")
        self.crop_size = int(crop_size)
        if self.crop_size <= 0:
            raise ValueError(f"crop_size must be > 0, got {crop_size}")
        # pad_value is given in RGB order (cfg.BESTIE.INPUT.PAD_VALUE)
        self.pad_value = tuple(float(v) for v in pad_value)
        if image_format == "BGR":
            self.pad_value = self.pad_value[::-1]
        self.flip = bool(flip)

    @classmethod
    def from_config(cls, cfg, image_format=None):
        i = cfg.BESTIE.INPUT
        return cls(
            photometric=i.PHOTOMETRIC,
            brightness_delta=i.BRIGHTNESS_DELTA,
            contrast_range=tuple(i.CONTRAST_RANGE),
            hue_delta=i.HUE_DELTA,
            resize_long=i.RESIZE_LONG,
            resize_factor=i.RESIZE_FACTOR,
            scales=tuple(i.SCALES),
            crop_size=i.CROP_SIZE,
            pad_value=tuple(i.PAD_VALUE),
            flip=i.FLIP,
            image_format=image_format or cfg.INPUT.FORMAT,
            map_interpolation=i.MAP_INTERPOLATION,
        )

    # -- geometric steps: each returns a Transform for an (h, w) input ---------------------------
    def resize_transform(self, h, w):
        nh, nw = bestie_resize_shape(h, w, self.resize_long, self.resize_factor)
        return CV2ResizeTransform(h, w, nh, nw, seg_interp=self.map_interp)

    def scale_transform(self, h, w, rng):
        s = self.scales[int(rng.integers(len(self.scales)))]
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        return CV2ResizeTransform(h, w, nh, nw, point_scale=(s, s), seg_interp=self.map_interp)

    def pad_transform(self, h, w, rng):
        ph, pw = max(self.crop_size - h, 0), max(self.crop_size - w, 0)
        if ph == 0 and pw == 0:
            return T.NoOpTransform()
        top, left = int(rng.integers(ph + 1)), int(rng.integers(pw + 1))
        return ColorPadTransform(left, top, pw - left, ph - top, orig_w=w, orig_h=h,
                                 pad_value=self.pad_value, seg_pad_value=0)

    def crop_transform(self, h, w, rng):
        cs = self.crop_size
        y0, x0 = int(rng.integers(h - cs + 1)), int(rng.integers(w - cs + 1))
        return CropTransform(x0, y0, cs, cs, orig_w=w, orig_h=h)

    def flip_transform(self, w, rng):
        if self.flip and rng.random() < 0.5:
            return HFlipTransform(w)
        return T.NoOpTransform()

    def __call__(self, image, sem_seg, points, rng):
        """Augment one sample.

        Args:
            image: ``(H, W, 3)`` uint8.
            sem_seg: ``(H, W)`` integer map of the same size.
            points: ``(N, >=2)`` array whose first two columns are ``x, y`` pixel indices in the
                original image; the other columns (class, conf, ...) are carried unchanged.
            rng: ``numpy.random.Generator``.

        Returns:
            ``(image, sem_seg, points, transforms)``: the ``crop x crop`` contiguous image and
            map, the surviving points with integer (truncated) ``x, y`` in crop pixels (same
            columns, float64), and the geometric ``TransformList``.
        """
        if image.shape[:2] != sem_seg.shape[:2]:
            raise ValueError(
                f"image size {image.shape[:2]} != semantic map size {sem_seg.shape[:2]}"
            )
        pts = np.array(points, dtype=np.float64)
        if pts.size == 0:
            pts = pts.reshape(0, pts.shape[1] if pts.ndim == 2 else 2)
        if pts.ndim != 2 or pts.shape[1] < 2:
            raise ValueError(f"points must have x, y columns, got shape {pts.shape}")

        if self.photometric is not None:
            image = self.photometric(image, rng)

        h, w = image.shape[:2]
        tfms = []

        t = self.resize_transform(h, w)
        image, sem_seg = t.apply_image(image), t.apply_segmentation(sem_seg)
        pts[:, :2] = np.floor(apply_to_points(t, pts[:, :2]))  # int(p * new / old)
        tfms.append(t)

        for step in (self.scale_transform, self.pad_transform, self.crop_transform):
            h, w = image.shape[:2]
            t = step(h, w, rng)
            image, sem_seg = t.apply_image(image), t.apply_segmentation(sem_seg)
            pts[:, :2] = apply_to_points(t, pts[:, :2])
            tfms.append(t)
            if isinstance(t, CropTransform):
                x, y = pts[:, 0], pts[:, 1]
                pts = pts[(x >= 0) & (x < t.w) & (y >= 0) & (y < t.h)]

        h, w = image.shape[:2]
        t = self.flip_transform(w, rng)
        image, sem_seg = t.apply_image(image), t.apply_segmentation(sem_seg)
        pts[:, :2] = apply_to_points(t, pts[:, :2])
        tfms.append(t)

        # truncate to int (coordinates are in [-1, W) after the flip, so clip for safety)
        pts[:, 0] = np.clip(np.trunc(pts[:, 0]), 0, w - 1)
        pts[:, 1] = np.clip(np.trunc(pts[:, 1]), 0, h - 1)
        return (
            np.ascontiguousarray(image),
            np.ascontiguousarray(sem_seg),
            pts,
            T.TransformList(tfms),
        )

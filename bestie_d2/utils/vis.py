"""Drawing helpers shared by the visualisation tools (``tools/visualize.py``, ``tools/predict.py``).

Every function takes numpy arrays or torch tensors and returns ``uint8`` **RGB** ``(H, W, 3)``
images (``save_png`` converts to BGR for OpenCV). Conventions follow ``docs/DEVELOPING.md``:
semantic maps 0 = bg, ``c + 1`` = class c, 255 = ignore; center maps ``(C, H, W)``; offsets
``(2, H, W)`` with channel 0 = dy, channel 1 = dx.

* colours: :func:`class_colors` (the VOC palette, the same colours as :func:`colorize_semantic`),
  :func:`instance_colors` (well separated hues);
* maps: :func:`colorize_semantic`, :func:`heatmap`, :func:`center_heatmap` (max over classes),
  :func:`offset_magnitude_image`, :func:`offset_direction_image` (HSV: hue = direction, value =
  length), :func:`weight_image`;
* overlays: :func:`overlay_label_map`, :func:`overlay_masks`, :func:`draw_points`,
  :func:`draw_crosses`;
* layout: :func:`fit_panel`, :func:`text_panel`, :func:`compose_grid` (titled panels in a grid,
  optional full-width banner rows), :func:`save_png` (atomic).
"""
import os
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .io import atomic_write
from .label_png import VOC_PALETTE

__all__ = [
    "to_numpy",
    "class_colors",
    "instance_colors",
    "colorize_semantic",
    "heatmap",
    "center_heatmap",
    "offset_magnitude",
    "offset_magnitude_image",
    "offset_direction_image",
    "weight_image",
    "overlay_label_map",
    "overlay_masks",
    "draw_points",
    "draw_crosses",
    "fit_panel",
    "text_panel",
    "wrap_text",
    "compose_grid",
    "save_png",
]

FONT = cv2.FONT_HERSHEY_SIMPLEX
IGNORE_COLOR = (224, 224, 192)  # VOC palette entry 255


def to_numpy(x) -> np.ndarray:
    """torch tensor (any device) or array-like -> numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------------------------
# colours
# ------------------------------------------------------------------------------------------------
def class_colors(num_classes: int) -> np.ndarray:
    """``(C, 3)`` uint8 RGB colour of each thing class: VOC palette entry ``c + 1`` (as in the
    semantic maps drawn by :func:`colorize_semantic`)."""
    idx = (np.arange(int(num_classes)) % 254) + 1
    return VOC_PALETTE[idx].copy()


def instance_colors(n: int, saturation: float = 0.8, value: float = 0.95) -> np.ndarray:
    """``(n, 3)`` uint8 RGB colours with golden-ratio spaced hues (neighbours differ clearly)."""
    n = int(n)
    if n <= 0:
        return np.zeros((0, 3), np.uint8)
    hue = (np.arange(n) * 0.618033988749895 + 0.05) % 1.0
    hsv = np.stack([hue * 179.0, np.full(n, saturation * 255.0), np.full(n, value * 255.0)], 1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return rgb


def colorize_semantic(sem, ignore_value: int = 255) -> np.ndarray:
    """``(H, W)`` semantic labels -> RGB (VOC palette: 0 black, ``c + 1`` class colour,
    ``ignore_value`` cream)."""
    sem = to_numpy(sem).astype(np.int64)
    if sem.ndim != 2:
        raise ValueError(f"semantic map must be (H, W), got shape {sem.shape}")
    out = VOC_PALETTE[np.clip(sem, 0, 255)]
    out[sem == ignore_value] = IGNORE_COLOR
    return out


# ------------------------------------------------------------------------------------------------
# heat maps
# ------------------------------------------------------------------------------------------------
def heatmap(values, vmin: float = 0.0, vmax: Optional[float] = None, cmap: str = "inferno") -> np.ndarray:
    """``(H, W)`` floats -> RGB through a matplotlib colour map, linear on ``[vmin, vmax]``
    (``vmax`` None = the map's maximum; a flat map is drawn at ``vmin``'s colour)."""
    import matplotlib

    v = to_numpy(values).astype(np.float32)
    if v.ndim != 2:
        raise ValueError(f"heat map values must be (H, W), got shape {v.shape}")
    v = np.nan_to_num(v, nan=vmin, posinf=vmin, neginf=vmin)
    if vmax is None:
        vmax = float(v.max()) if v.size else 1.0
    span = float(vmax) - float(vmin)
    t = (v - vmin) / span if span > 1e-12 else np.zeros_like(v)
    t = np.clip(t, 0.0, 1.0)
    lut = (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[(t * 255).round().astype(np.int64)]


def center_heatmap(center, vmax: Optional[float] = 1.0, cmap: str = "inferno") -> np.ndarray:
    """Center map ``(C, H, W)`` (or ``(H, W)``) -> RGB heat map of the max over classes.

    ``vmax`` = 1.0 by default (targets peak at 1), so targets and predictions share one scale;
    None scales to the map's maximum."""
    c = to_numpy(center).astype(np.float32)
    if c.ndim == 3:
        c = c.max(axis=0) if c.shape[0] else np.zeros(c.shape[1:], np.float32)
    return heatmap(c, 0.0, vmax, cmap)


def offset_magnitude(offset) -> np.ndarray:
    """``(2, H, W)`` offsets -> ``(H, W)`` float32 lengths ``sqrt(dy² + dx²)``."""
    o = to_numpy(offset).astype(np.float32)
    if o.ndim != 3 or o.shape[0] != 2:
        raise ValueError(f"offset must be (2, H, W) [dy, dx], got shape {o.shape}")
    return np.sqrt(o[0] ** 2 + o[1] ** 2)


def offset_magnitude_image(offset, vmax: Optional[float] = None, cmap: str = "viridis") -> np.ndarray:
    """Heat map of the offset length (``vmax`` None = the largest length in the map)."""
    return heatmap(offset_magnitude(offset), 0.0, vmax, cmap)


def offset_direction_image(offset, vmax: Optional[float] = None) -> np.ndarray:
    """Offsets as colours: hue = direction of ``(dx, dy)`` (red = pointing right, then through
    yellow-green (down), cyan-blue (left), purple (up)), brightness = length / ``vmax``
    (None = the largest length); zero offsets are black."""
    o = to_numpy(offset).astype(np.float32)
    mag = offset_magnitude(o)
    if vmax is None:
        vmax = float(mag.max()) if mag.size else 1.0
    ang = np.arctan2(o[0], o[1])  # image frame: +y is down
    hue = ((ang % (2 * np.pi)) / (2 * np.pi) * 179.0).astype(np.uint8)
    val = np.clip(mag / max(float(vmax), 1e-12), 0.0, 1.0) * 255.0
    hsv = np.stack([hue, np.full_like(hue, 255), val.round().astype(np.uint8)], axis=-1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def weight_image(weight) -> np.ndarray:
    """``(H, W)`` (or ``(1, H, W)``) weights in [0, 1] -> grey image (1 = white)."""
    w = to_numpy(weight).astype(np.float32)
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    return heatmap(w, 0.0, 1.0, "gray")


# ------------------------------------------------------------------------------------------------
# overlays
# ------------------------------------------------------------------------------------------------
def _rgb_image(image) -> np.ndarray:
    img = to_numpy(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def overlay_label_map(image, labels, colors, alpha: float = 0.55, contours: bool = True) -> np.ndarray:
    """Blend ``colors[k - 1]`` over the pixels with ``labels == k`` (k >= 1; 0 = untouched) and
    draw each region's outline in its colour."""
    img = _rgb_image(image).copy()
    lab = to_numpy(labels).astype(np.int64)
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    fg = lab > 0
    if not fg.any():
        return img
    col = colors[(lab[fg] - 1) % max(len(colors), 1)].astype(np.float32)
    img[fg] = ((1 - alpha) * img[fg].astype(np.float32) + alpha * col).round().astype(np.uint8)
    if contours:
        for k in np.unique(lab[fg]):
            m = (lab == k).astype(np.uint8)
            cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            color = tuple(int(v) for v in colors[(k - 1) % len(colors)])
            cv2.drawContours(img, cs, -1, color, 1)
    return img


def overlay_masks(image, masks, colors=None, alpha: float = 0.55, contours: bool = True) -> np.ndarray:
    """Blend ``(N, H, W)`` boolean masks over ``image`` (later masks on top); ``colors`` default
    :func:`instance_colors`."""
    m = to_numpy(masks).astype(bool)
    img = _rgb_image(image)
    if m.size == 0 or m.shape[0] == 0:
        return img.copy()
    lab = np.zeros(m.shape[1:], np.int64)
    for i in range(m.shape[0]):
        lab[m[i]] = i + 1
    if colors is None:
        colors = instance_colors(m.shape[0])
    return overlay_label_map(img, lab, colors, alpha, contours)


def draw_points(image, points_yx, classes=None, colors=None, radius: int = 3) -> np.ndarray:
    """Filled dots with a white ring at ``(y, x)`` points, coloured by class (``colors[c]``)."""
    img = _rgb_image(image).copy()
    pts = to_numpy(points_yx).reshape(-1, 2)
    cls = np.zeros(len(pts), np.int64) if classes is None else to_numpy(classes).reshape(-1).astype(np.int64)
    if colors is None:
        colors = np.array([[255, 0, 0]], np.uint8)
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    for (y, x), c in zip(pts.astype(np.int64), cls):
        color = tuple(int(v) for v in colors[c % len(colors)])
        cv2.circle(img, (int(x), int(y)), radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), radius, color, -1, cv2.LINE_AA)
    return img


def draw_crosses(image, points_yx, color=(255, 255, 255), size: int = 4) -> np.ndarray:
    """``x``-shaped markers at ``(y, x)`` points (e.g. instance centroids)."""
    img = _rgb_image(image).copy()
    for y, x in to_numpy(points_yx).reshape(-1, 2).astype(np.int64):
        cv2.drawMarker(img, (int(x), int(y)), (0, 0, 0), cv2.MARKER_TILTED_CROSS, size * 2 + 2, 3)
        cv2.drawMarker(img, (int(x), int(y)), tuple(int(v) for v in color), cv2.MARKER_TILTED_CROSS, size * 2, 1)
    return img


# ------------------------------------------------------------------------------------------------
# layout
# ------------------------------------------------------------------------------------------------
def fit_panel(image, size: Optional[int], nearest: bool = False) -> np.ndarray:
    """Resize so that the long side is ``size`` (None/0 = unchanged), keeping the aspect ratio.
    ``nearest`` for label-like images (no blended colours)."""
    img = _rgb_image(image)
    if not size:
        return img
    h, w = img.shape[:2]
    s = float(size) / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return cv2.resize(img, (nw, nh), interpolation=interp)


def text_panel(text: str, size: Tuple[int, int], bg: int = 40, fg=(230, 230, 230), font_scale: float = 0.4) -> np.ndarray:
    """A ``(h, w)`` panel with wrapped ``text`` (e.g. "not available: <reason>")."""
    h, w = int(size[0]), int(size[1])
    img = np.full((h, w, 3), bg, np.uint8)
    lines = wrap_text(text, w - 8, font_scale)
    lh = _line_height(font_scale)
    y = max(lh, (h - lh * len(lines)) // 2 + lh - 4)
    for line in lines:
        cv2.putText(img, line, (4, y), FONT, font_scale, fg, 1, cv2.LINE_AA)
        y += lh
    return img


def _line_height(font_scale: float) -> int:
    (_, th), base = cv2.getTextSize("Ag", FONT, font_scale, 1)
    return th + base + 4


def wrap_text(text: str, width: int, font_scale: float = 0.4) -> List[str]:
    """Split ``text`` into lines at most ``width`` px wide (words first, then characters)."""
    width = max(int(width), 8)

    def fits(s):
        return cv2.getTextSize(s, FONT, font_scale, 1)[0][0] <= width

    lines: List[str] = []
    for para in str(text).split("\n"):
        cur = ""
        for word in para.split(" "):
            cand = word if not cur else cur + " " + word
            if fits(cand):
                cur = cand
                continue
            if cur:
                lines.append(cur)
            cur = ""
            while word and not fits(word):  # a word wider than the line: hard split
                k = len(word)
                while k > 1 and not fits(word[:k]):
                    k -= 1
                lines.append(word[:k])
                word = word[k:]
            cur = word
        lines.append(cur)
    return lines


def _title_bar(lines: Sequence[str], width: int, n_lines: int, font_scale: float, bg: int) -> np.ndarray:
    lh = _line_height(font_scale)
    bar = np.full((lh * n_lines + 2, width, 3), bg, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (2, lh * (i + 1) - 4), FONT, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


Row = Union[str, Sequence[np.ndarray]]


def compose_grid(
    rows: Sequence[Row],
    titles: Optional[Sequence[Optional[Sequence[str]]]] = None,
    *,
    cell_size: Optional[Tuple[int, int]] = None,
    pad: int = 4,
    bg: int = 255,
    font_scale: float = 0.4,
    banner_bg: int = 215,
) -> np.ndarray:
    """Compose titled panels into one RGB image.

    Args:
        rows: each row is a list of RGB panels, or a ``str`` = a full-width banner row (e.g. a
            section heading).
        titles: same structure as ``rows`` (None for a banner row or an untitled row): the text
            above each panel, wrapped to the cell width; every panel of a row gets the row's
            largest title height, so the panels of a row stay aligned.
        cell_size: ``(h, w)`` of every cell; None = per column the widest panel, per row the
            tallest. Panels larger than the cell are shrunk (aspect kept); smaller ones are
            centred.
        pad: spacing (px) around and between cells.

    The width is ``sum(cell widths) + pad * (n_columns + 1)``.
    """
    panel_rows = [r for r in rows if not isinstance(r, str)]
    if not panel_rows:
        raise ValueError("compose_grid needs at least one row of panels")
    ncols = max(len(r) for r in panel_rows)
    if cell_size is not None:
        col_w = [int(cell_size[1])] * ncols
    else:
        col_w = [max(_rgb_image(r[j]).shape[1] for r in panel_rows if j < len(r)) for j in range(ncols)]
    total_w = sum(col_w) + pad * (ncols + 1)
    blocks = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            blocks.append(_banner_block(row, total_w, pad, bg, font_scale + 0.1, banner_bg))
            continue
        row_titles = list(titles[i]) if titles is not None and titles[i] is not None else []
        cell_h = int(cell_size[0]) if cell_size is not None else None
        blocks.append(_panel_block(row, row_titles, col_w, cell_h, total_w, pad, bg, font_scale))
    blocks.append(np.full((pad, total_w, 3), bg, np.uint8))
    return np.concatenate(blocks, axis=0)


def _banner_block(text: str, total_w: int, pad: int, bg: int, font_scale: float, banner_bg: int) -> np.ndarray:
    """A full-width banner row of :func:`compose_grid` (top padding included)."""
    lines = wrap_text(text, total_w - 2 * pad, font_scale)
    bar = _title_bar(lines, total_w - 2 * pad, len(lines), font_scale, banner_bg)
    block = np.full((bar.shape[0] + pad, total_w, 3), bg, np.uint8)
    block[pad:, pad:pad + bar.shape[1]] = bar
    return block


def _panel_block(row, row_titles, col_w, cell_h, total_w, pad, bg, font_scale) -> np.ndarray:
    """One row of titled panels of :func:`compose_grid` (top padding included); ``cell_h`` None =
    the tallest panel."""
    panels = [_rgb_image(p) for p in row]
    if cell_h is None:
        cell_h = max(p.shape[0] for p in panels)
    wrapped = [wrap_text(t, col_w[j], font_scale) if t else [] for j, t in enumerate(row_titles)]
    n_lines = max([len(w) for w in wrapped] + [0])
    title_h = (_line_height(font_scale) * n_lines + 2) if n_lines else 0
    block = np.full((pad + title_h + cell_h, total_w, 3), bg, np.uint8)
    x = pad
    for j, p in enumerate(panels[:len(col_w)]):
        ph, pw = p.shape[:2]
        if ph > cell_h or pw > col_w[j]:
            s = min(cell_h / ph, col_w[j] / pw)
            p = cv2.resize(p, (max(1, int(pw * s)), max(1, int(ph * s))), interpolation=cv2.INTER_AREA)
            ph, pw = p.shape[:2]
        if j < len(wrapped) and wrapped[j]:
            block[pad:pad + title_h, x:x + col_w[j]] = _title_bar(wrapped[j], col_w[j], n_lines, font_scale, bg)
        y0 = pad + title_h + (cell_h - ph) // 2
        x0 = x + (col_w[j] - pw) // 2
        block[y0:y0 + ph, x0:x0 + pw] = p
        x += col_w[j] + pad
    return block


def save_png(path: str, image) -> str:
    """Write an RGB image as PNG atomically (temporary file + ``os.replace``); creates folders."""
    path = os.fspath(path)
    img = _rgb_image(image)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    return atomic_write(path, buf.tobytes())

"""Cue / point-label files: one point per line, ``x y c conf`` (docs/method.md §1.1).

* ``x``, ``y``: column and row in original-image pixels (written as integers);
* ``c``: thing-class index ``0..C-1``;
* ``conf``: confidence in ``[0, 1]`` (PAM peak value for ``Peak_points``, 1.0 for ``Center_points``).

In memory a points file is a ``(N, 4)`` float32 array ``[x, y, c, conf]``.
"""
import math
import os
from typing import Optional, Sequence

import numpy as np

from ..utils.io import atomic_write
from .errors import ClassIdError, MissingDataError, PointsFileError

__all__ = ["read_points", "write_points", "filter_by_confidence"]


def _parse_float(tok: str):
    try:
        v = float(tok)
    except ValueError:
        return None
    return v


def read_points(path, num_classes: int, image_size: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read and validate a points file.

    Args:
        path: the ``.txt`` file.
        num_classes: number of thing classes C; class fields must be integers in ``0..C-1``.
        image_size: optional ``(H, W)``; points must then satisfy ``0 <= x < W`` and ``0 <= y < H``.

    Returns:
        ``(N, 4)`` float32 array ``[x, y, c, conf]`` (``(0, 4)`` for an empty file).

    Raises:
        MissingDataError (a ``FileNotFoundError``): the file does not exist.
        PointsFileError / ClassIdError (``BestieDataError``): a malformed line; the message names
        the file and the 1-based line number. Blank lines are allowed and skipped.
    """
    path = os.fspath(path)
    if num_classes is None or int(num_classes) <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            rows.append(_parse_line(fields, line, num_classes, size, path, lineno))
    if not rows:
        return np.zeros((0, 4), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32)


def _read_text(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise MissingDataError("points file does not exist", path=path) from None
    except IsADirectoryError:
        raise PointsFileError("expected a points file, found a directory", path=path) from None
    except UnicodeDecodeError as e:
        raise PointsFileError(f"not a UTF-8/ASCII text file ({e.reason})", path=path) from None


def _parse_line(fields, line: str, num_classes: int, size, path: str, lineno: int):
    """One non-blank line -> ``(x, y, c, conf)`` floats, or the error naming file and line."""
    if len(fields) != 4:
        raise PointsFileError(
            f"expected 4 fields 'x y class conf', found {len(fields)}: {line.strip()!r}",
            path=path, line=lineno,
        )
    vals = [_parse_float(t) for t in fields]
    for name, tok, v in zip(("x", "y", "class", "conf"), fields, vals):
        if v is None:
            raise PointsFileError(f"field {name} is not a number: {tok!r}", path=path, line=lineno)
        if not math.isfinite(v):
            raise PointsFileError(f"field {name} is not finite: {tok!r}", path=path, line=lineno)
    x, y, c, conf = vals
    if c != int(c):
        raise PointsFileError(f"class must be an integer, got {fields[2]!r}", path=path, line=lineno)
    if not 0 <= c < num_classes:
        hint = " (1-based class ids? classes are 0..C-1: c = 1-based id - 1)" if c == num_classes else ""
        raise ClassIdError(
            f"class {int(c)} out of range 0..{num_classes - 1}{hint}", path=path, line=lineno
        )
    if not 0.0 <= conf <= 1.0:
        raise PointsFileError(f"confidence {fields[3]} not in [0, 1]", path=path, line=lineno)
    if x < 0 or y < 0:
        raise PointsFileError(
            f"negative coordinate (x={fields[0]}, y={fields[1]})", path=path, line=lineno
        )
    if size is not None and (x >= size[1] or y >= size[0]):
        H, W = size
        raise PointsFileError(
            f"point (x={fields[0]}, y={fields[1]}) outside the image of size "
            f"H={H}, W={W} (need 0 <= x < W, 0 <= y < H)",
            path=path, line=lineno,
        )
    return x, y, c, conf


def write_points(path, points) -> None:
    """Write ``points`` (``(N, 4)`` ``[x, y, c, conf]``) as ``"%d %d %d %.3f"`` lines, atomically.

    Coordinates are floored to the pixel that contains them (so a point inside the image stays
    inside). The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so a reader never sees a half-written file. Parent folders are created.
    """
    path = os.fspath(path)
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 4)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must have shape (N, 4) [x, y, c, conf], got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"points to write to {path} contain NaN/inf")
    if (pts[:, :3] < 0).any():
        raise ValueError(f"points to write to {path} have negative coordinates or classes")
    if ((pts[:, 3] < 0) | (pts[:, 3] > 1)).any():
        raise ValueError(f"points to write to {path} have confidences outside [0, 1]")
    if (pts[:, 2] != np.round(pts[:, 2])).any():
        raise ValueError(f"points to write to {path} have non-integer classes")
    lines = "".join(
        "%d %d %d %.3f\n" % (int(x), int(y), int(round(c)), conf)
        for x, y, c, conf in np.column_stack([np.floor(pts[:, :2]), pts[:, 2:]])
    )
    atomic_write(path, lines)


def filter_by_confidence(points: np.ndarray, threshold: float) -> np.ndarray:
    """Keep the points whose confidence is strictly greater than ``threshold`` (docs/method.md §1.1)."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.size == 0:
        return pts.reshape(0, 4)
    # Compare in float32 so that a file value equal to the threshold (e.g. "0.800") is dropped.
    return pts[pts[:, 3] > np.float32(threshold)]

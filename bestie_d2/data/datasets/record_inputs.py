"""One record's inputs checked and read with the readers training uses (e.g. for custom data sets).

:func:`validate_record_inputs` checks the image, the cue/point file
(:func:`~bestie_d2.data.points.read_points`) and the WSSS map
(:func:`~bestie_d2.data.wsss.read_wsss_map`) of one data-set record and returns what it read; the
data check of whole training sets is :func:`bestie_d2.data.input_check.check_training_inputs`.
"""
import os
from typing import NamedTuple, Optional

import numpy as np

from ..errors import MissingDataError
from ..points import read_points
from ..wsss import read_wsss_map

__all__ = ["RecordInputs", "points_file_for", "validate_record_inputs"]


class RecordInputs(NamedTuple):
    """What :func:`validate_record_inputs` read: ``points`` (N,4) float32 or None, ``wsss`` (H,W) uint8 or None."""

    points: Optional[np.ndarray]
    wsss: Optional[np.ndarray]


def points_file_for(record: dict, supervision: str) -> str:
    """The cue file a record uses: ``peak_points_file`` ("image") or ``center_points_file`` ("point")."""
    if supervision == "image":
        key = "peak_points_file"
    elif supervision == "point":
        key = "center_points_file"
    else:
        raise ValueError(f"supervision must be 'image' or 'point', got {supervision!r}")
    if key not in record:
        raise KeyError(f"record {record.get('image_id')!r} has no {key!r}")
    return record[key]


def validate_record_inputs(
    record: dict,
    num_classes: int,
    supervision: Optional[str],
    *,
    points_file: Optional[str] = None,
    wsss_file: Optional[str] = None,
    require_wsss: bool = True,
    check_image: bool = True,
) -> RecordInputs:
    """Check (and read) the per-image inputs of one record with the same readers as training;
    errors name the file (and line).

    Args:
        record: a data-set record (``height``, ``width``, ``file_name``, cue/WSSS paths).
        num_classes: C.
        supervision: "image" (reads ``peak_points_file``), "point" (``center_points_file``) or
            None (no cue file).
        points_file / wsss_file: override the record's paths (e.g. ``BESTIE.DATA.*_DIR``).
        require_wsss: the WSSS map must exist (BESTIE training needs it in both routes).
        check_image: the image file must exist.

    Returns:
        :class:`RecordInputs` with the points (``(N,4)`` float32, all confidences) and the WSSS
        map (``(H,W)`` uint8).

    Raises:
        MissingDataError (also a FileNotFoundError): image / cue file / WSSS map missing.
        PointsFileError, ClassIdError: a bad cue line (file + line) or WSSS value.
        ImageSizeMismatchError: WSSS map size != image size, or a point outside the image.
        WSSSMapError: an unreadable WSSS map, unsupported mode or colours.
    """
    if check_image and "file_name" in record and not os.path.exists(record["file_name"]):
        raise MissingDataError("image does not exist", path=record["file_name"])
    size = (int(record["height"]), int(record["width"])) if "height" in record and "width" in record else None
    points = None
    if supervision is not None:
        pf = points_file if points_file is not None else points_file_for(record, supervision)
        points = read_points(pf, num_classes, image_size=size)
    wsss = None
    wf = wsss_file if wsss_file is not None else record.get("wsss_file")
    if wf is None or not os.path.exists(wf):
        if require_wsss:
            raise MissingDataError(
                "WSSS semantic map does not exist (make one with cam_to_semantic or point "
                "BESTIE.DATA.WSSS_DIR at your WSSS method's output)",
                path=wf if wf is not None else f"<record {record.get('image_id')!r} has no wsss_file>",
            )
    else:
        wsss = read_wsss_map(wf, num_classes, image_size=size, image_path=record.get("file_name"))
    return RecordInputs(points, wsss)

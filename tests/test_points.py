"""Cue / point files: reading with validation, atomic writing, confidence filter."""
import os

import numpy as np
import pytest

import bestie_d2  # noqa: F401
from bestie_d2.data import (
    BestieDataError,
    ClassIdError,
    MissingDataError,
    PointsFileError,
    filter_by_confidence,
    read_points,
    write_points,
)


def _write(tmp_path, text, name="p.txt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_read_valid_file(tmp_path):
    p = _write(tmp_path, "10 20 3 0.950\n\n  0 0 0 1.0  \n5 7 19 0.000\n")
    pts = read_points(p, 20, image_size=(21, 11))
    assert pts.dtype == np.float32 and pts.shape == (3, 4)
    np.testing.assert_allclose(pts, [[10, 20, 3, 0.95], [0, 0, 0, 1.0], [5, 7, 19, 0.0]], rtol=1e-6)


def test_empty_file_gives_zero_rows(tmp_path):
    for text in ("", "\n \n"):
        pts = read_points(_write(tmp_path, text), 20)
        assert pts.shape == (0, 4) and pts.dtype == np.float32


def test_missing_file(tmp_path):
    p = str(tmp_path / "nope" / "2007_000032.txt")
    with pytest.raises(MissingDataError) as e:
        read_points(p, 20)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, BestieDataError)
    assert p in str(e.value)


@pytest.mark.parametrize(
    "line, err, words",
    [
        ("1 2 3", PointsFileError, "expected 4 fields"),
        ("1 2 3 0.5 7", PointsFileError, "expected 4 fields"),
        ("1 two 3 0.5", PointsFileError, "not a number"),
        ("1 2 3 nan", PointsFileError, "not finite"),
        ("inf 2 3 0.5", PointsFileError, "not finite"),
        ("1 2 2.5 0.5", PointsFileError, "integer"),
        ("1 2 20 0.5", ClassIdError, "out of range"),
        ("1 2 -1 0.5", ClassIdError, "out of range"),
        ("1 2 3 1.5", PointsFileError, "[0, 1]"),
        ("1 2 3 -0.1", PointsFileError, "[0, 1]"),
        ("-1 2 3 0.5", PointsFileError, "negative"),
        ("1 -2 3 0.5", PointsFileError, "negative"),
        ("50 2 3 0.5", PointsFileError, "outside the image"),  # x == W
        ("2 40 3 0.5", PointsFileError, "outside the image"),  # y == H
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, err, words):
    p = _write(tmp_path, "0 0 0 1.0\n\n" + line + "\n")
    with pytest.raises(err) as e:
        read_points(p, 20, image_size=(40, 50))
    msg = str(e.value)
    assert isinstance(e.value, BestieDataError)
    assert p in msg and "line 3" in msg and words in msg
    assert e.value.line == 3 and e.value.path == p


def test_outside_image_only_checked_with_size(tmp_path):
    p = _write(tmp_path, "500 400 1 0.9\n")
    assert read_points(p, 2).shape == (1, 4)


def test_write_read_roundtrip_and_format(tmp_path):
    pts = np.array([[10.7, 3.2, 4, 0.91234], [0, 0, 0, 1.0]], np.float32)
    p = str(tmp_path / "sub" / "a.txt")
    write_points(p, pts)
    assert open(p).read() == "10 3 4 0.912\n0 0 0 1.000\n"  # coordinates floored
    back = read_points(p, 5)
    np.testing.assert_allclose(back, [[10, 3, 4, 0.912], [0, 0, 0, 1.0]], rtol=1e-6)
    assert os.listdir(tmp_path / "sub") == ["a.txt"]  # no temp file left
    write_points(p, np.zeros((0, 4)))
    assert open(p).read() == "" and read_points(p, 5).shape == (0, 4)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3)), [[np.nan, 0, 0, 1]], [[-1, 0, 0, 1]], [[0, 0, 0, 2.0]], [[0, 0, 0.5, 1.0]]],
)
def test_write_rejects_invalid_points(tmp_path, bad):
    p = tmp_path / "w.txt"
    with pytest.raises(ValueError):
        write_points(str(p), bad)
    assert not p.exists() and os.listdir(tmp_path) == []


def test_filter_by_confidence_is_strict():
    pts = np.array([[0, 0, 0, 0.7], [1, 1, 0, 0.71], [2, 2, 1, 0.5], [3, 3, 1, 1.0]], np.float32)
    kept = filter_by_confidence(pts, 0.7)
    np.testing.assert_array_equal(kept[:, 0], [1, 3])
    assert filter_by_confidence(np.zeros((0, 4), np.float32), 0.5).shape == (0, 4)
    assert filter_by_confidence(pts, 1.0).shape == (0, 4)


def test_filter_threshold_equal_to_file_value_is_dropped(tmp_path):
    p = _write(tmp_path, "1 1 0 0.800\n2 2 0 0.801\n3 3 0 0.300\n")
    kept = filter_by_confidence(read_points(p, 1), 0.8)
    np.testing.assert_array_equal(kept[:, 0], [2])
    assert len(filter_by_confidence(read_points(p, 1), 0.3)) == 2

"""Files written by bestie_d2's atomic writer get the usual mode of a new file (issue 16).

``tempfile.mkstemp`` creates 0600 files; the writer now gives ``0o666 & ~umask`` like ``open()``:
0644 under the default umask 022 (and 0640 under 027, so the umask is really honoured).
"""
import json
import os

import numpy as np
import pytest

import bestie_d2  # noqa: F401


@pytest.fixture(params=[(0o022, 0o644), (0o027, 0o640)], ids=["umask022", "umask027"])
def umask(request):
    mask, expected = request.param
    old = os.umask(mask)
    yield expected
    os.umask(old)


def _mode(path):
    return oct(os.stat(path).st_mode & 0o777)


def test_atomic_writers(umask, tmp_path):
    from bestie_d2.data.points import write_points
    from bestie_d2.tools.extract_cues import write_png_atomic
    from bestie_d2.utils import vis
    from bestie_d2.utils.io import atomic_open, atomic_write

    paths = [
        atomic_write(tmp_path / "a.txt", "x"),
        vis.save_png(str(tmp_path / "b.png"), np.zeros((4, 5, 3), np.uint8)),
    ]
    write_points(tmp_path / "c.txt", [[1, 2, 0, 0.5]])
    atomic_write(tmp_path / "d.json", json.dumps({"k": 1}), fsync=True)
    write_png_atomic(str(tmp_path / "e.png"), np.zeros((4, 5), np.uint8))
    with atomic_open(tmp_path / "f.json", "w", fsync=True) as f:
        json.dump([1], f)
    paths += [tmp_path / n for n in ("c.txt", "d.json", "e.png", "f.json")]
    for p in paths:
        assert _mode(p) == oct(umask), p
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.png", "c.txt", "d.json", "e.png", "f.json"]


def test_atomic_open_removes_temporary_file_on_error(tmp_path):
    from bestie_d2.utils.io import atomic_open

    (tmp_path / "keep.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "keep.json") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["keep.json"] and (tmp_path / "keep.json").read_text() == "old"


def test_current_umask_is_read_without_change():
    from bestie_d2.utils.io import current_umask, new_file_mode

    old = os.umask(0o037)
    try:
        assert current_umask() == 0o037 and new_file_mode() == 0o640 and new_file_mode(0o777) == 0o740
        assert os.umask(0o037) == 0o037  # unchanged by the read
    finally:
        os.umask(old)

"""Atomic file writes: a temporary file in the target folder, then ``os.replace``."""
import os
import tempfile
from typing import Union

__all__ = ["atomic_write"]


def atomic_write(path, data: Union[bytes, str]) -> str:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    partial file; creates the folder. Returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path

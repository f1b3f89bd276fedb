"""Atomic file writes: a temporary file in the target folder, then ``os.replace``.

Written files get the usual mode of a new file, ``0o666 & ~umask`` (0644 under the common umask
022), like ``open(path, "w")``; ``tempfile.mkstemp`` alone would leave them 0600. The temporary
file is ``.<target name>.<8 random characters>.tmp`` next to the target; a process killed during
the write leaves it behind (:func:`stale_temporaries` finds such files).
"""
import contextlib
import os
import re
import tempfile
from typing import Callable, List, Tuple, Union

__all__ = ["atomic_write", "atomic_open", "current_umask", "new_file_mode", "stale_temporaries"]

#: The temporary file of :func:`atomic_open` (``tempfile.mkstemp``'s 8 random characters).
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it: set and restore at once
    os.umask(mask)
    return mask


def new_file_mode(base: int = 0o666) -> int:
    """``base & ~umask``: the mode ``open()`` / ``mkdir()`` would give a new file / folder."""
    return base & ~current_umask()


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", *, fsync: bool = False, encoding: str = "utf-8"):
    """``with atomic_open(path) as f: ...`` writes to a temporary file in ``path``'s folder and
    moves it onto ``path`` (``os.replace``) when the block ends without an exception, so readers
    see the old file or the whole new one; on an exception the temporary file is removed. Creates
    the folder. ``mode`` is "w" (text) or "wb"; ``fsync`` flushes to disk before the move."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)  # _TEMPORARY
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp makes 0600 files
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, data: Union[bytes, str], *, fsync: bool = False) -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return os.fspath(path)


def stale_temporaries(folder, owns: Callable[[str], bool] = lambda target: True) -> List[Tuple[str, int]]:
    """The temporary files of :func:`atomic_open` in ``folder`` whose target name ``owns`` accepts,
    as ``(path, size in bytes)``, sorted. Only a process that knows no write to these targets is
    under way (e.g. a training that starts) may remove them."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        m = _TEMPORARY.match(name)
        path = os.path.join(folder, name)
        if m and owns(m.group("target")) and os.path.isfile(path):
            out.append((path, os.path.getsize(path)))
    return out

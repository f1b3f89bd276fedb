"""A DetectionCheckpointer that writes atomically and never unpickles arbitrary code."""
import io
import logging
import os
import pickle

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.io import atomic_open, atomic_write, stale_temporaries

__all__ = ["SafeCheckpointer", "UnsafeCheckpointError", "safe_pickle_load"]

logger = logging.getLogger(__name__)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked to construct an object outside the allow-list."""


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith("numpy._core") and not hasattr(np, "_core"):
                module = module.replace("numpy._core", "numpy.core")
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"refusing to unpickle {module}.{name}: only plain containers and numpy arrays "
            "are allowed in .pkl weight files"
        )


def safe_pickle_load(f):
    """``pickle.load(f, encoding="latin1")`` restricted to containers and numpy arrays."""
    return _RestrictedUnpickler(f, encoding="latin1").load()


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with two guarantees:

    * ``save`` writes the checkpoint and ``last_checkpoint`` with
      :func:`bestie_d2.utils.io.atomic_open` (temporary file, fsync, rename), so a crash never
      leaves a truncated checkpoint and ``last_checkpoint`` always names a complete file;
    * loading uses ``torch.load(weights_only=True)`` for ``.pth`` and a restricted unpickler for
      detectron2-style ``.pkl`` files: no arbitrary code is executed.

    A process killed during a write leaves the hidden temporary file of the atomic write behind
    (``.model_0004999.pth.<random>.tmp``, up to a whole checkpoint); the trainer removes them when
    a training starts or resumes (:meth:`remove_stale_temporaries`).
    """

    def remove_stale_temporaries(self):
        """Remove the temporaries of this checkpointer's writes (``*.pth``, ``last_checkpoint``)
        left in ``save_dir`` by a killed run, with one log line naming them; returns their paths.
        Only call it when no save of this folder is under way (a training that starts)."""
        if not self.save_dir or not self.save_to_disk:
            return []
        stale = stale_temporaries(self.save_dir, lambda t: t.endswith(".pth") or t == "last_checkpoint")
        for path, _ in stale:
            os.unlink(path)
        if stale:
            listed = ", ".join(f"{os.path.basename(p)} ({n:,} B)" for p, n in stale)
            logger.info(f"Removed {len(stale)} stale temporary file(s) of interrupted checkpoint writes "
                             f"in {self.save_dir}: {listed}")
        return [p for p, _ in stale]

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        with atomic_open(save_file, "wb", fsync=True) as f:
            torch.save(data, f)
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), basename)  # tag_last_checkpoint, atomic

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            with self.path_manager.open(filename, "rb") as f:
                data = safe_pickle_load(f)
            if "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '{}'".format(data["__author__"]))
                return data
            if "blobs" in data:
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        with self.path_manager.open(filename, "rb") as f:
            buf = io.BytesIO(f.read())
        try:
            loaded = torch.load(buf, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                f"{filename}: not loadable with torch.load(weights_only=True): {e}. "
                "bestie_d2 does not execute pickled code from checkpoints."
            ) from e
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded

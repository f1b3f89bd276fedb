"""What produced a result: library versions, detectron2's origin and compiled ops, CPU, threads, seed.

The detectron2 part comes from :func:`bestie_d2.compat.detectron2_info` (the one place that knows
about detectron2 versions).

``environment_info()`` is stored in the demo's ``results.json`` and logged at the start of every
``train_net`` run, so that a number in a table can be traced to the environment that made it.
"""
import os
import platform
import subprocess
from typing import Optional

__all__ = ["environment_info", "format_environment", "cpu_model"]


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit(folder: str) -> Optional[str]:
    try:
        r = subprocess.run(["git", "-C", folder, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def environment_info(seed: Optional[int] = None) -> dict:
    """A json-serialisable description of the running environment.

    Keys: ``python``, ``platform``, ``torch``, ``torchvision``, ``numpy``, ``opencv``,
    ``detectron2`` (``version``, ``path``, ``compiled_ops``, and ``source``/``commit``/``sha256``
    when known), ``bestie_d2`` (version, git commit of the checkout when it is one), ``cpu``
    (model), ``cpu_count``, ``torch_threads``, ``cuda`` (device name or None) and ``seed``.
    """
    import cv2
    import numpy
    import torch

    import bestie_d2
    from bestie_d2 import compat

    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # pragma: no cover
        tv = None
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(bestie_d2.__file__)))
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "detectron2": compat.detectron2_info(),
        "bestie_d2": {"version": bestie_d2.__version__, "commit": _git_commit(pkg_dir)},
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": seed,
    }


def format_environment(info: dict) -> str:
    """One line for logs and tables: ``torch 2.14.1, detectron2 0.6 (no compiled ops), CPU ..., 2 threads, seed 1``."""
    d2 = info["detectron2"]
    origin = f", {d2['commit']}" if d2.get("commit") else ""
    ops = "compiled ops" if d2.get("compiled_ops") else "no compiled ops"
    return (f"torch {info['torch']}, detectron2 {d2['version']} ({ops}{origin}), {info['cpu']} "
            f"({info['cpu_count']} cores), {info['torch_threads']} torch threads, seed {info['seed']}"
            + (f", CUDA {info['cuda']}" if info.get("cuda") else ""))

"""The one place that knows about detectron2 versions and the presence of its compiled ops.

bestie_d2 runs on two kinds of detectron2 install (docs/architecture.md §4):

* detectron2 **0.6** installed from the Python-only sdist (``scripts/install_detectron2.py``):
  no ``detectron2._C``; v0.6 imports ``_C`` unguarded almost everywhere, so a placeholder module
  is installed *before the first detectron2 import*. Every attribute access on the placeholder
  raises :class:`MissingCompiledOpError` naming the op and how to get it.
* detectron2 **main** built from source (compiled ops present, or absent: main falls back by
  itself, so the placeholder must never be installed there).

Both report ``__version__ == "0.6"``: feature-detect, never compare versions. Every such check
of bestie_d2 is here:

* :func:`prepare_detectron2` (v0.6 only: the ``_C`` placeholder and the numpy / Pillow aliases
  v0.6 still uses; on main importing bestie_d2 changes nothing global);
* :func:`use_fast_coco_eval`, :func:`trainer_state_has_optimizer`,
  :func:`trainer_has_after_backward`, :func:`create_local_process_group`: what the two versions
  do differently in training;
* :func:`detectron2_info`: the version, origin and compiled ops, for logs and results files;
* :func:`quiet_library_imports`: the deprecation warnings that importing detectron2 / fvcore
  prints under current torch (``torch.jit.script`` is deprecated, twice, from fvcore's focal
  loss), silenced while ``import bestie_d2`` imports them, and only then.

Call :func:`prepare_detectron2` before importing any detectron2 submodule. ``import bestie_d2``
does it for you.
"""
import contextlib
import importlib.util
import json
import logging
import os
import sys
import types
import warnings

__all__ = [
    "MissingCompiledOpError",
    "prepare_detectron2",
    "has_compiled_ops",
    "is_v06_era",
    "use_fast_coco_eval",
    "placeholder_installed",
    "shims_applied",
    "trainer_state_has_optimizer",
    "trainer_has_after_backward",
    "create_local_process_group",
    "detectron2_info",
    "quiet_library_imports",
]

logger = logging.getLogger(__name__)

_STATE = {"prepared": False, "placeholder": False, "compiled": None, "shims": False}

BUILD_HINT = (
    "This detectron2 install has no compiled ops (detectron2._C). Deformable convolutions, "
    "rotated boxes / rotated NMS, ROIAlignRotated and the fast C++ COCO evaluation are unavailable. "
    "To get them, build detectron2 from source: "
    "`pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'` "
    "(or clone it and run `pip install -e .`) on a machine with a C++ compiler (and CUDA for GPU ops)."
)


class MissingCompiledOpError(ImportError):
    """Raised when code asks the detectron2._C placeholder for a compiled op."""


class _CompiledOpsPlaceholder(types.ModuleType):
    """Stands in for ``detectron2._C``; any attribute access raises a clear error."""

    def __init__(self):
        super().__init__("detectron2._C")
        self.__file__ = "<bestie_d2 placeholder for detectron2._C>"
        self.__bestie_placeholder__ = True
        # Diagnostics that detectron2's collect_env (run by default_setup) asks for: harmless
        # version helpers, answered truthfully instead of raising.
        self.get_compiler_version = lambda: "none (detectron2 installed without compiled ops)"
        self.get_cuda_version = lambda: "none"
        self.has_cuda = lambda: False

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise MissingCompiledOpError(
            f"detectron2 compiled op '_C.{name}' was requested, but {BUILD_HINT}"
        )


def _detectron2_spec_exists() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def is_v06_era() -> bool:
    """True for detectron2 code that imports ``_C`` unguarded (v0.6 and earlier).

    ``detectron2.utils.develop`` arrived with the "usable without C extensions" change (PR #3909).
    """
    if not _detectron2_spec_exists():
        return False
    return importlib.util.find_spec("detectron2.utils.develop") is None


def _apply_shims() -> None:
    """Aliases removed by Pillow>=10 / numpy>=1.24 that v0.6 still uses (main does not)."""
    try:
        import PIL.Image

        if not hasattr(PIL.Image, "LINEAR"):
            PIL.Image.LINEAR = PIL.Image.BILINEAR
    except ImportError:  # pragma: no cover
        pass
    import numpy as np

    for name, value in (("int", int), ("float", float), ("str", str), ("object", object), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, value)


def prepare_detectron2() -> None:
    """Make detectron2 importable here; idempotent. Must run before any detectron2 import.

    Only for v0.6-era code: the numpy / Pillow aliases, and without compiled ops the ``_C``
    placeholder. On detectron2 main it only records whether ``_C`` is importable.
    """
    if _STATE["prepared"]:
        return
    _STATE["prepared"] = True
    if not _detectron2_spec_exists():
        return
    v06 = is_v06_era()
    if v06:
        _apply_shims()
        _STATE["shims"] = True
    existing = sys.modules.get("detectron2._C")
    if existing is not None:
        _STATE["compiled"] = not getattr(existing, "__bestie_placeholder__", False)
        _STATE["placeholder"] = not _STATE["compiled"]
        return
    try:
        importlib.import_module("detectron2._C")
        _STATE["compiled"] = True
    except ImportError:
        _STATE["compiled"] = False
        if not v06:  # main guards its own _C imports and falls back by itself
            return
        sys.modules["detectron2._C"] = _CompiledOpsPlaceholder()
        _STATE["placeholder"] = True
        logger.info("detectron2 without compiled ops: installed the detectron2._C placeholder")


@contextlib.contextmanager
def quiet_library_imports():
    """A block in which the import-time deprecation warnings of detectron2 and fvcore under
    current torch / setuptools are not shown (``torch.jit.script`` is deprecated: fvcore scripts
    its focal losses when imported; ``pkg_resources``: ``detectron2.model_zoo``). Nothing else is
    filtered, and nothing after the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated", category=UserWarning)
        yield


def has_compiled_ops() -> bool:
    """True when the real ``detectron2._C`` extension is importable."""
    prepare_detectron2()
    return bool(_STATE["compiled"])


def placeholder_installed() -> bool:
    prepare_detectron2()
    return bool(_STATE["placeholder"])


def use_fast_coco_eval() -> bool:
    """The ``use_fast_impl`` value for COCOEvaluator: only with the real compiled ops."""
    return has_compiled_ops()


def shims_applied() -> bool:
    """True when the numpy / Pillow aliases for v0.6 were set (never on detectron2 main)."""
    prepare_detectron2()
    return bool(_STATE["shims"])


def trainer_state_has_optimizer() -> bool:
    """True when ``DefaultTrainer.state_dict`` holds the optimizer state (detectron2 main: through
    its ``_trainer``); v0.6's keeps only the iteration and the hooks (LR scheduler), so a resumed
    run would restart Adam's moments unless the checkpointer saves the optimizer itself."""
    from detectron2.engine import DefaultTrainer

    return "state_dict" in vars(DefaultTrainer)


def trainer_has_after_backward() -> bool:
    """True when trainers call the hooks' ``after_backward`` between backward and step (main)."""
    from detectron2.engine import TrainerBase

    return hasattr(TrainerBase, "after_backward")


def create_local_process_group(procs_per_machine: int, num_machines: int, machine_rank: int) -> None:
    """The per-machine process group of ``comm.get_local_rank()``, as detectron2's launcher makes it.

    Main has ``comm.create_local_process_group``; v0.6's launcher sets the module global
    ``comm._LOCAL_PROCESS_GROUP`` itself (every process creates every machine's group).
    """
    from detectron2.utils import comm

    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(procs_per_machine)
        return
    import torch.distributed as dist

    for i in range(num_machines):
        pg = dist.new_group(list(range(i * procs_per_machine, (i + 1) * procs_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg


#: written by ``scripts/install_detectron2.py --source`` into the venv
SOURCE_RECORD = "detectron2_source.json"


def detectron2_info() -> dict:
    """``version``, ``path``, ``compiled_ops``, and ``source`` / ``commit`` / ``sha256`` when known."""
    import detectron2

    info = {
        "version": getattr(detectron2, "__version__", "unknown"),
        "path": os.path.dirname(detectron2.__file__),
        "compiled_ops": has_compiled_ops(),
    }
    record = os.path.join(sys.prefix, SOURCE_RECORD)
    if os.path.isfile(record):
        with open(record) as f:
            info.update({k: v for k, v in json.load(f).items() if k in ("source", "commit", "sha256")})
    elif placeholder_installed():
        info["source"] = "v0.6 Python files from the PyPI sdist pb1-detectron2 (scripts/install_detectron2.py)"
    return info

"""The detectron2 compatibility layer: fallback install, placeholder _C, evaluator choice."""
import functools
import subprocess
import sys

import pytest

import bestie_d2  # noqa: F401  (prepares detectron2 before its first import)
from bestie_d2 import compat
from conftest import scaled_timeout


def test_detectron2_imports_with_bestie():
    import detectron2.data  # noqa: F401
    import detectron2.engine  # noqa: F401
    import detectron2.evaluation  # noqa: F401
    import detectron2.modeling  # noqa: F401
    from detectron2 import model_zoo

    # the model-zoo YAMLs are installed (our Mask R-CNN stage relies on detectron2's built-ins)
    assert model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")


def test_placeholder_error_names_op_and_fix():
    if compat.has_compiled_ops():
        pytest.skip("this detectron2 has compiled ops; no placeholder")
    if not compat.is_v06_era():
        assert not compat.placeholder_installed()  # never on detectron2 main
        pytest.skip("detectron2 main without _C: main's own fallback is used")
    assert compat.placeholder_installed()
    from detectron2 import _C

    with pytest.raises(compat.MissingCompiledOpError) as e:
        _C.box_iou_rotated
    msg = str(e.value)
    assert "box_iou_rotated" in msg and "build detectron2 from source" in msg
    # an ImportError subclass, so detectron2's own guarded imports treat it as "missing"
    assert isinstance(e.value, ImportError)


def _fresh(code):
    """Run ``code`` in a fresh interpreter (nothing imported yet); its last stdout line."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled_timeout(180))
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


@functools.lru_cache(maxsize=None)
def _real_compiled_ops_present():
    """Ground truth without bestie_d2: does detectron2 ship a built ``_C`` extension file?"""
    return _fresh("import importlib.util as u; s = u.find_spec('detectron2._C'); "
                  "print(bool(s and s.origin and s.origin.endswith(('.so', '.pyd'))))") == "True"


def test_rotated_op_fails_clearly_not_deep():
    import torch
    from detectron2.layers import nms_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0], [10.0, 10.0, 4.0, 4.0, 0.0]])
    if compat.has_compiled_ops():
        assert nms_rotated(boxes, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0]
        return
    with pytest.raises(Exception) as e:
        nms_rotated(boxes, torch.ones(2), 0.5)
    assert "nms_rotated" in str(e.value)  # the missing op is named (v0.6: torch.ops has no such op)


def test_compiled_ops_detection_matches_the_install():
    from detectron2.evaluation import COCOEvaluator  # noqa: F401

    present = _real_compiled_ops_present()
    assert compat.has_compiled_ops() == present
    # the placeholder exactly where v0.6 code needs it: no real _C and v0.6-era detectron2
    assert compat.placeholder_installed() == (not present and compat.is_v06_era())
    assert compat.use_fast_coco_eval() == present


def test_prepare_is_idempotent_and_runs_before_detectron2_in_fresh_process():
    code = (
        "import bestie_d2, sys\n"
        "from bestie_d2 import compat\n"
        "compat.prepare_detectron2(); compat.prepare_detectron2()\n"
        "import detectron2.structures, detectron2.layers\n"
        "c = sys.modules.get('detectron2._C')\n"
        "print(compat.placeholder_installed(), getattr(c, '__bestie_placeholder__', False))\n"
    )
    expected = not _real_compiled_ops_present() and compat.is_v06_era()
    assert _fresh(code) == f"{expected} {expected}"


def test_import_changes_nothing_global_on_detectron2_main():
    # numpy / PIL.Image attributes other than submodules (numpy.random, ... load lazily) keep
    # their identity, and detectron2._C is never our placeholder
    if compat.is_v06_era():
        pytest.skip("detectron2 0.6 needs the numpy / Pillow aliases (and, without _C, the placeholder)")
    code = (
        "import sys, types, numpy, PIL.Image, detectron2\n"
        "attrs = lambda m: {k: id(v) for k, v in vars(m).items() if not isinstance(v, types.ModuleType)}\n"
        "snap = lambda: (attrs(numpy), attrs(PIL.Image), sys.modules.get('detectron2._C'))\n"
        "before = snap()\n"
        "import bestie_d2\n"
        "from bestie_d2 import compat\n"
        "after = snap()\n"
        "c = sys.modules.get('detectron2._C')\n"
        "print(before[:2] == after[:2], getattr(c, '__bestie_placeholder__', False), compat.shims_applied())\n"
    )
    assert _fresh(code) == "True False False"


def test_collect_env_works_without_compiled_ops():
    # detectron2's default_setup logs collect_env_info(), which asks _C for version helpers
    from detectron2.utils.collect_env import collect_env_info

    info = collect_env_info()
    compiler = [ln for ln in info.splitlines() if ln.startswith("Compiler ")]
    if compat.placeholder_installed():  # answered by the placeholder, not an exception
        assert compiler and "without compiled ops" in compiler[0]
    else:
        assert "placeholder" not in info and "without compiled ops" not in info

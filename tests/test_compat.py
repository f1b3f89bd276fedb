"""The detectron2 compatibility layer: fallback install, placeholder _C, evaluator choice."""
import subprocess
import sys

import pytest

import bestie_d2
from bestie_d2 import compat


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


def test_rotated_op_fails_clearly_not_deep():
    if compat.has_compiled_ops():
        pytest.skip("compiled ops present")
    import torch
    from detectron2.layers import nms_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(Exception) as e:
        nms_rotated(boxes, torch.ones(1), 0.5)
    assert "nms_rotated" in str(e.value) or "detectron2" in str(e.value)


def test_fast_coco_eval_only_with_compiled_ops():
    assert compat.use_fast_coco_eval() == compat.has_compiled_ops()


def test_prepare_is_idempotent_and_runs_before_detectron2_in_fresh_process():
    code = (
        "import bestie_d2, sys\n"
        "from bestie_d2 import compat\n"
        "compat.prepare_detectron2(); compat.prepare_detectron2()\n"
        "import detectron2.structures, detectron2.layers\n"
        "print('placeholder' if compat.placeholder_installed() else 'no-placeholder')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] in ("placeholder", "no-placeholder")


def test_version_string_present():
    assert bestie_d2.__version__


def test_collect_env_works_without_compiled_ops():
    # detectron2's default_setup logs collect_env_info(), which asks _C for version helpers
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()

"""SelfRefinementHook: statistics stay device tensors between writes and are written as means over
the refined steps every ``log_period`` iterations and at the last one."""
from types import SimpleNamespace

import pytest
import torch
from detectron2.utils.events import EventStorage

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.engine.hooks import SelfRefinementHook


def run(hook, n_iter, start_iter=0):
    model = SimpleNamespace(refine_active=False, last_refine_stats=None)
    hook.trainer = SimpleNamespace(model=model, iter=0, max_iter=n_iter)
    written = []
    with EventStorage(0) as storage:
        hook.trainer.storage = storage
        for it in range(n_iter):
            storage.iter = it
            hook.trainer.iter = it
            hook.before_step()
            if model.refine_active:
                model.last_refine_stats = {"refined_instances_per_image": torch.tensor(float(it), dtype=torch.float64),
                                           "refine_time_s": 0.5}
            hook.after_step()
            h = storage.histories()
            if "refine/refined_instances_per_image" in h:
                written.append((it, h["refine/refined_instances_per_image"].values()[-1][0]))
            assert storage.history("refine/active").latest() == float(it >= start_iter)
    return written


def test_hook_writes_means_at_the_log_period():
    written = run(SelfRefinementHook(True, 0, log_period=4), 10)
    writes = sorted(set(written))
    assert [it for it, _ in writes] == [3, 4, 5, 6, 7, 8, 9]  # latest value seen after each step
    values = dict(writes)
    assert values[3] == pytest.approx((0 + 1 + 2 + 3) / 4)
    assert values[7] == pytest.approx((4 + 5 + 6 + 7) / 4)
    assert values[9] == pytest.approx((8 + 9) / 2)  # the last iteration flushes


def test_hook_with_refinement_off_until_start_iter():
    written = run(SelfRefinementHook(True, 6, log_period=4), 9, start_iter=6)
    assert dict(written)[7] == pytest.approx((6 + 7) / 2)
    assert run(SelfRefinementHook(False, 0, log_period=2), 5, start_iter=99) == []

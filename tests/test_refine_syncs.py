"""Host synchronisations of refinement and decoding on the torch (device) path, counted on the CPU.

Without a GPU, the ops that would synchronise on CUDA are recorded with a ``TorchDispatchMode``:
``aten._local_scalar_dense`` (``item`` / ``bool`` / ``int`` of a tensor), ``nonzero``,
``masked_select``, the ``unique`` ops, ``equal``, ``is_nonzero``, indexing / index assignment with a
boolean mask (a hidden ``nonzero``) and ``repeat_interleave`` without ``output_size``. Device values
are read only through ``components.to_host`` (one copy each, counted); ``Tensor.numpy`` anywhere
else and ``Tensor.tolist`` raise. Measured counts (backends "torch" and "triton", the
latter under Triton's interpreter here): ``refine_image_label`` 1 (the labelling's counts and the
grouping's size bounds, one transfer), ``refine_point`` 1,
``decode_instances`` 2 (that one plus the instance count). With CUDA, the same calls
run under ``torch.cuda.set_sync_debug_mode("error")`` between those reads.
"""
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import bestie_d2  # noqa: F401  (prepares detectron2)
from bestie_d2.component_engine import ClusterParams
from bestie_d2.modeling.post_processing import decode_instances
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label, refine_point

from test_pinned_outputs import DECODE, refine_inputs
from triton_device import TRITON_OK

# the device paths: torch labelling and, where Triton runs on CPU tensors (its interpreter), the kernels
DEVICE_BACKENDS = ["torch"] + (["triton"] if TRITON_OK and not torch.cuda.is_available() else [])

aten = torch.ops.aten
SYNC_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
            aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
            aten.equal.default, aten.is_nonzero.default}


def _bool_index(indices):
    return any(t is not None and t.dtype in (torch.bool, torch.uint8) for t in indices)


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNC_OPS:
            self.ops.append(str(func))
        elif func.overloadpacket in (aten.index, aten.index_put, aten.index_put_) and _bool_index(args[1]):
            self.ops.append(f"{func} (boolean mask)")
        elif func.overloadpacket is aten.repeat_interleave and kwargs.get("output_size") is None \
                and (len(args) < 4 or args[3] is None):
            self.ops.append(f"{func} (no output_size)")
        return func(*args, **kwargs)


@pytest.fixture
def count_syncs(monkeypatch):
    """Runs ``fn`` and returns the list of host syncs it would make on CUDA."""
    reads = []
    numpy = torch.Tensor.numpy

    def guarded_numpy(self, *a, **k):
        if sys._getframe(1).f_code.co_name != "to_host":
            raise AssertionError("Tensor.numpy outside components.to_host on the torch path")
        reads.append("to_host")
        return numpy(self, *a, **k)

    def no_tolist(self):
        raise AssertionError("Tensor.tolist on the torch path")

    def run(fn):
        reads.clear()
        monkeypatch.setattr(torch.Tensor, "numpy", guarded_numpy)
        monkeypatch.setattr(torch.Tensor, "tolist", no_tolist)
        try:
            with SyncCounter() as mode:
                out = fn()
        finally:
            monkeypatch.undo()
        return out, mode.ops + reads

    return run


@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
def test_refine_image_label_syncs(count_syncs, backend):
    (logits, center, offset, label, wsss), _ = refine_inputs()
    for cluster in (ClusterParams(), None):
        (targets, stats), syncs = count_syncs(lambda: refine_image_label(
            logits, center, offset, label, wsss, RefineParams(components_backend=backend), cluster))
        assert syncs == ["to_host"], syncs
        assert all(torch.is_tensor(v) for k, v in stats.items() if k != "refine_time_s")
        assert float(stats["refined_instances_per_image"]) > 0  # a real case, not an empty one


def test_refine_point_syncs(count_syncs):
    (_, _, offset, label, wsss), points = refine_inputs()
    (targets, stats), syncs = count_syncs(lambda: refine_point(offset, points, label, wsss))
    assert syncs == ["to_host"], syncs
    assert float(stats["refined_instances_per_image"]) > 0


@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
def test_decode_syncs(count_syncs, backend):
    for cluster in (ClusterParams(), None):
        (masks, _, _), syncs = count_syncs(lambda: decode_instances(
            DECODE["a/sem_prob"], DECODE["a/center"], DECODE["a/offset"], cluster=cluster, backend=backend))
        assert masks.shape[0] > 0 and syncs == ["to_host"] * 2, syncs


def test_counter_sees_syncs(count_syncs):
    """The counter is not blind: the usual sync patterns are caught."""
    x = torch.arange(6.0)
    _, syncs = count_syncs(lambda: (x[x > 2], x.sum().item(), x.nonzero(),
                                    torch.repeat_interleave(torch.tensor([1, 2]))))
    assert len(syncs) == 4, syncs
    with pytest.raises(AssertionError, match="numpy"):
        count_syncs(lambda: x.numpy())
    with pytest.raises(AssertionError, match="tolist"):
        count_syncs(lambda: x.tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sync_debug_mode(monkeypatch):
    """On CUDA: no synchronisation outside ``to_host`` (sync debug mode "error" raises on one)."""
    import bestie_d2.component_engine.centers as m1
    import bestie_d2.component_engine.labelling as m2
    import bestie_d2.component_engine.labelling_torch as m5
    import bestie_d2.component_engine.labelling_triton as m6
    import bestie_d2.component_engine.peaks as m7
    import bestie_d2.modeling.post_processing as m3
    import bestie_d2.modeling.self_refinement as m4

    reads = []

    def counted(t):
        torch.cuda.set_sync_debug_mode(0)
        try:
            reads.append(1)
            return t.cpu().numpy()
        finally:
            torch.cuda.set_sync_debug_mode("error")

    for m in (m1, m2, m3, m4, m5, m6, m7):
        monkeypatch.setattr(m, "to_host", counted)
    (logits, center, offset, label, wsss), points = refine_inputs()
    args = [t.cuda() for t in (logits, center, offset, label, wsss)]
    points_host = list(points)  # as the data loader gives them: one copy per batch, no sync
    points = [p.cuda() for p in points]
    dec = [DECODE[f"a/{k}"].cuda() for k in ("sem_prob", "center", "offset")]
    refine_image_label(*args, RefineParams(), ClusterParams())  # warm-up (allocator, kernels)
    refine_point(args[2], points, args[3], args[4])
    decode_instances(*dec, cluster=ClusterParams())
    torch.cuda.synchronize()
    counts = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for fn in (lambda: refine_image_label(*args, RefineParams(), ClusterParams()),
                   lambda: refine_point(args[2], points, args[3], args[4]),
                   lambda: refine_point(args[2], points_host, args[3], args[4]),
                   lambda: decode_instances(*dec, cluster=ClusterParams())):
            reads.clear()
            fn()
            counts.append(len(reads))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert counts == [1, 1, 1, 2]

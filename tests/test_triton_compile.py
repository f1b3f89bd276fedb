"""Every Triton kernel of the component engine compiles for a Hopper GPU (sm_90), here, without one.

The kernels run under Triton's interpreter in the rest of the suite, which accepts some programs
the compiler refuses. So the launches of one refinement (with clustering), one decoding, the
binary-mask API and the peak-candidate fallback (and a decoding of 600-px rows, for the widest
tiles) are recorded (``kernels.launch.recording``, with
the GPU's tile shapes) with their argument types and constexprs, and a subprocess without ``TRITON_INTERPRET`` compiles each
distinct launch with ``triton.compile(..., target=GPUTarget("cuda", 90, 32))`` down to a cubin
(Triton ships its own ``ptxas``). A kernel that only the interpreter accepts fails here.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from bestie_d2.component_engine import ClusterParams, group_components, label_class_maps
from bestie_d2.component_engine.connected_components import connected_components
from bestie_d2.modeling.post_processing import decode_instances
from bestie_d2.modeling.self_refinement import RefineParams, refine_image_label

from repo_paths import REPO
from triton_device import DEVICE, TRITON_OK

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_refine import synthetic_batch  # noqa: E402

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(not TRITON_OK or torch.cuda.is_available(),
                                 reason="needs Triton, and runs where the kernels are interpreted (no GPU)")]

TYPES = {torch.int32: "i32", torch.int64: "i64", torch.float32: "fp32", torch.float64: "fp64", torch.uint8: "u8",
         torch.int8: "i8", torch.bool: "i1", torch.float16: "fp16", torch.bfloat16: "bf16"}

COMPILER = r"""
import importlib, json, sys, time
import triton
from triton.backends.compiler import GPUTarget
for rec in json.load(open(sys.argv[1])):
    fn = getattr(importlib.import_module(rec["module"]), rec["name"])
    names = [p.name for p in fn.params]
    constexprs = {n: v for n, v in rec["meta"].items() if n in names}
    options = {n: v for n, v in rec["meta"].items() if n not in names}
    args = [n for n in names if n not in constexprs]
    signature = dict(zip(args, rec["types"]))
    signature.update({n: "constexpr" for n in constexprs})
    t = time.time()
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    assert out.asm.get("cubin"), rec["name"]
    print(f"compiled {rec['module']}.{rec['name']} for sm_90 in {time.time() - t:.1f} s", flush=True)
"""


def arg_type(a):
    if torch.is_tensor(a):
        return "*" + TYPES[a.dtype]
    if isinstance(a, bool):
        return "i1"
    if isinstance(a, int):
        return "i32" if -(2 ** 31) <= a < 2 ** 31 else "i64"
    if isinstance(a, float):
        return "fp32"
    raise TypeError(type(a))


def recorded_launches():
    from bestie_d2.component_engine.kernels.launch import recording

    inputs = [t.to(DEVICE) for t in synthetic_batch(2, 48, 6)[0]]
    with recording(gpu_shapes=True) as rec:
        refine_image_label(*inputs, RefineParams(components_backend="triton"), ClusterParams())
        logits, center, offset = inputs[:3]
        decode_instances(logits[0].softmax(0), center[0], offset[0], cluster=ClusterParams(), backend="triton")
        wide = [t.to(DEVICE) for t in synthetic_batch(1, 600, 6)[0]]  # rows of 600 px: the 1024-wide tiles
        decode_instances(wide[0][0, :, :24].softmax(0).contiguous(), wide[1][0, :, :24].contiguous(),
                         wide[2][0, :, :24].contiguous(), cluster=ClusterParams(), backend="triton")
        connected_components(inputs[4] > 0, 8, backend="triton")
        cb = label_class_maps(inputs[4].to(torch.uint8), 1, backend="triton")  # no peaks_for: the fallback
        group_components(cb, center.contiguous(), offset, threshold=0.2, nms_kernel=5)
    seen = {}
    for kernel, _, args, meta in rec:
        fn = getattr(kernel, "fn", kernel)
        key = (fn.__module__, fn.__name__, tuple(arg_type(a) for a in args),
               json.dumps({k: v for k, v in meta.items()}, sort_keys=True))
        seen[key] = {"module": fn.__module__, "name": fn.__name__, "types": list(key[2]), "meta": dict(meta)}
    return list(seen.values())


def test_every_kernel_compiles_for_sm90(tmp_path):
    launches = recorded_launches()
    names = {r["name"] for r in launches}
    assert len(names) >= 14, sorted(names)  # every kernel of the engine was launched
    spec = tmp_path / "launches.json"
    spec.write_text(json.dumps(launches))
    script = tmp_path / "compile.py"
    script.write_text(COMPILER)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(script), str(spec)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("compiled ") == len(launches), out.stdout

"""Where the Triton tests run: CUDA when there is a GPU, else CPU tensors under Triton's interpreter
(``conftest.py`` sets ``TRITON_INTERPRET=1`` before ``bestie_d2`` is imported).

``DEVICE``: the device the kernels' inputs go to; ``needs_triton``: a skip marker for a machine
where neither works (no Triton installed).
"""
import pytest
import torch

from bestie_d2.component_engine.backends import triton_status

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRITON_OK, WHY_NOT = triton_status(DEVICE)
needs_triton = pytest.mark.skipif(not TRITON_OK, reason=f"Triton kernels cannot run here: {WHY_NOT}")

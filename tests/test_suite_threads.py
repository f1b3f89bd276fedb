"""Issue 21, item 12: the suite and the processes it starts run with ``BESTIE_TEST_THREADS`` (1)
torch threads, so a CPU-bound neighbour slows it by the load, not 10-20x (BENCHMARKS.md, "The test
suite under load")."""
import os
import subprocess
import sys

import torch

from conftest import TEST_THREADS, scaled_timeout


def test_suite_runs_with_the_test_thread_count():
    assert TEST_THREADS == int(os.environ.get("BESTIE_TEST_THREADS", "1"))
    assert torch.get_num_threads() == TEST_THREADS


def test_started_processes_inherit_it():
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                       capture_output=True, text=True, timeout=scaled_timeout(300))
    assert r.returncode == 0 and int(r.stdout.strip()) == TEST_THREADS, r.stderr[-500:]


def test_timeouts_scale_with_the_load(monkeypatch, request):
    """Test timeouts (pytest-timeout's, through conftest's hook) and the timeouts of started
    processes grow with the load: 2 cores at load 8 give 4x."""
    import conftest

    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 8.0, 8.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert conftest.load_factor() == 4.0 and conftest.scaled_timeout(300) == 1200.0
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert conftest.scaled_timeout(300) == 300.0  # idle: as written
    hooks = request.config.pluginmanager.hook.pytest_timeout_set_timer.get_hookimpls()
    assert any(impl.plugin is conftest or getattr(impl.plugin, "__file__", "") == conftest.__file__ for impl in hooks)

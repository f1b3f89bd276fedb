"""Issue 21, item 12: the suite and the processes it starts run with ``BESTIE_TEST_THREADS`` (1)
torch threads, so a CPU-bound neighbour slows it by the load, not 10-20x (BENCHMARKS.md, "The test
suite under load")."""
import os
import subprocess
import sys

import torch

from conftest import TEST_THREADS


def test_suite_runs_with_the_test_thread_count():
    assert TEST_THREADS == int(os.environ.get("BESTIE_TEST_THREADS", "1"))
    assert torch.get_num_threads() == TEST_THREADS


def test_started_processes_inherit_it():
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and int(r.stdout.strip()) == TEST_THREADS, r.stderr[-500:]

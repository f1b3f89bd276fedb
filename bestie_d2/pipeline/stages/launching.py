"""Running one stage under Detectron2's ``launch`` and getting its result back.

A stage function runs in every process (``launch``: one per GPU, or ``--num-gpus`` CPU processes
with gloo; with one process it runs in the calling process). It returns a json-serialisable dict
on every rank; the main process writes it to the stage's ``result.json`` and all ranks then meet
at a barrier, so the file exists (on every machine sharing the folder) when ``launch`` returns.
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ...engine.launch import launch
from ...utils.io import atomic_write

__all__ = ["ProcessLayout", "run_launched", "to_json"]

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class ProcessLayout:
    """``--num-gpus`` (processes per machine), ``--num-machines``, ``--machine-rank``, ``--dist-url``;
    ``log_file``: every process's log (rank > 0: ``<log_file>.rank<r>``); ``worker_init``: a
    picklable function every stage process calls first (e.g. to register a user's data sets)."""

    num_gpus: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
    log_file: Optional[str] = None
    worker_init: Optional[Callable[[], None]] = None

    @property
    def world_size(self) -> int:
        return self.num_gpus * self.num_machines


def to_json(obj):
    """``obj`` with numpy / torch numbers turned into plain floats (a json round trip)."""
    return json.loads(json.dumps(obj, default=float))


def _stage_process(fn, stage_dir, layout: ProcessLayout, args):
    if comm.get_world_size() > 1:  # a fresh process: loggers, threads
        rank = comm.get_rank()
        for name, abbrev in (("bestie_d2", "bestie"), ("detectron2", "d2"), ("fvcore", None)):
            setup_logger(layout.log_file, distributed_rank=rank, name=name, abbrev_name=abbrev)
        if not torch.cuda.is_available() and not os.environ.get("OMP_NUM_THREADS"):  # CPU processes share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // layout.num_gpus))
    if layout.worker_init is not None:
        layout.worker_init()
    result = fn(*args)
    if comm.is_main_process():
        atomic_write(os.path.join(stage_dir, RESULT_FILE), json.dumps(to_json(result), indent=2))
    comm.synchronize()


def run_launched(fn: Callable[..., dict], stage_dir: str, layout: ProcessLayout, *args) -> dict:
    """``fn(*args)`` in the processes of ``layout``; returns the main process's result (``{}`` on a
    machine that cannot see the main machine's folder)."""
    path = os.path.join(stage_dir, RESULT_FILE)
    if layout.machine_rank == 0 and os.path.exists(path):
        os.remove(path)
    launch(_stage_process, layout.num_gpus, num_machines=layout.num_machines, machine_rank=layout.machine_rank,
           dist_url=layout.dist_url, args=(fn, stage_dir, layout, args))
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        if layout.machine_rank == 0:
            raise RuntimeError(f"the stage ended without writing {path}") from None
        logging.getLogger(__name__).warning(f"{path} not visible on machine {layout.machine_rank}")
        return {}

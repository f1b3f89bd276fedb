"""``launch``: detectron2's launcher, plus a CPU/gloo path for machines without GPUs.

detectron2 0.6's ``launch`` asserts CUDA in every worker; main falls back to gloo. This wrapper
gives both the same behaviour (the local process group is made by
:func:`bestie_d2.compat.create_local_process_group`): with CUDA it calls detectron2's ``launch`` unchanged; without it,
``num_gpus_per_machine`` means "processes per machine" and each process joins a gloo group.
"""
import logging
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

from .. import compat

__all__ = ["launch", "launch_from_args"]

logger = logging.getLogger(__name__)
DEFAULT_TIMEOUT = timedelta(minutes=30)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_worker(local_rank, main_func, world_size, procs, machine_rank, dist_url, args, timeout):
    rank = machine_rank * procs + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    compat.create_local_process_group(procs, world_size // procs, machine_rank)
    comm.synchronize()
    main_func(*args)
    comm.synchronize()
    dist.destroy_process_group()


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_machines × num_gpus_per_machine`` processes (see module doc)."""
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 or torch.cuda.is_available():
        return d2_launch(main_func, num_gpus_per_machine, num_machines=num_machines, machine_rank=machine_rank,
                         dist_url=dist_url, args=args, timeout=timeout)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    logger.info(f"No CUDA: launching {num_gpus_per_machine} CPU processes per machine with gloo ({dist_url})")
    mp.spawn(_cpu_worker, nprocs=num_gpus_per_machine,
             args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout), daemon=False)


def launch_from_args(main_func, args, *extra):
    """``launch(main_func, ...)`` with the process layout of parsed ``default_argument_parser`` args
    (``num_gpus``, ``num_machines``, ``machine_rank``, ``dist_url``); ``main_func(args, *extra)``
    runs in every process."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, *extra),
    )

"""Periodic checkpoints that keep the last few: the disk a run needs stays bounded.

An R50 BESTIE checkpoint is about 634 MiB (211 MiB of weights, 422 MiB of Adam moments); the VOC
schedule (50,000 iterations, ``SOLVER.CHECKPOINT_PERIOD`` 5,000) wrote 10 periodic checkpoints
plus ``model_final.pth``, which duplicated the last periodic one (about 7 GB a run).
:class:`KeepLastPeriodicCheckpointer` replaces detectron2's ``PeriodicCheckpointer`` hook in
:class:`~bestie_d2.engine.trainer.Trainer`:

* every ``period`` iterations it writes ``model_<iteration>.pth`` as detectron2 does, then deletes
  the older periodic files of the output folder beyond the newest ``max_to_keep``
  (``SOLVER.CHECKPOINT_MAX_KEEP``; 0 keeps all), including those of an earlier run that this one
  resumed (the folder is scanned, not only this run's files); the file ``last_checkpoint`` names
  is never deleted;
* at the last iteration it writes ``model_final.pth`` only, also when a periodic checkpoint falls
  on that iteration (the same weights under two names before).
"""
import logging
import os
import re

from detectron2.engine import hooks

__all__ = ["KeepLastPeriodicCheckpointer", "periodic_checkpoints"]

logger = logging.getLogger(__name__)


def periodic_checkpoints(folder: str, prefix: str = "model"):
    """``[(iteration, path)]`` of the periodic checkpoints ``<prefix>_<7 digits>.pth`` in
    ``folder``, oldest first (``model_final.pth`` and other files are not listed)."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d{{7}})\.pth$")
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := pattern.match(n))]
    return sorted(found)


class KeepLastPeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's ``PeriodicCheckpointer`` hook that keeps the newest ``max_to_keep`` periodic
    checkpoints of the output folder and writes no periodic file at the last iteration (module doc).

    Args:
        checkpointer: the trainer's checkpointer (``save_dir`` = ``OUTPUT_DIR``).
        period: ``SOLVER.CHECKPOINT_PERIOD`` (iterations).
        max_to_keep: ``SOLVER.CHECKPOINT_MAX_KEEP``; 0 or None keeps every periodic checkpoint.
        file_prefix: file names ``<prefix>_<iteration:07d>.pth`` and ``<prefix>_final.pth``.
    """

    def __init__(self, checkpointer, period: int, max_to_keep=None, file_prefix: str = "model"):
        super().__init__(checkpointer, period, file_prefix=file_prefix)  # deletion is ours (the folder)
        self.keep = int(max_to_keep) if max_to_keep else 0

    def step(self, iteration: int, **kwargs) -> None:
        iteration = int(iteration)
        state = {"iteration": iteration, **kwargs}
        final = self.max_iter is not None and iteration >= self.max_iter - 1
        if final:
            self.checkpointer.save(f"{self.file_prefix}_final", **state)
        elif (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **state)
        else:
            return
        self.prune()

    def prune(self):
        """Delete the periodic checkpoints of ``save_dir`` beyond the newest ``keep`` (never the
        one ``last_checkpoint`` names); one log line. Returns the deleted paths."""
        ckpt = self.checkpointer
        if not self.keep or not ckpt.save_dir or not ckpt.save_to_disk:
            return []
        last = ckpt.get_checkpoint_file() if ckpt.has_checkpoint() else None
        old = [p for _, p in periodic_checkpoints(ckpt.save_dir, self.file_prefix)[:-self.keep]]
        old = [p for p in old if last is None or os.path.abspath(p) != os.path.abspath(last)]
        for p in old:
            os.unlink(p)
        if old:
            logger.info(f"Deleted {len(old)} older periodic checkpoint(s) ({', '.join(os.path.basename(p) for p in old)}); "
                        f"keeping the newest {self.keep} (SOLVER.CHECKPOINT_MAX_KEEP) in {ckpt.save_dir}")
        return old

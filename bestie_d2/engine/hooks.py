"""Training hooks."""
import logging

import torch

from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["SelfRefinementHook", "unwrap_model"]

logger = logging.getLogger(__name__)


def unwrap_model(model):
    """The module behind a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


class SelfRefinementHook(HookBase):
    """Owns the self-refinement schedule (docs/method.md §5) and logs its statistics.

    Before each step it sets ``model.refine_active = enabled and iter >= start_iter`` (the model
    computes refined targets inside its training forward on detached outputs). After each step it
    adds the statistics the model left in ``model.last_refine_stats`` (0-dim device tensors) to
    running sums on the device, and every ``log_period`` iterations (detectron2's writer period,
    20) and at the last iteration it reads them in one host transfer and writes their means over
    the refined steps since the last write to EventStorage, under ``refine/<name>``, so they show in
    ``metrics.json`` and TensorBoard. ``refine/active`` is written every step (a host flag).

    The schedule is a pure function of the iteration, so a resumed run continues it exactly.
    """

    def __init__(self, enabled: bool, start_iter: int = 0, log_period: int = 20):
        self.enabled = bool(enabled)
        self.start_iter = int(start_iter)
        self.log_period = max(int(log_period), 1)
        self._announced = False
        self._sums = {}  # name -> running sum (tensor or float) since the last write
        self._steps = 0

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.BESTIE.REFINE
        return cls(r.ENABLED, r.START_ITER)

    def is_active(self, iteration: int) -> bool:
        return self.enabled and iteration >= self.start_iter

    def before_step(self):
        model = unwrap_model(self.trainer.model)
        active = self.is_active(self.trainer.iter)
        model.refine_active = active
        if active and not self._announced:
            self._announced = True
            if comm.is_main_process():
                logger.info(f"Self-refinement active from iteration {self.trainer.iter}")

    def after_step(self):
        model = unwrap_model(self.trainer.model)
        stats = getattr(model, "last_refine_stats", None)
        active = bool(getattr(model, "refine_active", False))
        self.trainer.storage.put_scalar("refine/active", float(active), smoothing_hint=False)
        if stats and active:
            for k, v in stats.items():
                if torch.is_tensor(v) or isinstance(v, (int, float)):
                    self._sums[k] = self._sums[k] + v if k in self._sums else v
            self._steps += 1
            model.last_refine_stats = None
        it = self.trainer.iter
        if self._steps and ((it + 1) % self.log_period == 0 or it + 1 >= self.trainer.max_iter):
            self.write()

    def write(self):
        """The means of the statistics since the last write to EventStorage (one host read)."""
        names = list(self._sums)
        vals = [self._sums[k] for k in names]
        dev = next((v.device for v in vals if torch.is_tensor(v)), "cpu")
        host = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=dev).reshape(()) for v in vals]).cpu()
        for k, v in zip(names, host.tolist()):
            self.trainer.storage.put_scalar(f"refine/{k}", v / self._steps)
        self._sums, self._steps = {}, 0

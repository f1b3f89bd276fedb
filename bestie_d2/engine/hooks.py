"""Training hooks."""
import logging

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
    computes refined targets inside its training forward on detached outputs). After each step
    it writes the statistics the model left in ``model.last_refine_stats`` to EventStorage, under
    ``refine/<name>``, so they show in ``metrics.json`` and TensorBoard.

    The schedule is a pure function of the iteration, so a resumed run continues it exactly.
    """

    def __init__(self, enabled: bool, start_iter: int = 0):
        self.enabled = bool(enabled)
        self.start_iter = int(start_iter)
        self._announced = False

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
        storage = self.trainer.storage
        storage.put_scalar("refine/active", float(bool(getattr(model, "refine_active", False))), smoothing_hint=False)
        if not stats or not getattr(model, "refine_active", False):
            return
        for k, v in stats.items():
            try:
                storage.put_scalar(f"refine/{k}", float(v))
            except (TypeError, ValueError):
                continue
        model.last_refine_stats = None

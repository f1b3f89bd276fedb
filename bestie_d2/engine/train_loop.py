"""The training step that refuses a non-finite loss before it changes anything.

detectron2's ``SimpleTrainer.run_step`` (0.6 and main alike) runs forward, zero_grad, backward,
then ``_write_metrics``, which raises ``FloatingPointError`` on a NaN/inf loss *on the main
process only*, after the backward pass; other ranks go on to ``optimizer.step``. Neither version
has a hook between the forward and the backward pass, so :class:`FiniteCheckTrainer` keeps a
copy of ``run_step`` with one addition: the summed loss is checked on every rank before
``backward`` and ``step`` (one scalar sync per step, which ``SimpleTrainer`` already pays when it
logs the losses). The weights, and so every checkpoint, stay those of the last good iteration.
Chosen by ``SOLVER.CHECK_FINITE_LOSS`` (default on; AMP training keeps ``AMPTrainer``).
"""
import time

import torch
from detectron2.engine import SimpleTrainer

from .. import compat

__all__ = ["NonFiniteLossError", "FiniteCheckTrainer"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the step was not applied."""


class FiniteCheckTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step raises :class:`NonFiniteLossError` before backward/step."""

    def run_step(self):
        assert self.model.training, "[FiniteCheckTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            losses = loss_dict
            loss_dict = {"total_loss": loss_dict}
        else:
            losses = sum(loss_dict.values())
        if not bool(torch.isfinite(losses)):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
            raise NonFiniteLossError(
                f"Loss became non-finite at iteration {self.iter} ({parts}). Training stopped before "
                "the update; the weights and the last checkpoint are those of the last good iteration. "
                "Lower SOLVER.BASE_LR, check the inputs of this batch, or resume from the last checkpoint."
            )
        self.optimizer.zero_grad()
        losses.backward()
        if compat.trainer_has_after_backward():
            self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()

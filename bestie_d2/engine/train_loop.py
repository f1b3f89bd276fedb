"""The training step that refuses a non-finite loss before it changes anything.

detectron2's ``SimpleTrainer.run_step`` (0.6 and main alike) runs forward, zero_grad, backward,
then ``_write_metrics``, which raises ``FloatingPointError`` on a NaN/inf loss *on the main
process only*, after the backward pass; other ranks go on to ``optimizer.step``. Neither version
has a hook between the forward and the backward pass, so :class:`FiniteCheckTrainer` keeps a
copy of ``run_step`` with one addition: the summed loss is checked on every rank before
``backward`` and ``step`` (one scalar sync per step, which ``SimpleTrainer`` already pays when it
logs the losses). The weights, and so every checkpoint, stay those of the last good iteration.
Chosen by ``SOLVER.CHECK_FINITE_LOSS`` (default on).

Mixed precision (``SOLVER.AMP.ENABLED``): :class:`PrecisionAMPTrainer` is detectron2's
``AMPTrainer`` with the autocast precision of ``SOLVER.AMP.PRECISION`` (``float16`` with a gradient
scaler, or ``bfloat16`` without one) on both detectron2 versions (0.6's ``AMPTrainer`` knows only
float16 and only CUDA), the same finite-loss check before the backward pass, and autocast on the
model's device type (CUDA, or the CPU in tests). BESTIE's self-refinement and decoding take the
half-precision maps and work in float32 (the same targets as from the float32 values).
"""
import time

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer

from .. import compat

__all__ = ["NonFiniteLossError", "FiniteCheckTrainer", "PrecisionAMPTrainer", "AMP_PRECISIONS"]

AMP_PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _forward(trainer):
    """One batch through the model: ``(loss_dict, summed loss, data_time)`` (s)."""
    start = time.perf_counter()
    data = next(trainer._data_loader_iter)
    data_time = time.perf_counter() - start
    loss_dict = trainer.model(data)
    if isinstance(loss_dict, torch.Tensor):
        return {"total_loss": loss_dict}, loss_dict, data_time
    return loss_dict, sum(loss_dict.values()), data_time


def _check_finite(losses, loss_dict, iteration):
    """Raise :class:`NonFiniteLossError` when the summed loss is NaN or infinite."""
    if not bool(torch.isfinite(losses)):
        parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
        raise NonFiniteLossError(
            f"Loss became non-finite at iteration {iteration} ({parts}). Training stopped before "
            "the update; the weights and the last checkpoint are those of the last good iteration. "
            "Lower SOLVER.BASE_LR, check the inputs of this batch, or resume from the last checkpoint."
        )


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the step was not applied."""


class FiniteCheckTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step raises :class:`NonFiniteLossError` before backward/step."""

    def run_step(self):
        assert self.model.training, "[FiniteCheckTrainer] model was changed to eval mode!"
        loss_dict, losses, data_time = _forward(self)
        _check_finite(losses, loss_dict, self.iter)
        self.optimizer.zero_grad()
        losses.backward()
        if compat.trainer_has_after_backward():
            self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


class PrecisionAMPTrainer(AMPTrainer):
    """detectron2's ``AMPTrainer`` with a chosen autocast precision and the finite-loss check.

    Args:
        model, data_loader, optimizer: as ``AMPTrainer``.
        precision: ``torch.float16`` (gradient scaler on) or ``torch.bfloat16`` (no scaler: bf16
            has float32's range).
        check_finite: refuse a non-finite loss before backward / step (``SOLVER.CHECK_FINITE_LOSS``);
            with float16 the scaler also skips steps with inf / NaN gradients.
    """

    def __init__(self, model, data_loader, optimizer, precision=torch.float16, check_finite=True):
        device_type = next(model.parameters()).device.type
        scaler = torch.amp.GradScaler(device_type, enabled=precision == torch.float16)
        super().__init__(model, data_loader, optimizer, grad_scaler=scaler)
        self.precision = precision
        self.check_finite = check_finite
        self.device_type = device_type

    def run_step(self):
        assert self.model.training, "[PrecisionAMPTrainer] model was changed to eval mode!"
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict, losses, data_time = _forward(self)
        if self.check_finite:
            _check_finite(losses, loss_dict, self.iter)
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        if compat.trainer_has_after_backward():
            self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

"""``Trainer(DefaultTrainer)``: loaders, evaluators, hooks, optimizer and schedule for every stage.

One trainer serves the three kinds of model this project trains, chosen by
``MODEL.META_ARCHITECTURE``:

* ``BESTIE``: :class:`~bestie_d2.data.mappers.BestieDatasetMapper`, Adam + WarmupPolyLR,
  :class:`~bestie_d2.engine.hooks.SelfRefinementHook`;
* ``PAMClassifier``: :class:`~bestie_d2.data.pam_mapper.PAMDatasetMapper`, the four-group SGD;
* anything else (e.g. detectron2's ``GeneralizedRCNN`` for the Mask R-CNN stage): detectron2's
  default mapper and optimizer.

Evaluators come from the data set's metadata (``evaluator_type``: ``voc_instance`` or ``coco``),
except for the classifier, which reports multi-label classification mAP.

Differences from ``DefaultTrainer`` (all deliberate), made in :meth:`Trainer.__init__`:

* the training step refuses a non-finite loss *before* the backward pass and the optimizer step
  (:class:`~bestie_d2.engine.train_loop.FiniteCheckTrainer`), so the weights (and every
  checkpoint) stay those of the last good iteration; with ``SOLVER.AMP.ENABLED`` the step is
  detectron2's ``AMPTrainer`` with ``SOLVER.AMP.PRECISION`` (float16 or bfloat16) and the same check
  (:class:`~bestie_d2.engine.train_loop.PrecisionAMPTrainer`);
* checkpoints are written atomically, loading never executes pickled code
  (:class:`~bestie_d2.engine.checkpoint.SafeCheckpointer`), and on detectron2 0.6 they also hold
  the optimizer state (exact resume; main's trainer state has it already);
* multi-process DDP on the CPU (gloo) works (no ``device_ids``);
* periodic checkpoints beyond the newest ``SOLVER.CHECKPOINT_MAX_KEEP`` are deleted and the last
  iteration writes ``model_final.pth`` only
  (:class:`~bestie_d2.engine.checkpoint_retention.KeepLastPeriodicCheckpointer`); a training that
  starts or resumes removes the temporaries of checkpoint writes a killed run left behind.
"""
import logging
import os
import weakref
from collections import OrderedDict

from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.engine import hooks as d2_hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import compat
from .checkpoint import SafeCheckpointer
from .checkpoint_retention import KeepLastPeriodicCheckpointer
from .hooks import SelfRefinementHook
from .solver import build_lr_scheduler, build_optimizer
from .train_loop import AMP_PRECISIONS, FiniteCheckTrainer, PrecisionAMPTrainer

__all__ = ["Trainer", "build_evaluator", "build_step_trainer", "EVALUATOR_TYPES"]

logger = logging.getLogger(__name__)


def _is_meta(cfg, name):
    return cfg.MODEL.META_ARCHITECTURE == name


EVALUATOR_TYPES = ("voc_instance", "coco")


def build_step_trainer(cfg, model, data_loader, optimizer):
    """The training-step runner: ``PrecisionAMPTrainer`` with ``SOLVER.AMP.ENABLED`` (precision
    ``SOLVER.AMP.PRECISION``), else ``FiniteCheckTrainer`` (``SOLVER.CHECK_FINITE_LOSS``) or
    detectron2's ``SimpleTrainer``."""
    if cfg.SOLVER.AMP.ENABLED:
        name = cfg.SOLVER.AMP.PRECISION
        if name not in AMP_PRECISIONS:
            raise ValueError(f"SOLVER.AMP.PRECISION must be one of {sorted(AMP_PRECISIONS)}, got {name!r}")
        return PrecisionAMPTrainer(model, data_loader, optimizer, AMP_PRECISIONS[name], cfg.SOLVER.CHECK_FINITE_LOSS)
    step = FiniteCheckTrainer if cfg.SOLVER.CHECK_FINITE_LOSS else SimpleTrainer
    return step(model, data_loader, optimizer)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """Evaluator for ``dataset_name``: the classifier's multi-label mAP for ``PAMClassifier``; else
    ``TEST.EVALUATORS``, or when empty the data set's metadata ``evaluator_type``
    (``voc_instance``: :class:`~bestie_d2.evaluation.voc_instance.VOCInstanceEvaluator`; ``coco``:
    detectron2's ``COCOEvaluator``, masks only for BESTIE, which converts records without a COCO
    json itself). Several kinds give a ``DatasetEvaluators``."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if _is_meta(cfg, "PAMClassifier"):
        from ..evaluation.multilabel import MultiLabelClassificationEvaluator

        return MultiLabelClassificationEvaluator(dataset_name)
    kinds = list(cfg.TEST.EVALUATORS) or [MetadataCatalog.get(dataset_name).get("evaluator_type", None)]
    unknown = [k for k in kinds if k not in EVALUATOR_TYPES]
    if unknown:
        src = "TEST.EVALUATORS" if cfg.TEST.EVALUATORS else f"the evaluator_type of data set '{dataset_name}'"
        raise NotImplementedError(
            f"No evaluator {unknown[0]!r} ({src}); expected one of {', '.join(EVALUATOR_TYPES)}"
            + ("" if cfg.TEST.EVALUATORS else " (set it in the data set's metadata, or set TEST.EVALUATORS)")
        )
    evaluators = []
    for kind in kinds:
        if kind == "voc_instance":
            from ..evaluation.voc_instance import VOCInstanceEvaluator

            evaluators.append(VOCInstanceEvaluator(dataset_name, iou_thresholds=tuple(cfg.TEST.VOC_IOU_THRESHOLDS),
                                                   output_dir=output_folder))
        else:
            tasks = ("segm",) if _is_meta(cfg, "BESTIE") else None
            evaluators.append(COCOEvaluator(dataset_name, tasks=tasks, output_dir=output_folder,
                                            use_fast_impl=compat.use_fast_coco_eval()))
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


class Trainer(DefaultTrainer):
    """DefaultTrainer for BESTIE, the PAM classifier and the Mask R-CNN refinement stage."""

    def __init__(self, cfg):
        """``DefaultTrainer.__init__`` (the same in detectron2 0.6 and main), step for step, with
        three objects of our own. It builds the DDP wrapper, the step trainer and the checkpointer
        inline, with no factory to override, and calling it then replacing them would build the
        model, optimizer and data loader twice (and, on 0.6, start the loader's workers twice,
        drawing their seeds from the global RNG); so the construction order is repeated here.
        """
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        cpu = {"device_ids": None} if cfg.MODEL.DEVICE == "cpu" else {}  # ours (1): CPU/gloo DDP
        model = create_ddp_model(model, broadcast_buffers=False, **cpu)
        self._trainer = build_step_trainer(cfg, model, data_loader, optimizer)  # ours (2)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # ours (3): atomic, no unpickling; the LR scheduler is saved by hooks.LRScheduler's state
        extra = {} if compat.trainer_state_has_optimizer() else {"optimizer": optimizer}  # v0.6
        self.checkpointer = SafeCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **extra)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """``DefaultTrainer.resume_or_load``, after removing (main process, with a log line) the
        temporary files of checkpoint writes that a killed run left in ``OUTPUT_DIR``."""
        self.checkpointer.remove_stale_temporaries()
        return super().resume_or_load(resume=resume)

    def build_hooks(self):
        hooks = [
            KeepLastPeriodicCheckpointer(h.checkpointer, h.period, self.cfg.SOLVER.CHECKPOINT_MAX_KEEP)
            if type(h) is d2_hooks.PeriodicCheckpointer else h
            for h in super().build_hooks()
        ]
        if _is_meta(self.cfg, "BESTIE"):
            # before the writer so the statistics are written in the same iteration
            hooks.insert(-1 if comm.is_main_process() else len(hooks), SelfRefinementHook.from_config(self.cfg))
            if self.cfg.VIS_PERIOD > 0 and comm.is_main_process():  # training pictures (TensorBoard)
                from .training_vis import TrainingVisHook

                hooks.insert(-1, TrainingVisHook.from_config(self.cfg))  # before the PeriodicWriter
        return hooks

    @property
    def last_eval_results(self) -> dict:
        """The results of the latest evaluation during training (``{}`` before any): what
        ``DefaultTrainer``'s ``EvalHook`` stored, e.g. ``{"voc_instance": {"mAP50": ...}}``."""
        return dict(getattr(self, "_last_eval_results", None) or {})

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = cls.build_mapper(cfg, is_train=True)
        if _is_meta(cfg, "BESTIE"):
            dicts = cls.checked_train_dicts(cfg, mapper)
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)
        if _is_meta(cfg, "PAMClassifier"):  # it reads only the images: all of them must exist
            from detectron2.data import get_detection_dataset_dicts

            from ..data.input_check import check_images

            names = list(cfg.DATASETS.TRAIN)
            groups = {n: get_detection_dataset_dicts([n], filter_empty=False) for n in names}
            dicts = check_images(groups, cfg.BESTIE.DATA.MISSING_INPUT, names)
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)
        return build_detection_train_loader(cfg, mapper=mapper)

    @staticmethod
    def checked_train_dicts(cfg, mapper):
        """BESTIE's training records after the data check (``bestie_d2.data.input_check``): each
        data set of ``DATASETS.TRAIN`` is loaded and checked on its own (the class conventions are
        counted per data set); the problem list goes to ``OUTPUT_DIR/data_check_problems.txt``."""
        from detectron2.data import get_detection_dataset_dicts

        from ..data.input_check import check_training_inputs

        names = list(cfg.DATASETS.TRAIN)
        groups = {n: get_detection_dataset_dicts([n], filter_empty=False) for n in names}
        if len(names) > 1:  # as get_detection_dataset_dicts(names) would check
            from detectron2.data.detection_utils import check_metadata_consistency

            if any("annotations" in r for recs in groups.values() for r in recs[:1]):
                try:
                    check_metadata_consistency("thing_classes", names)
                except AttributeError:  # class names are not available for these data sets
                    pass
        d = cfg.BESTIE.DATA
        report = os.path.join(cfg.OUTPUT_DIR, "data_check_problems.txt") if cfg.OUTPUT_DIR and comm.is_main_process() else None
        return check_training_inputs(
            groups, mapper, d.MISSING_INPUT, names, check=d.CHECK_INPUTS,
            max_mismatch_fraction=d.MAX_LABEL_MISMATCH_FRACTION,
            max_outside_fraction=d.MAX_CUES_OUTSIDE_FRACTION, report_file=report,
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader over the records of ``dataset_name``, after checking that every
        image exists (all missing ones in one error: an evaluation never skips images)."""
        from detectron2.data import get_detection_dataset_dicts

        from ..data.input_check import check_images

        mapper = cls.build_mapper(cfg, is_train=False)
        dicts = check_images(get_detection_dataset_dicts([dataset_name], filter_empty=False), "error", [dataset_name],
                             skippable=False)
        return build_detection_test_loader(dicts, mapper=mapper if mapper is not None else DatasetMapper(cfg, False),
                                           num_workers=cfg.DATALOADER.NUM_WORKERS)

    @staticmethod
    def build_mapper(cfg, is_train):
        """The dataset mapper of ``cfg``'s meta-architecture: BestieDatasetMapper for BESTIE,
        PAMDatasetMapper for PAMClassifier, None (detectron2's DatasetMapper) otherwise."""
        if _is_meta(cfg, "BESTIE"):
            from ..data.mappers import BestieDatasetMapper

            return BestieDatasetMapper(cfg, is_train=is_train)
        if _is_meta(cfg, "PAMClassifier"):
            from ..data.pam_mapper import PAMDatasetMapper

            return PAMDatasetMapper(cfg, is_train=is_train)
        return None  # detectron2's DatasetMapper

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test, then the main process's results are shared with every rank
        (evaluators gather predictions to the main process and return {} elsewhere)."""
        results = super().test(cfg, model, evaluators)
        results = results if isinstance(results, (dict, OrderedDict)) else OrderedDict()
        if comm.get_world_size() > 1:
            results = comm.all_gather(results)[0]
        return results

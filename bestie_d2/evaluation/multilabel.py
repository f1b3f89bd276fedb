"""Multi-label classification evaluator (mean average precision over classes) for PAMClassifier."""
import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = ["MultiLabelClassificationEvaluator", "average_precision", "mean_average_precision"]

logger = logging.getLogger(__name__)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class: ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds.

    Tied scores form one threshold (the definition of scikit-learn's
    ``average_precision_score``). Returns NaN when there is no positive.

    Args:
        scores: (N,) real scores (higher = more likely positive).
        targets: (N,) binary ground truth.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets).reshape(-1) > 0
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    tp = np.cumsum(t)
    # last index of each group of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = tp[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray):
    """(N, C) scores and binary targets -> (mAP over classes with a positive, per-class AP (C,))."""
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    aps = np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    valid = ~np.isnan(aps)
    m = float(aps[valid].mean()) if valid.any() else float("nan")
    return m, aps


class MultiLabelClassificationEvaluator(DatasetEvaluator):
    """mAP (percent) of the classifier's ``logits`` against the inputs' ``image_label``.

    Results: ``{"classification": {"mAP": .., "AP-<class>": ..}}``; classes without a positive
    image are left out of the mean (and reported as NaN).
    """

    def __init__(self, dataset_name: str, distributed: bool = True):
        """
        Args:
            dataset_name: registered data set (its ``thing_classes`` name the per-class APs).
            distributed: gather predictions from all ranks before evaluating.
        """
        self._dataset_name = dataset_name
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = meta.get("thing_classes", None)
        self.reset()

    def reset(self):
        self._scores = []
        self._labels = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "image_label" not in inp:
                raise KeyError(
                    "MultiLabelClassificationEvaluator needs 'image_label' in the inputs "
                    "(use PAMDatasetMapper for the test loader)"
                )
            self._scores.append(out["logits"].detach().float().cpu().numpy())
            self._labels.append(torch.as_tensor(inp["image_label"]).float().cpu().numpy())

    def evaluate(self):
        scores, labels = self._scores, self._labels
        if self._distributed:
            comm.synchronize()
            scores = list(itertools.chain(*comm.gather(scores, dst=0)))
            labels = list(itertools.chain(*comm.gather(labels, dst=0)))
            if not comm.is_main_process():
                return {}
        if not scores:
            logger.warning("MultiLabelClassificationEvaluator: no predictions to evaluate.")
            return {}
        m, aps = mean_average_precision(np.stack(scores), np.stack(labels))
        res = OrderedDict()
        res["mAP"] = 100.0 * m
        names = self._class_names or [str(i) for i in range(len(aps))]
        if len(names) != len(aps):
            names = [str(i) for i in range(len(aps))]
        for name, ap in zip(names, aps):
            res[f"AP-{name}"] = 100.0 * float(ap)
        logger.info(
            "Multi-label classification on %s: mAP %.2f over %d images",
            self._dataset_name, res["mAP"], len(scores),
        )
        return OrderedDict(classification=res)

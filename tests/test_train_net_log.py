"""train_net's OUTPUT_DIR/log.txt holds bestie_d2's own log lines (issue 16, item 4).

detectron2's ``default_setup`` configures only the "detectron2" and "fvcore" loggers; without
``train_net.setup`` configuring "bestie_d2" as well, the data-set loading line, the data check and
the per-class VOC AP table were printed nowhere. A 2-iteration toy run checks they reach log.txt.
"""
import logging
import os

import pytest
import torch

from repo_paths import REPO


@pytest.mark.timeout(600)
def test_train_net_log_has_bestie_lines(toy_root, tmp_path, restore_loggers):
    from bestie_d2.tools import train_net

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path / "out")
    try:
        train_net.invoke_main([
            "--config-file", os.path.join(REPO, "configs/toy/bestie_point_label.yaml"),
            "DATASETS.TRAIN", "('test_toy_train',)", "DATASETS.TEST", "('test_toy_val',)",
            "BESTIE.DATA.WSSS_DIR", os.path.join(toy_root, "SegmentationClass"),
            "BESTIE.DATA.CENTER_POINTS_DIR", os.path.join(toy_root, "Center_points"),
            "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
            "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", out,
        ])
    finally:
        torch.set_num_threads(n)
    for h in logging.getLogger("bestie_d2").handlers:
        h.flush()
    log = open(os.path.join(out, "log.txt")).read()
    # bestie_d2's data-set loading line (the toy loader is bestie_d2.data.datasets.voc)
    assert "bestie.data.datasets.voc INFO: Loaded 16 images (16 with instance ground truth) from" in log
    assert "Loaded 8 images (8 with instance ground truth) from" in log  # the val set, at evaluation
    assert "Data check (full) of 16 training images in test_toy_train" in log
    # the per-class VOC table of the final evaluation
    assert "VOC instance segmentation results on 'test_toy_val'" in log
    table = log.split("VOC instance segmentation results on 'test_toy_val'")[1]
    assert "| category" in table and "AP50" in table
    for name in ("disc", "square", "triangle", "cross", "ring", "mean"):
        assert f"| {name}" in table

"""Resume of a BESTIE training through train_net --resume (issue 8).

Train 4 iterations with checkpoints every 2 (refinement from iteration 2), then 'crash' and rerun
the same command with --resume and MAX_ITER 6: the run must start at iteration 4 from the last
checkpoint, with the optimizer's Adam moments, the LR schedule position and the refinement
schedule (active from iteration 2) restored.
"""
import os

import pytest
import torch

from repo_paths import REPO


@pytest.mark.timeout(600)
def test_train_net_resume_continues_schedules(toy_root, tmp_path):
    from bestie_d2.engine.trainer import Trainer
    from bestie_d2.tools import train_net

    torch.set_num_threads(1)
    out = str(tmp_path / "out")
    base = [
        "--config-file", os.path.join(REPO, "configs/toy/bestie_image_label.yaml"),
        "DATASETS.TRAIN", "('test_toy_train',)", "DATASETS.TEST", "()",
        "BESTIE.DATA.WSSS_DIR", os.path.join(toy_root, "SegmentationClass"),
        "BESTIE.DATA.PEAK_POINTS_DIR", os.path.join(toy_root, "Center_points"),
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.WARMUP_ITERS", "3",
        "MODEL.BESTIE.REFINE.START_ITER", "2", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", out,
    ]
    parser = train_net.default_argument_parser()
    train_net.main(parser.parse_args(base + ["SOLVER.MAX_ITER", "4"]))
    assert os.path.exists(os.path.join(out, "model_0000001.pth"))
    # iteration 3 is the last: model_final.pth only, not also model_0000003.pth (issue 21, item 9)
    assert not os.path.exists(os.path.join(out, "model_0000003.pth"))

    args = parser.parse_args(["--resume"] + base + ["SOLVER.MAX_ITER", "6"])
    cfg = train_net.setup(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 4  # model_final.pth (iteration 3) is the last checkpoint
    state = trainer.optimizer.state
    assert state and all("exp_avg" in s for s in state.values())  # Adam moments restored
    # the LR schedule continues at iteration 4 (not restarted at the warm-up)
    assert trainer.scheduler.last_epoch == 4
    trainer.train()
    assert trainer.iter == 6  # detectron2 leaves iter == max_iter after the loop
    assert trainer.storage.history("refine/active").latest() == 1.0  # refinement schedule continued

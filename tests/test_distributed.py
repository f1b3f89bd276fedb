"""Two CPU processes (gloo) train BESTIE with refinement for a few iterations and evaluate.

The evaluator gathers predictions from both ranks; both ranks must report the same metrics,
and they must equal a single-process evaluation of the saved model on the same data.
"""
import json
import os

import pytest

from bestie_d2.engine.launch import launch

from conftest import TOY_TEST_KWARGS


def _cfg(toy_root, out_dir, max_iter):
    from cfg_factory import new_bestie_cfg

    cfg = new_bestie_cfg("configs/toy/bestie_point_label.yaml")
    cfg.merge_from_list([
        "DATASETS.TRAIN", "('test_toy_train',)", "DATASETS.TEST", "('test_toy_val',)",
        "BESTIE.DATA.WSSS_DIR", os.path.join(toy_root, "SegmentationClass"),  # simulated WSSS maps (GT)
        "SOLVER.MAX_ITER", str(max_iter), "SOLVER.IMS_PER_BATCH", "4", "SOLVER.CHECKPOINT_PERIOD", "100",
        "MODEL.BESTIE.REFINE.START_ITER", "0", "MODEL.BESTIE.NORM", "SyncBN", "MODEL.RESNETS.NORM", "SyncBN",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", out_dir, "MODEL.BESTIE.TEST.FLIP", "False",
    ])
    return cfg


def _worker(toy_root, out_dir):
    import torch

    import bestie_d2  # noqa: F401
    from bestie_d2.data.datasets import register_toy_dataset
    from bestie_d2.engine.trainer import Trainer
    from detectron2.utils import comm

    torch.set_num_threads(1)
    register_toy_dataset("test_toy", toy_root, **TOY_TEST_KWARGS)
    cfg = _cfg(toy_root, out_dir, max_iter=3)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    res = Trainer.test(cfg, trainer.model)
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"world": comm.get_world_size(), "results": res,
                   "refine_seen": trainer.storage.history("refine/active").latest()}, f, default=float)


@pytest.mark.timeout(600)
def test_two_process_cpu_training_and_gathered_evaluation(toy_root, tmp_path):
    out = str(tmp_path)
    launch(_worker, 2, num_machines=1, machine_rank=0, dist_url="auto", args=(toy_root, out))
    r0 = json.load(open(tmp_path / "rank0.json"))
    r1 = json.load(open(tmp_path / "rank1.json"))
    assert r0["world"] == r1["world"] == 2
    assert r0["refine_seen"] == 1.0  # refinement ran in the distributed step
    assert "voc_instance" in r0["results"] and r0["results"] == r1["results"]

    # the gathered metrics equal a single-process evaluation of the saved model
    import torch

    from bestie_d2.engine.checkpoint import SafeCheckpointer
    from bestie_d2.engine.trainer import Trainer

    torch.set_num_threads(1)
    cfg = _cfg(toy_root, out, max_iter=3)
    cfg.freeze()
    model = Trainer.build_model(cfg)
    SafeCheckpointer(model).load(os.path.join(out, "model_final.pth"))
    single = Trainer.test(cfg, model)
    for k, v in single["voc_instance"].items():
        assert v == pytest.approx(r0["results"]["voc_instance"][k], nan_ok=True), k

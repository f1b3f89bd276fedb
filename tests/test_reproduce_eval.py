"""README "Reproduce the paper", first block (issue 14, item 3): evaluate the authors' released
HRNet-48 checkpoints. Every command of the block runs as written (download -> convert ->
``train_net.py --eval-only``) on fake files: a random state dict in the authors' layout and a
1-image fake VOC 2012 val. See ``reproduce_case.py`` for the stand-ins."""
import os

import reproduce_case as rc


def test_readme_section_states_the_authors_numbers_as_not_measured():
    text = rc.readme_section()
    assert "Not measured by us" in text and "not measured by us" in text
    assert "42.6" in text and "46.7" in text and "41.8" in text
    assert len(rc.readme_blocks()) == 2


def test_readme_evaluation_commands_run(tmp_path):
    block = rc.readme_blocks()[0]
    for needle in ("gdown --folder", "--source authors-bestie", "--eval-only", "bestie_HRNet48_image_label.yaml",
                   "bestie_HRNet48_point_label.yaml"):
        assert needle in block
    drive = str(tmp_path / "drive")
    rc.make_drive(drive, {"models"})
    work, bin_dir, log = rc.make_workdir(str(tmp_path), drive)
    proc = rc.run_block(block, work, bin_dir)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:]
    # both conversions filled every tensor of their config
    assert out.count("check  : 1764 of 1764 model tensors filled; 0 keep the model's init; 0 unexpected; 0 shape mismatches") == 2, out[-6000:]
    calls = rc.train_net_calls(log)
    assert [c[c.index("--config-file") + 1] for c in calls] == [
        "configs/VOC/bestie_HRNet48_image_label.yaml", "configs/VOC/bestie_HRNet48_point_label.yaml"]
    for call in calls:
        assert "--eval-only" in call
        weights = call[call.index("MODEL.WEIGHTS") + 1]
        assert os.path.isfile(os.path.join(work, weights)), weights
    # the evaluations ran on the fake val set (1 image) and printed the VOC metrics
    assert out.count("mAP50") >= 2, out[-6000:]
    rc.cleanup(drive)

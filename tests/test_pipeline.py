"""bestie-pipeline (``bestie_d2.pipeline``, ``bestie_d2.tools.pipeline``) on tiny toy sets, through
its real code paths: the stage plan of every route, stage records (skip / resume / rerun), a run
that is killed and resumed, a changed config rerunning the right stages, ``--force-from`` /
``--stop-after``, both refiners trained and evaluated on one export, two CPU processes (gloo), and
a fake VOC 2012 root run end to end by the command line from the real VOC configs with overrides.

Iteration counts are tiny: nothing here tests what a stage learns (tests/test_overfit.py does); a
2-iteration BESTIE predicts no instance, so the refiner tests use its weights with the semantic head
biased towards the classes (``--bestie-weights``), as a trained model would be.
"""
import functools
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import bestie_d2  # noqa: F401
from bestie_d2.pipeline import STAGES, PipelineOptions, run_pipeline, stage_plan
from bestie_d2.pipeline.ledger import StageLedger, path_fingerprint
from bestie_d2.pipeline.options import OptionsError, check_options

from repo_paths import REPO

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

TOY_KWARGS = dict(seed=7, num_train=6, num_val=3)
PAM = ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0"]
BESTIE = ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
          "MODEL.BESTIE.REFINE.START_ITER", "1", "BESTIE.INPUT.CROP_SIZE", "64", "DATALOADER.NUM_WORKERS", "0",
          # a 2-iteration PAM's maps and cues disagree: the data check would stop BESTIE
          "BESTIE.DATA.MAX_CUES_OUTSIDE_FRACTION", "1.0", "BESTIE.DATA.MAX_LABEL_MISMATCH_FRACTION", "1.0"]
REFINE = ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
          "DATALOADER.NUM_WORKERS", "0"]


def register_pipe_toy(root):
    """Register the tiny toy set as ``pipe_toy_train`` / ``pipe_toy_val`` (also in stage processes)."""
    from bestie_d2.data.datasets import register_toy_dataset

    register_toy_dataset("pipe_toy", root, **TOY_KWARGS)


@pytest.fixture(scope="module")
def pipe_toy(tmp_path_factory):
    from bestie_d2.data.toy import generate_toy_dataset

    root = str(tmp_path_factory.mktemp("pipe_toy") / "toy")
    generate_toy_dataset(root, **TOY_KWARGS)
    register_pipe_toy(root)
    return root


def _options(out, **kw):
    base = dict(preset="toy", dataset=["pipe_toy_train", "pipe_toy_val"], output=str(out), pam_opts=PAM,
                bestie_opts=BESTIE, refine_opts=REFINE, grid_images=1)
    base.update(kw)
    return PipelineOptions(**base)


def _actions(res):
    """``{stage: "skip" | "resume" | "fresh" | "left out"}`` of a run's results."""
    return {s: a.split(":")[0] for s, a in res["plan"].items()}


def _biased(weights, path):
    """The BESTIE checkpoint ``weights`` with its semantic head biased towards the classes."""
    sd = torch.load(weights, map_location="cpu", weights_only=True)["model"]
    sd["heads.sem_predictor.weight"].mul_(0.1)
    sd["heads.sem_predictor.bias"].zero_()
    sd["heads.sem_predictor.bias"][0] = -3.0
    torch.save({"model": sd}, path)
    return str(path)


# ------------------------------------------------------------------------------------------------
# the plan and the records (no training)
# ------------------------------------------------------------------------------------------------
def _runs(plan):
    return [s.name for s in plan if s.run]


def test_stage_plan_of_every_route_and_input():
    assert [s.name for s in stage_plan("image")] == list(STAGES)
    assert _runs(stage_plan("image")) == ["pam", "cues", "maps", "bestie", "export", "refine", "grid"]
    # point route: no cues; pam only for the maps; none of them when the maps are given
    assert _runs(stage_plan("point")) == ["pam", "maps", "bestie", "export", "refine", "grid"]
    assert _runs(stage_plan("point", maps_given=True)) == ["bestie", "export", "refine", "grid"]
    # external WSSS maps: pam still makes the cues; external cues too: nothing before bestie
    assert _runs(stage_plan("image", maps_given=True)) == ["pam", "cues", "bestie", "export", "refine", "grid"]
    assert _runs(stage_plan("image", cues_given=True)) == ["pam", "maps", "bestie", "export", "refine", "grid"]
    assert _runs(stage_plan("image", cues_given=True, maps_given=True)) == ["bestie", "export", "refine", "grid"]
    assert _runs(stage_plan("image", pam_given=True)) == ["cues", "maps", "bestie", "export", "refine", "grid"]
    for route in ("image", "point"):
        plan = stage_plan(route, bestie_given=True)
        assert _runs(plan) == ["export", "refine", "grid"]
        assert all(s.reason for s in plan if not s.run)  # every left-out stage says why
    reasons = {s.name: s.reason for s in stage_plan("point", maps_given=True)}
    assert "point" in reasons["cues"] and "--wsss-dir" in reasons["maps"]
    with pytest.raises(ValueError, match="supervision"):
        stage_plan("box")


def test_stage_records_skip_resume_and_rerun(tmp_path):
    ledger = StageLedger(str(tmp_path))
    inputs = {"config": "c1", "settings": {"t": 0}, "upstream": {"pam": "r1"}, "files": {}}
    d = ledger.decide("cues", inputs)
    assert (d.action, d.reason) == ("fresh", "first run")
    run_id = ledger.begin("cues", d, inputs)
    out = tmp_path / "cues" / "Peak_points"
    out.mkdir()
    (out / "a.txt").write_text("1 2 0 0.9\n")
    # killed before finishing: the folder is kept and the stage continues
    d = ledger.decide("cues", inputs)
    assert d.action == "resume" and (out / "a.txt").exists()
    ledger.finish("cues", inputs, run_id, {"cues_dir": str(out)}, 1.5, [str(out)])
    d = ledger.decide("cues", inputs)
    assert d.action == "skip" and d.record["result"] == {"cues_dir": str(out)} and d.record["run_id"] == run_id
    # what changed is named; a fresh run empties the folder
    for key, value, words in (("config", "c2", "config changed"), ("settings", {"t": 1}, "settings changed (t)"),
                              ("upstream", {"pam": "r2"}, "stage pam was rerun"),
                              ("files", {"--wsss-dir": "x"}, "--wsss-dir changed")):
        d = ledger.decide("cues", {**inputs, key: value})
        assert d.action == "fresh" and words in d.reason, (key, d.reason)
    assert ledger.decide("cues", inputs, forced="forced (--force)").action == "fresh"
    ledger.begin("cues", ledger.decide("cues", {**inputs, "config": "c2"}), {**inputs, "config": "c2"})
    assert not out.exists()
    # a done stage whose output disappeared, an old record without inputs, a folder without record
    rid = ledger.begin("pam", ledger.decide("pam", inputs), inputs)
    ledger.finish("pam", inputs, rid, {}, 1.0, [str(tmp_path / "pam" / "model_final.pth")])
    assert ledger.decide("pam", inputs).reason.startswith("output missing")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "stage.json").write_text(json.dumps({"result": {}, "seconds": 1, "seed": 1}))
    assert "earlier version" in ledger.decide("old", inputs).reason
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "model_0000009.pth").write_text("x")
    assert "no record" in ledger.decide("stray", inputs).reason
    # a reader (another machine of a multi-machine run) never writes
    reader = StageLedger(str(tmp_path / "r"), writer=False)
    reader.begin("pam", reader.decide("pam", inputs), inputs)
    assert not (tmp_path / "r").exists()
    # folder fingerprints see a changed file
    fp = path_fingerprint(str(tmp_path / "cues"))
    (tmp_path / "cues" / "new.txt").write_text("x")
    assert path_fingerprint(str(tmp_path / "cues")) != fp


def test_bad_settings_are_one_line_errors(pipe_toy, tmp_path, capsys):
    from bestie_d2.tools.pipeline import main

    for kw, words in ((dict(preset="cityscapes"), "--preset"), (dict(backbone="R101"), "--backbone R101"),
                      (dict(dataset=["a"]), "two registered names"), (dict(bestie_opts=["SOLVER.MAX_ITER"]), "odd"),
                      (dict(wsss_dir=str(tmp_path / "nope")), "--wsss-dir"), (dict(stop_after="train"), "--stop-after"),
                      (dict(supervision="point", cues_dir=str(tmp_path)), "--cues-dir")):
        with pytest.raises(OptionsError, match=words):
            check_options(_options(tmp_path, **kw))
    base = ["--preset", "toy", "--dataset", "pipe_toy_train", "pipe_toy_val", "--output", str(tmp_path / "o")]
    for extra, words in ((["--bestie-opts", "SOLVER.MAX_ITERS", "3"], "--bestie-opts SOLVER.MAX_ITERS 3"),
                         (["--refine-config", str(tmp_path / "none.yaml")], "--refine-config"),
                         (["--dataset", "pipe_toy_train", "nope_val"], "'nope_val' is not a registered"),
                         (["--num-gpus", "3"], "pam stage: SOLVER.IMS_PER_BATCH 8 is not divisible by the 3 processes")):
        with pytest.raises(SystemExit) as e:
            main(base + extra)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("bestie-pipeline: error:") and words in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "image" / "pam").exists()  # configs are checked before any stage runs


def test_demo_and_make_demo_are_the_toy_preset(monkeypatch):
    """One implementation: ``make demo`` / ``make demo-point`` and ``python -m bestie_d2.tools.demo``
    call bestie-pipeline with the toy preset (toy configs, output/demo, seed 1)."""
    from bestie_d2.pipeline import PRESETS
    from bestie_d2.pipeline.stage_configs import stage_config_file
    from bestie_d2.tools import demo, pipeline as cli

    seen = []
    monkeypatch.setattr(cli, "run_pipeline", lambda o: seen.append(o) or {})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main leaves torch's thread count alone then
    demo.main(["--supervision", "point", "--refiner", "pointrend"])
    o = seen[0]
    assert (o.preset, o.supervision, o.refiner, o.output, o.seed) == ("toy", "point", "pointrend", None, None)
    assert (PRESETS["toy"].output, PRESETS["toy"].seed) == ("output/demo", 1)
    assert stage_config_file(o, "bestie").endswith(os.path.join("configs", "toy", "bestie_point_label.yaml"))
    assert stage_config_file(o, "refine").endswith(os.path.join("configs", "toy", "pointrend_refine.yaml"))
    with open(os.path.join(REPO, "Makefile")) as f:
        make = f.read()
    assert "-m bestie_d2.tools.pipeline --preset toy $(DEMO_ARGS)" in make
    assert "-m bestie_d2.tools.pipeline --preset toy --supervision point $(DEMO_ARGS)" in make


# ------------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------------
def test_image_route_runs_skips_reruns_and_resumes_a_killed_stage(pipe_toy, tmp_path, monkeypatch):
    from bestie_d2.engine.trainer import Trainer
    from detectron2.engine import HookBase

    out = tmp_path / "run"
    res = run_pipeline(_options(out))
    run_dir = out / "image"
    assert _actions(res) == {s: "fresh" for s in STAGES}
    assert list(res["stages"]) == list(STAGES) and list(res["seconds"]) == ["data", *STAGES]
    for s in STAGES:
        folder = "refine_maskrcnn" if s == "refine" else s
        rec = json.loads((run_dir / folder / "stage.json").read_text())
        assert rec["status"] == "done" and rec["seed"] == 1 and rec["inputs"]["config"]
    assert res["stages"]["pam"]["eval"]["classification"]["mAP"] >= 0
    assert res["stages"]["cues"]["pam_cues"]["gt_instances"] > 0 and res["stages"]["cues"]["images"] == 6
    assert 0 <= res["stages"]["maps"]["semantic_miou"] <= 1 and len(os.listdir(run_dir / "maps" / "WSSS_maps")) == 6
    assert res["stages"]["export"]["summary"]["images"] == 6 and os.path.isfile(run_dir / "grid.png")
    assert "mAP50" in res["stages"]["bestie"]["eval"]["voc_instance"]
    assert res["table"][0][0] == "BESTIE (image labels)" and len(res["table"][0]) == 5
    assert res["environment"]["torch"] == torch.__version__ and res["seed"] == 1
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["stages"].keys() == res["stages"].keys() and saved["environment"]["seed"] == 1
    assert sorted(os.listdir(run_dir / "configs")) == ["bestie.yaml", "cues.yaml", "export.yaml", "grid.yaml",
                                                       "maps.yaml", "pam.yaml", "refine_maskrcnn.yaml"]
    log = (run_dir / "log.txt").read_text()
    assert all(f"[{i + 1}/7] {s}: done in" in log for i, s in enumerate(STAGES))

    # the same command again: nothing reruns, the results are read back
    again = run_pipeline(_options(out))
    assert _actions(again) == {s: "skip" for s in STAGES}
    assert again["stages"]["bestie"] == res["stages"]["bestie"] and again["table"] == res["table"]

    # a changed BESTIE setting: BESTIE and everything that reads it rerun, not what comes before
    changed = run_pipeline(_options(out, bestie_opts=BESTIE + ["SOLVER.BASE_LR", "0.002"]))
    assert _actions(changed) == dict(pam="skip", cues="skip", maps="skip", bestie="fresh", export="fresh",
                                     refine="fresh", grid="fresh")
    assert "config changed" in changed["plan"]["bestie"] and "stage bestie was rerun" in changed["plan"]["export"]

    # --force-from / --stop-after
    forced = run_pipeline(_options(out, bestie_opts=BESTIE + ["SOLVER.BASE_LR", "0.002"], force_from="maps",
                                   stop_after="maps"))
    assert _actions(forced) == dict(pam="skip", cues="skip", maps="fresh")
    assert "--force-from maps" in forced["plan"]["maps"]

    # BESTIE killed after iteration 2 of 4 (checkpoint every iteration): the rerun continues from it
    long = BESTIE + ["SOLVER.BASE_LR", "0.002", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1"]

    class Kill(HookBase):
        def after_step(self):
            if self.trainer.iter == 1:
                raise KeyboardInterrupt("killed")

    build_hooks = Trainer.build_hooks
    with monkeypatch.context() as m:
        m.setattr(Trainer, "build_hooks", lambda self: build_hooks(self) + [Kill()])
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(_options(out, bestie_opts=long))
    rec = json.loads((run_dir / "bestie" / "stage.json").read_text())
    assert rec["status"] == "running" and (run_dir / "bestie" / "model_0000001.pth").exists()
    resumed = run_pipeline(_options(out, bestie_opts=long))
    assert resumed["plan"]["bestie"].startswith("resume: unfinished earlier")
    assert _actions(resumed)["export"] == "fresh"
    starts = [ln for ln in (run_dir / "log.txt").read_text().splitlines() if "Starting training from iteration" in ln]
    assert starts[-1].endswith("Starting training from iteration 2")  # BESTIE's resumed run


def test_point_route_and_both_refiners_on_one_export(pipe_toy, tmp_path):
    out = tmp_path / "run"
    wsss = os.path.join(pipe_toy, "SegmentationClass")  # GT semantics as "external" WSSS maps
    res = run_pipeline(_options(out, supervision="point", wsss_dir=wsss, stop_after="bestie"))
    assert _actions(res) == dict(pam="left out", cues="left out", maps="left out", bestie="fresh")
    weights = _biased(res["stages"]["bestie"]["weights"], tmp_path / "biased.pth")

    mr = run_pipeline(_options(out, supervision="point", wsss_dir=wsss, bestie_weights=weights))
    assert _actions(mr)["bestie"] == "left out" and _actions(mr)["export"] == "fresh"
    with open(mr["stages"]["export"]["json"]) as f:
        pseudo = json.load(f)
    assert pseudo["info"]["point_guided"] is True and len(pseudo["annotations"]) > 0
    assert mr["stages"]["refine"]["refiner"] == "maskrcnn" and "voc_instance" in mr["stages"]["refine"]["eval"]

    pr = run_pipeline(_options(out, supervision="point", wsss_dir=wsss, bestie_weights=weights, refiner="pointrend"))
    assert _actions(pr) == dict(pam="left out", cues="left out", maps="left out", bestie="left out",
                                export="skip", refine="fresh", grid="skip")
    assert pr["stages"]["refine"]["refiner"] == "pointrend"
    model = (out / "point" / "configs" / "refine_pointrend.yaml").read_text()
    assert "PointRendMaskHead" in model and "PointRendROIHeads" in model
    # the report holds both refiners trained on this export, the chosen one first (BESTIE was not
    # trained in this run folder's last runs: no row of its own)
    assert [r[0] for r in pr["table"]] == ["PointRend on BESTIE pseudo labels", "Mask R-CNN on BESTIE pseudo labels"]
    assert set(pr["refiners"]) == {"maskrcnn", "pointrend"}
    assert pr["refiners"]["maskrcnn"]["eval"] == mr["stages"]["refine"]["eval"]


@pytest.mark.timeout(600)
def test_two_cpu_processes(pipe_toy, tmp_path):
    """``--num-gpus 2`` without CUDA: BESTIE trains with DDP in two gloo processes and the export is
    sharded by rank and gathered into one json; the worker_init registers the test's data set in
    the fresh processes. (Two stages only: each start of two processes costs seconds.)"""
    out = tmp_path / "run"
    wsss = os.path.join(pipe_toy, "SegmentationClass")
    res = run_pipeline(_options(out, supervision="point", wsss_dir=wsss, num_gpus=2, stop_after="export"),
                       worker_init=functools.partial(register_pipe_toy, pipe_toy))
    assert _actions(res) == dict(pam="left out", cues="left out", maps="left out", bestie="fresh", export="fresh")
    assert "voc_instance" in res["stages"]["bestie"]["eval"]
    with open(res["stages"]["export"]["json"]) as f:
        assert len(json.load(f)["images"]) == 6  # both ranks' images in the one json
    assert os.path.isfile(out / "point" / "log.txt.rank1")


# ------------------------------------------------------------------------------------------------
# the command line on a VOC-layout root, from the real VOC configs
# ------------------------------------------------------------------------------------------------
def _fake_voc_root(toy_root, root):
    """The tiny toy set in the VOC 2012 layout (its 5 classes are VOC's first 5 ids)."""
    voc = os.path.join(root, "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Center_points"):
        shutil.copytree(os.path.join(toy_root, sub), os.path.join(voc, sub))
    os.makedirs(os.path.join(voc, "ImageSets", "Segmentation"))
    os.makedirs(os.path.join(voc, "cls_labels"))
    shutil.copy(os.path.join(toy_root, "ImageSets", "Segmentation", "train.txt"),
                os.path.join(voc, "ImageSets", "Segmentation", "train_aug.txt"))
    shutil.copy(os.path.join(toy_root, "ImageSets", "Segmentation", "val.txt"),
                os.path.join(voc, "ImageSets", "Segmentation", "val.txt"))
    shutil.copy(os.path.join(toy_root, "cls_labels", "train_cls.txt"), os.path.join(voc, "cls_labels", "train_aug_cls.txt"))
    return voc


VOC_PAM = ["MODEL.VGG.WIDTH_MULT", "0.125", "MODEL.PAM.EXTRA_CHANNELS", "16", "INPUT.PAM.RESIZE", "72",
           "INPUT.PAM.CROP", "64", "INPUT.PAM.TEST_SIZE", "64", "SOLVER.CHECKPOINT_PERIOD", "100"] + PAM
VOC_BESTIE = ["MODEL.RESNETS.NORM", "BN", "MODEL.BESTIE.NORM", "BN", "BESTIE.INPUT.RESIZE_LONG", "97",
              "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0"] + BESTIE
VOC_REFINE = ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "96",
              "INPUT.MAX_SIZE_TEST", "160", "SOLVER.BASE_LR", "0.001", "SOLVER.CHECKPOINT_PERIOD", "100",
              "TEST.EVAL_PERIOD", "0"] + REFINE


def _biased_init(config_file, opts, path):
    """A random-init BESTIE of ``config_file`` + ``opts`` whose semantic head favours the classes,
    saved as a checkpoint: BESTIE trained from it for 2 iterations still finds instances."""
    from bestie_d2.config import load_config
    from bestie_d2.engine.checkpoint import SafeCheckpointer
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(load_config(config_file, opts))
    SafeCheckpointer(model, save_dir=os.path.dirname(path)).save("raw")
    return _biased(os.path.join(os.path.dirname(path), "raw.pth"), path)


@pytest.mark.timeout(900)
def test_fake_voc_root_end_to_end_from_the_voc_configs(pipe_toy, tmp_path):
    """``bestie-pipeline --supervision image`` with nothing but overrides: the voc preset
    (configs/VOC/: VGG-16 PAM, R50 BESTIE, R-50-FPN Mask R-CNN) on ``voc_2012_train_aug`` /
    ``voc_2012_val`` under ``$BESTIE_DATASETS``, every stage from PAM to the grid. BESTIE starts
    from weights whose semantic head favours the classes, so that 2 iterations leave pseudo labels
    for Mask R-CNN to train on."""
    _fake_voc_root(pipe_toy, str(tmp_path / "data"))
    init = _biased_init(os.path.join(REPO, "configs", "VOC", "bestie_R50_image_label.yaml"),
                        ["MODEL.DEVICE", "cpu"] + VOC_BESTIE, tmp_path / "init" / "bestie_init.pth")
    env = dict(os.environ, BESTIE_DATASETS=str(tmp_path / "data"), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    out = tmp_path / "out"
    args = ["--supervision", "image", "--output", str(out), "--pam-opts", *VOC_PAM,
            "--bestie-opts", *VOC_BESTIE, "MODEL.WEIGHTS", init, "--refine-opts", *VOC_REFINE, "--grid-images", "1"]
    r = subprocess.run([sys.executable, "-m", "bestie_d2.tools.pipeline", *args], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "image" / "results.json").read_text())
    assert res["datasets"] == {"train": "voc_2012_train_aug", "test": "voc_2012_val"}
    assert _actions(res) == {s: "fresh" for s in STAGES}
    assert res["data"]["train_images"] == 6 and len(res["data"]["classes"]) == 20
    cfgs = {n: (out / "image" / "configs" / f"{n}.yaml").read_text() for n in ("pam", "bestie", "refine_maskrcnn")}
    assert "build_vgg16_d1_backbone" in cfgs["pam"] and "NUM_CLASSES: 20" in cfgs["pam"]
    assert "build_resnet_backbone" in cfgs["bestie"] and "DEPTH: 50" in cfgs["bestie"]
    assert "voc_2012_train_aug_pseudo_image" in cfgs["refine_maskrcnn"] and "StandardROIHeads" in cfgs["refine_maskrcnn"]
    assert res["stages"]["export"]["summary"]["instances"] > 0
    assert [row[0] for row in res["table"]] == ["BESTIE (image labels)", "Mask R-CNN on BESTIE pseudo labels"]
    assert "bestie_d2 pipeline — voc_2012_val, image-label route" in r.stdout

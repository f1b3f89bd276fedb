"""``run_pipeline``: every stage of one run in order, each skipped, resumed or rerun as its record says.

The order of work: the options are checked, the data sets are loaded once (counts, class count),
the config of every stage that will run is built and checked (a bad key fails here, before any
stage runs), then each stage in :data:`~.plan.STAGES` order is skipped / resumed / rerun
(:class:`~.ledger.StageLedger`) with one progress line, and at the end the results table is printed
and written with the environment (:mod:`.report`).
"""
import contextlib
import functools
import logging
import os
import time
from collections import OrderedDict
from typing import Callable, Dict, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

from ..config import load_config
from ..maskrcnn_refinement import write_maskrcnn_init
from ..utils.env import environment_info
from .ledger import StageLedger, digest, path_fingerprint
from .options import OptionsError, PipelineOptions, check_options
from .plan import DEPENDENCIES, STAGES, stage_plan
from .presets import PRESETS, REFINERS
from .report import REFINER_NAMES, results_table, write_results
from .stage_configs import StageConfigs, StagePaths, stage_config_file
from .stages import ProcessLayout, cam_stage, export_stage, grid_stage, run_launched, train_stage

__all__ = ["run_pipeline", "dataset_summary"]

logger = logging.getLogger("bestie_d2.pipeline")

#: The loggers whose lines go to the run's log.txt too.
_LOGGERS = ("bestie_d2", "detectron2", "fvcore")


def dataset_summary(train: str, test: str) -> dict:
    """Load both registered data sets once: names, sizes, classes, the train set's root and the
    folder of its point labels (``center_points_file``)."""
    for name in (train, test):
        if name not in DatasetCatalog.list():
            raise OptionsError(f"--dataset: '{name}' is not a registered data set")
    records = DatasetCatalog.get(train)
    n_test = len(DatasetCatalog.get(test))
    meta = MetadataCatalog.get(train)
    classes = meta.get("thing_classes", None)
    if not classes:
        raise OptionsError(f"data set '{train}' has no thing_classes metadata: its class count is unknown")
    points = {os.path.dirname(r["center_points_file"]) for r in records if r.get("center_points_file")}
    return {
        "train": train,
        "test": test,
        "root": meta.get("dataset_root", ""),
        "train_images": len(records),
        "test_images": n_test,
        "train_instances": sum(len(r.get("annotations", [])) for r in records),
        "classes": list(classes),
        "points_dir": sorted(points)[0] if len(points) == 1 else None,
    }


def _given_or(given: Optional[str], own: str) -> str:
    """The user's path (absolute) when given, else the stage's own output."""
    return os.path.abspath(given) if given else own


@contextlib.contextmanager
def _run_log(path: Optional[str]):
    """Every line of the bestie_d2 / detectron2 / fvcore loggers also goes to ``path`` while inside."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S"))
    handler.setLevel(logging.DEBUG)
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield
    finally:
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()


def run_pipeline(options: PipelineOptions, *, worker_init: Optional[Callable[[], None]] = None) -> dict:
    """Run (or resume) the pipeline of ``options``; returns the ``results.json`` dict.

    ``worker_init``: a picklable no-argument function every stage process calls first; needed
    only with ``num_gpus > 1`` (or several machines) for data sets registered by the caller's
    code, which fresh processes do not run (the built-in data sets register on ``import bestie_d2``).
    Raises :class:`~.options.OptionsError` (incl. :class:`~.stage_configs.ConfigError`) for bad
    settings, before any stage runs.
    """
    check_options(options)
    setup_logger(name="bestie_d2", abbrev_name="bestie")
    setup_logger()  # detectron2
    run_dir = os.path.abspath(os.path.join(options.output or PRESETS[options.preset].output, options.supervision))
    writer = options.machine_rank == 0
    if writer:
        os.makedirs(run_dir, exist_ok=True)
    with _run_log(os.path.join(run_dir, "log.txt") if writer else None):
        return _Run(options, run_dir, writer, worker_init).run()


class _Run:
    """One invocation: builds the stage configs, walks the plan, reports."""

    def __init__(self, o: PipelineOptions, run_dir: str, writer: bool, worker_init):
        self.o, self.run_dir, self.writer = o, run_dir, writer
        self.paths = StagePaths(run_dir, o.refiner)
        self.ledger = StageLedger(run_dir, writer=writer)
        self.layout = ProcessLayout(o.num_gpus, o.num_machines, o.machine_rank, o.dist_url,
                                    os.path.join(run_dir, "log.txt"), worker_init)
        self.results: Dict[str, dict] = OrderedDict()
        self.seconds: Dict[str, float] = OrderedDict()
        self.run_ids: Dict[str, str] = {}
        self.actions: Dict[str, str] = OrderedDict()

    # -- setup ----------------------------------------------------------------------------------
    def _datasets(self):
        if self.o.dataset:
            return tuple(self.o.dataset)
        path = stage_config_file(self.o, "bestie")
        cfg = load_config(path, freeze=False)
        if not (cfg.DATASETS.TRAIN and cfg.DATASETS.TEST):
            raise OptionsError(f"{path} names no DATASETS.TRAIN / TEST: give --dataset TRAIN TEST")
        return cfg.DATASETS.TRAIN[0], cfg.DATASETS.TEST[0]

    def _setup(self):
        o, p = self.o, self.paths
        t0 = time.perf_counter()
        train, test = self._datasets()
        self.data = dataset_summary(train, test)  # (the toy set is generated here on first use)
        self.seconds["data"] = time.perf_counter() - t0
        self.plan = stage_plan(o.supervision, cues_given=bool(o.cues_dir), maps_given=bool(o.wsss_dir),
                               pam_given=bool(o.pam_weights), bestie_given=bool(o.bestie_weights))
        self.cfgs = StageConfigs(
            o, p, train, test, len(self.data["classes"]),
            cues_dir=_given_or(o.cues_dir, p.cues_dir), wsss_dir=_given_or(o.wsss_dir, p.maps_dir),
            pam_weights=_given_or(o.pam_weights, p.pam_weights),
            bestie_weights=_given_or(o.bestie_weights, p.bestie_weights),
        )
        self.environment = environment_info(seed=self.cfgs.seed)
        # every config that will be used, built now: a bad file / key / value fails before any stage runs
        builders = {"pam": self.cfgs.pam, "cues": lambda: self.cfgs.cam("cues"), "maps": lambda: self.cfgs.cam("maps"),
                    "bestie": self.cfgs.bestie, "export": self.cfgs.export, "refine": self.cfgs.refine,
                    "grid": self.cfgs.trained_bestie}
        self.stage_cfgs = {s.name: builders[s.name]() for s in self.plan if s.run}
        world = self.layout.world_size
        for stage in ("pam", "bestie", "refine"):
            batch = self.stage_cfgs[stage].SOLVER.IMS_PER_BATCH if stage in self.stage_cfgs else 0
            if batch % world:
                raise OptionsError(f"{stage} stage: SOLVER.IMS_PER_BATCH {batch} is not divisible by the {world} "
                                   f"processes (--num-gpus x --num-machines): give --{stage}-opts "
                                   f"SOLVER.IMS_PER_BATCH <a multiple of {world}> (and scale SOLVER.BASE_LR)")
        self.cue_threshold = float(self.cfgs.bestie().BESTIE.DATA.CUE_THRESHOLD)

    # -- per stage ------------------------------------------------------------------------------
    def _folder(self, stage: str) -> str:
        return self.paths.refine_stage_dir if stage == "refine" else stage

    def _inputs(self, stage: str) -> dict:
        """What the stage's result depends on (compared with its record by the ledger)."""
        o = self.o
        settings = {
            "cues": {"cue_threshold": self.cue_threshold},
            "export": {"score_threshold": o.pseudo_score_threshold, "min_area": o.pseudo_min_area},
            "refine": {"refiner": o.refiner, "init": o.refine_init},
            "grid": {"images": o.grid_images},
        }.get(stage, {})
        files = {}
        if stage in ("cues", "maps") and o.pam_weights:
            files["--pam-weights"] = path_fingerprint(o.pam_weights)
        if stage == "bestie":
            if o.cues_dir:
                files["--cues-dir"] = path_fingerprint(o.cues_dir)
            if o.wsss_dir:
                files["--wsss-dir"] = path_fingerprint(o.wsss_dir)
        if stage in ("bestie", "export") and o.supervision == "point":  # the export decodes from the points
            points = o.points_dir or self.data["points_dir"]
            files["point labels"] = path_fingerprint(points) if points else "per-record files"
        if stage in ("export", "grid", "refine") and o.bestie_weights:
            files["--bestie-weights"] = path_fingerprint(o.bestie_weights)
        return {
            "config": digest(self.stage_cfgs[stage].dump()),
            "settings": settings,
            "upstream": {d: self.run_ids[d] for d in DEPENDENCIES[stage] if d in self.run_ids},
            "files": files,
        }

    def _save_config(self, stage: str) -> None:
        os.makedirs(self.paths.configs_dir, exist_ok=True)
        with open(os.path.join(self.paths.configs_dir, f"{self._folder(stage)}.yaml"), "w") as f:
            f.write(self.stage_cfgs[stage].dump())

    def _work(self, stage: str, stage_dir: str) -> dict:
        """Run one stage; returns its result."""
        cfg, p, d = self.stage_cfgs.get(stage), self.paths, self.data
        if stage in ("pam", "bestie"):
            return run_launched(train_stage, stage_dir, self.layout, cfg)
        if stage == "cues":
            fn = functools.partial(cam_stage, cues_dir=p.cues_dir, cue_threshold=self.cue_threshold)
            return run_launched(fn, stage_dir, self.layout, cfg, d["train"])
        if stage == "maps":
            return run_launched(functools.partial(cam_stage, maps_dir=p.maps_dir), stage_dir, self.layout, cfg, d["train"])
        if stage == "export":
            fn = functools.partial(export_stage, score_threshold=self.o.pseudo_score_threshold,
                                   min_area=self.o.pseudo_min_area)
            return run_launched(fn, stage_dir, self.layout, cfg, d["train"], p.pseudo_json)
        if stage == "refine":
            return self._refine(cfg, stage_dir)
        if stage == "grid":
            if not self.writer:
                return {}
            cues = self.cfgs.cues_dir if self.o.supervision == "image" and os.path.isdir(self.cfgs.cues_dir) else None
            wsss = self.cfgs.wsss_dir if os.path.isdir(self.cfgs.wsss_dir) else None
            return grid_stage(cfg, d["test"], d["train"], p.grid_png, wsss_dir=wsss, cues_dir=cues,
                              num_images=self.o.grid_images)
        raise KeyError(stage)

    def _refine(self, cfg, stage_dir: str) -> dict:
        o = self.o
        base = {"refiner": o.refiner, "init": "the BESTIE ResNet" if o.refine_init == "bestie" else "MODEL.WEIGHTS of the config"}
        n_pseudo = ((self.results.get("export") or {}).get("summary") or {}).get("instances")
        if n_pseudo == 0:
            reason = (f"BESTIE exported no pseudo instance (score threshold {o.pseudo_score_threshold}): nothing to "
                      "train on; train BESTIE longer (--bestie-opts SOLVER.MAX_ITER N) or lower "
                      "--pseudo-score-threshold, then rerun with --force-from export")
            logger.warning(f"refine skipped: {reason}")
            return {**base, "skipped": reason}
        if o.refine_init == "bestie" and self.writer:
            write_maskrcnn_init(self.cfgs.bestie_weights, self.paths.refine_init,
                                self.cfgs.bestie().INPUT.FORMAT, cfg.INPUT.FORMAT)
        return {**base, **run_launched(train_stage, stage_dir, self.layout, cfg)}

    @staticmethod
    def _outputs(stage: str, result: dict):
        keys = {"pam": "weights", "bestie": "weights", "refine": "weights", "cues": "cues_dir", "maps": "wsss_dir",
                "export": "json", "grid": "grid"}
        v = result.get(keys[stage])
        return [v] if v else []

    @staticmethod
    def _summary(stage: str, result: dict) -> str:
        """A few words on a finished stage's result for its progress line."""
        ev = result.get("eval") or {}
        if "voc_instance" in ev:
            return f"mAP50 {ev['voc_instance'].get('mAP50', float('nan')):.1f}"
        if "segm" in ev:
            return f"mask AP {ev['segm'].get('AP', float('nan')):.1f}"
        if "classification" in ev:
            return f"classification mAP {ev['classification'].get('mAP', float('nan')):.1f}"
        if stage == "cues":
            return f"{result.get('points', '?')} cues on {result.get('images', 0) + result.get('skipped', 0)} images"
        if stage == "maps":
            m = result.get("semantic_miou")
            return "no ground truth to score the maps" if m is None else f"mIoU {100 * m:.1f}"
        if stage == "export":
            s = result.get("summary") or {}
            return f"{s.get('instances', '?')} pseudo instances on {s.get('images', '?')} images"
        if result.get("skipped"):
            return "skipped: nothing to train on"
        return ", ".join(f"{k}: {v}" for k, v in result.items() if isinstance(v, str))

    def _stage(self, index: int, stage: str, forced: Optional[str]) -> None:
        n = len(STAGES)
        head = f"[{index + 1}/{n}] {stage}"
        folder = self._folder(stage)
        inputs = self._inputs(stage)
        decision = self.ledger.decide(folder, inputs, forced=forced)
        self.actions[stage] = f"{decision.action}: {decision.reason}"
        if decision.action == "skip":
            rec = decision.record
            self.results[stage], self.seconds[stage], self.run_ids[stage] = rec["result"], rec["seconds"], rec["run_id"]
            logger.info(f"{head}: skipped, {decision.reason}; {self._summary(stage, rec['result'])} "
                        f"(--force-from {stage} reruns it)")
            return
        verb = "continuing" if decision.action == "resume" else "running"
        logger.info(f"{head}: {verb} ({decision.reason}) -> {self.ledger.stage_dir(folder)}")
        run_id = self.ledger.begin(folder, decision, inputs, seed=self.cfgs.seed)
        if self.writer and stage in self.stage_cfgs:
            self._save_config(stage)
        t0 = time.perf_counter()
        result = self._work(stage, self.ledger.stage_dir(folder))
        secs = time.perf_counter() - t0
        self.ledger.finish(folder, inputs, run_id, result, secs, self._outputs(stage, result), seed=self.cfgs.seed)
        self.results[stage], self.seconds[stage], self.run_ids[stage] = result, secs, run_id
        logger.info(f"{head}: done in {secs:.0f} s; {self._summary(stage, result)}")

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict:
        o = self.o
        self._setup()
        force_from = 0 if o.force else (STAGES.index(o.force_from) if o.force_from else len(STAGES))
        logger.info(f"bestie-pipeline: {o.supervision}-label route, {self.data['train']} -> {self.data['test']} "
                    f"({self.data['train_images']} / {self.data['test_images']} images, "
                    f"{len(self.data['classes'])} classes), refiner {o.refiner}, results in {self.run_dir}")
        for i, step in enumerate(self.plan):
            if not step.run:
                self.actions[step.name] = f"left out: {step.reason}"
                logger.info(f"[{i + 1}/{len(STAGES)}] {step.name}: left out, {step.reason}")
            else:
                forced = None
                if i >= force_from:
                    forced = "forced (--force)" if o.force else f"forced (--force-from {o.force_from})"
                self._stage(i, step.name, forced)
            if step.name == o.stop_after:
                logger.info(f"stopping after {step.name} (--stop-after)")
                break
        return self._report()

    def _refiner_rows(self):
        """``(row name, eval, seconds, refiner)`` of every refiner trained on this run's export (the
        current one first)."""
        if "export" not in self.run_ids:
            return []
        rows = []
        for r in sorted(REFINERS, key=lambda r: r != self.o.refiner):
            if r == self.o.refiner and "refine" in self.results:
                res, secs = self.results["refine"], self.seconds.get("refine")
            else:
                rec = self.ledger.read(f"refine_{r}")
                if not rec or rec.get("status") != "done" or \
                        rec.get("inputs", {}).get("upstream", {}).get("export") != self.run_ids["export"]:
                    continue
                res, secs = rec["result"], rec["seconds"]
            if res.get("eval"):
                rows.append((f"{REFINER_NAMES[r]} on BESTIE pseudo labels", res["eval"], secs, r))
        return rows

    def _report(self) -> dict:
        o, d = self.o, self.data
        refiners = self._refiner_rows()
        rows = [(f"BESTIE ({o.supervision} labels)", (self.results.get("bestie") or {}).get("eval"))]
        rows += [(name, ev) for name, ev, _, _ in refiners]
        title = (f"bestie_d2 pipeline — {d['test']}, {o.supervision}-label route "
                 f"({o.preset} configs{', ' + o.backbone if o.backbone else ''}; refiner {o.refiner})")
        text, table = results_table(title, rows, self.results, self.seconds, self.environment, self.run_dir)
        summary = {
            "route": o.supervision, "seed": self.cfgs.seed, "preset": o.preset, "backbone": o.backbone,
            "refiner": o.refiner, "datasets": {"train": d["train"], "test": d["test"]},
            "environment": self.environment, "data": d, "plan": self.actions,
            "stages": self.results, "seconds": self.seconds, "table": table,
            "refiners": {r: {"eval": ev, "seconds": secs} for _, ev, secs, r in refiners},
        }
        if self.writer:
            print(text, flush=True)
            write_results(self.run_dir, text, summary)
        return summary

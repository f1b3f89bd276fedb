"""Stage records: what makes the pipeline resumable.

Every stage has a folder ``<run>/<stage>/`` and in it a record ``stage.json``, written when the
stage starts (``status: running``) and when it ends (``status: done``, with its result and time).
The record holds the stage's *inputs*: a hash of its full config (file + overrides), its other
settings, the ``run_id`` of every stage whose outputs it reads and a fingerprint of every file or
folder the user gave it. On the next run, :meth:`StageLedger.decide` compares them:

* same inputs, done, outputs present     -> **skip** (the result is read from the record);
* same inputs, unfinished (killed)       -> **resume** (the folder is kept: training continues
  from its last checkpoint, cue extraction skips the images already written);
* anything changed, no record, or forced -> **fresh** (the folder is emptied first).

A stage that reruns gets a new ``run_id``, so every stage that reads its outputs sees changed
inputs and reruns too.
"""
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..utils.io import atomic_write

__all__ = ["RECORD_FILE", "Decision", "StageLedger", "digest", "path_fingerprint"]

RECORD_FILE = "stage.json"


def digest(obj) -> str:
    """A short sha256 of ``obj`` (json-serialised with sorted keys)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def path_fingerprint(path: str) -> str:
    """What identifies a user-given file or folder cheaply: its absolute path and the name, size
    and modification time of the file (of every file directly in the folder)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        with os.scandir(path) as it:
            entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in it if e.is_file())
        return digest([path, entries])
    if os.path.isfile(path):
        st = os.stat(path)
        return digest([path, st.st_size, st.st_mtime_ns])
    return digest([path, "missing"])


@dataclass
class Decision:
    """What to do with a stage: ``action`` "skip" | "resume" | "fresh", and why (one line)."""

    action: str
    reason: str
    record: Optional[dict] = None


def _changes(old: dict, new: dict) -> List[str]:
    """Human names of what differs between two ``inputs`` dicts."""
    out = []
    if old.get("config") != new.get("config"):
        out.append("config changed")
    if old.get("settings") != new.get("settings"):
        keys = sorted(k for k in set(old.get("settings", {})) | set(new.get("settings", {}))
                      if old.get("settings", {}).get(k) != new.get("settings", {}).get(k))
        out.append("settings changed (" + ", ".join(keys) + ")")
    for kind, what in (("upstream", "stage {} was rerun"), ("files", "{} changed")):
        o, n = old.get(kind, {}), new.get(kind, {})
        out += [what.format(k) for k in sorted(set(o) | set(n)) if o.get(k) != n.get(k)]
    return out


class StageLedger:
    """The records of one run folder. ``writer`` False (a machine other than machine 0 of a
    multi-machine run) reads the records but never writes or deletes anything."""

    def __init__(self, run_dir: str, *, writer: bool = True):
        self.run_dir, self.writer = run_dir, writer

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.run_dir, stage)

    def read(self, stage: str) -> Optional[dict]:
        """The stage's record, or None (no record, or an unreadable one)."""
        try:
            with open(os.path.join(self.stage_dir(stage), RECORD_FILE)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def decide(self, stage: str, inputs: dict, *, forced: Optional[str] = None) -> Decision:
        """Skip, resume or rerun ``stage`` given its current ``inputs`` (see the module doc);
        ``forced`` = the reason it must rerun (``--force`` / ``--force-from``), if any."""
        rec = self.read(stage)
        if forced:
            return Decision("fresh", forced, rec)
        if rec is None:
            d = self.stage_dir(stage)
            if os.path.isdir(d) and os.listdir(d):
                return Decision("fresh", "no record of an earlier run in its folder: starting clean")
            return Decision("fresh", "first run")
        if "inputs" not in rec:
            return Decision("fresh", "made by an earlier version (no record of its inputs): rerun", rec)
        changed = _changes(rec["inputs"], inputs)
        if changed:
            return Decision("fresh", "; ".join(changed), rec)
        if rec.get("status") != "done":
            return Decision("resume", "unfinished earlier (killed?): continuing from its last checkpoint", rec)
        missing = [p for p in rec.get("outputs", []) if not os.path.exists(p)]
        if missing:
            return Decision("fresh", f"output missing ({missing[0]}): rerun", rec)
        return Decision("skip", f"done earlier ({rec.get('seconds', 0):.0f} s)", rec)

    def begin(self, stage: str, decision: Decision, inputs: dict, **extra) -> str:
        """Prepare the stage's folder (emptied for a fresh run) and write its ``running`` record;
        returns the new ``run_id``."""
        run_id = uuid.uuid4().hex[:12]
        if not self.writer:
            return run_id
        d = self.stage_dir(stage)
        if decision.action == "fresh" and os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d, exist_ok=True)
        self._write(stage, {"stage": stage, "status": "running", "inputs": inputs, "run_id": run_id,
                            "started": time.strftime("%Y-%m-%d %H:%M:%S"), **extra})
        return run_id

    def finish(self, stage: str, inputs: dict, run_id: str, result: dict, seconds: float,
               outputs: List[str], **extra) -> dict:
        """Write the ``done`` record (result, time, output paths) and return it."""
        rec = {"stage": stage, "status": "done", "inputs": inputs, "run_id": run_id, "result": result,
               "seconds": seconds, "outputs": list(outputs), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
               **extra}
        if self.writer:
            self._write(stage, rec)
        return rec

    def _write(self, stage: str, rec: Dict) -> None:
        atomic_write(os.path.join(self.stage_dir(stage), RECORD_FILE), json.dumps(rec, indent=2, default=float))

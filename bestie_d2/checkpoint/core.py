"""The pieces every weight conversion shares: the result record, reading and writing files, and
checking a converted state dict against a model.

A conversion is a *name map*: every source tensor is either **mapped** (renamed, maybe adapted,
e.g. the stem's input channels) or **dropped** with a reason (classification-only, an alias of a
tensor already mapped); a source key the map does not know is an error, never silently ignored.
Tensors the target needs but the source lacks are either written by the converter with a fixed,
documented value (**fresh**, e.g. a zero bias that makes the two architectures compute the same
function) or left to the model's own initialisation (reported by :func:`check_against_model`).

The output is ``torch.save({"model": state_dict, "__author__": ..., "matching_heuristics":
False})``: tensors only, so :class:`~bestie_d2.engine.checkpoint.SafeCheckpointer`
(``torch.load(weights_only=True)``) and detectron2's ``DetectionCheckpointer`` read it, and names
must match the model exactly (no name-matching heuristics).
"""
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from ..utils.io import atomic_open

__all__ = [
    "Conversion",
    "ConversionError",
    "UnknownKeysError",
    "CoverageReport",
    "load_state_dict_file",
    "unwrap_state_dict",
    "save_conversion",
    "check_against_model",
    "check_against_state_dict",
    "model_state_shapes",
]


class ConversionError(ValueError):
    """The input cannot be converted as asked (wrong source, wrong layout, bad option)."""


class UnknownKeysError(ConversionError):
    """Source keys the chosen name map neither maps nor knows how to drop."""

    def __init__(self, source: str, keys: Sequence[str]):
        self.keys = list(keys)
        shown = ", ".join(self.keys[:8]) + (f", ... ({len(self.keys)} in all)" if len(self.keys) > 8 else "")
        super().__init__(
            f"{len(self.keys)} key(s) of the input are not part of the {source!r} layout: {shown}. "
            "Is --source right for this file?"
        )


@dataclass
class Conversion:
    """The result of one conversion.

    Attributes:
        source: the source name (e.g. ``"timm-hrnet"``).
        target: what the weights are for (e.g. ``"bestie"``, ``"maskrcnn"``, ``"pam"``).
        weights: ``{target key: tensor}`` in source order (mapped, then fresh).
        mapped: ``(source key, target key)`` per mapped tensor.
        dropped: ``(source key, reason)`` per source tensor not written.
        fresh: ``(target key, how it is initialised)`` per tensor the converter wrote without a
            source tensor.
        config: config keys the weights assume, ``{"INPUT.FORMAT": "RGB", ...}`` (set them, or
            keep the defaults that already have these values).
        notes: free-text remarks printed with the summary.
    """

    source: str
    target: str
    weights: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict)
    mapped: List[Tuple[str, str]] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    fresh: List[Tuple[str, str]] = field(default_factory=list)
    config: Dict[str, object] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def map(self, src: str, dst: str, value: torch.Tensor) -> None:
        if dst in self.weights:
            raise ConversionError(f"two source tensors map onto {dst!r} (the second is {src!r})")
        self.weights[dst] = value
        self.mapped.append((src, dst))

    def drop(self, src: str, reason: str) -> None:
        self.dropped.append((src, reason))

    def add_fresh(self, dst: str, value: torch.Tensor, how: str) -> None:
        if dst in self.weights:
            raise ConversionError(f"fresh tensor {dst!r} is already mapped")
        self.weights[dst] = value
        self.fresh.append((dst, how))

    # -------------------------------------------------------------------------------------------
    def summary(self, verbose: bool = False) -> str:
        """Human-readable report: counts, dropped tensors grouped by reason, fresh tensors, config."""
        lines = [f"convert_weights: {self.source} -> {self.target}"]
        lines.append(f"  mapped : {len(self.mapped)} tensors")
        if self.mapped:
            src, dst = self.mapped[0]
            lines.append(f"           e.g. {src} -> {dst}")
        if verbose:
            lines += [f"           {s} -> {d}" for s, d in self.mapped]
        lines.append(f"  dropped: {len(self.dropped)} tensors")
        for reason, keys in _group(self.dropped).items():
            shown = keys if verbose else _abbreviate(keys)
            lines.append(f"    {len(keys)} x {reason}: {shown}")
        lines.append(f"  fresh  : {len(self.fresh)} tensors written without a source tensor")
        for how, keys in _group(self.fresh).items():
            lines.append(f"    {len(keys)} x {how}: {keys if verbose else _abbreviate(keys)}")
        if self.config:
            lines.append("  config : " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.config.items()))
        for note in self.notes:
            lines.append(f"  note   : {note}")
        return "\n".join(lines)


def _group(pairs: Sequence[Tuple[str, str]]) -> "OrderedDict[str, List[str]]":
    out: "OrderedDict[str, List[str]]" = OrderedDict()
    for key, reason in pairs:
        out.setdefault(reason, []).append(key)
    return out


def _abbreviate(keys: Sequence[str], n: int = 4) -> str:
    keys = list(keys)
    if len(keys) <= n:
        return ", ".join(keys)
    return ", ".join(keys[:n]) + f", ... (all {len(keys)} with --verbose)"


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
_WRAPPER_KEYS = ("model", "state_dict", "model_state", "net")


def unwrap_state_dict(obj) -> "OrderedDict[str, torch.Tensor]":
    """The state dict inside a loaded checkpoint, as ``{name: tensor}``.

    Accepts a plain state dict or one wrapped as ``{"model": sd}`` / ``{"state_dict": sd}`` (other
    entries such as ``epoch`` are ignored); numpy arrays become tensors; a ``module.`` prefix on
    every key (DataParallel / DDP) is removed.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    for k in _WRAPPER_KEYS:
        if k in obj and isinstance(obj[k], Mapping):
            obj = obj[k]
            break
    out = OrderedDict()
    skipped = []
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, torch.Tensor):
            out[str(k)] = v
        else:
            skipped.append(k)
    if not out:
        raise ConversionError(
            "no tensors found in the input (top-level keys: " + ", ".join(map(str, list(obj)[:10])) + ")"
        )
    if skipped:
        raise ConversionError(f"the state dict holds non-tensor entries: {skipped[:5]}")
    if all(k.startswith("module.") for k in out):
        out = OrderedDict((k[len("module."):], v) for k, v in out.items())
    return out


def load_state_dict_file(path) -> "OrderedDict[str, torch.Tensor]":
    """Read a weight file without executing pickled code.

    ``.safetensors`` via the ``safetensors`` package; anything else with
    ``torch.load(weights_only=True)`` (``.pth``/``.pt``/``.bin``, and ``.pkl`` files written by
    ``torch.save``); a detectron2-style ``.pkl`` of numpy arrays through the restricted unpickler
    of :mod:`bestie_d2.engine.checkpoint`. Returns :func:`unwrap_state_dict` of the content.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input weight file {path!r} does not exist")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors comes with timm
            raise ConversionError("reading .safetensors needs the 'safetensors' package") from e
        return unwrap_state_dict(load_file(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as torch_error:  # not a torch file, or one that needs arbitrary code
        if path.endswith(".pkl"):
            from ..engine.checkpoint import safe_pickle_load

            try:
                with open(path, "rb") as f:
                    obj = safe_pickle_load(f)
            except pickle.UnpicklingError as e:
                raise ConversionError(f"{path}: {e}") from e
            if isinstance(obj, Mapping) and "blobs" in obj:
                obj = obj["blobs"]
        else:
            raise ConversionError(
                f"{path}: not loadable with torch.load(weights_only=True) ({torch_error}); "
                "bestie_d2 does not execute pickled code from weight files"
            ) from torch_error
    return unwrap_state_dict(obj)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def save_conversion(conv: Conversion, output) -> str:
    """Write ``conv.weights`` as a checkpoint ``MODEL.WEIGHTS`` loads by exact name (atomic).

    The file is ``{"model": {name: tensor}, "__author__": "bestie_d2.convert_weights (<source>)",
    "matching_heuristics": False}``. ``output`` must not end in ``.pkl`` (detectron2 reads those
    as pickles of numpy arrays).
    """
    output = os.fspath(output)
    if output.endswith(".pkl"):
        raise ConversionError(f"write a .pth file, not {output!r} (.pkl files are read as numpy pickles)")
    weights = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in conv.weights.items())
    with atomic_open(output, "wb") as f:
        torch.save(
            {"model": weights, "__author__": f"bestie_d2.convert_weights ({conv.source})", "matching_heuristics": False},
            f,
        )
    return output


# ------------------------------------------------------------------------------------------------
# Checking
# ------------------------------------------------------------------------------------------------
@dataclass
class CoverageReport:
    """Converted weights vs a model's state dict (exact names).

    ``missing``: model keys the weights do not fill (they keep the model's initialisation);
    ``unexpected``: weight keys the model does not have; ``shape_mismatch``: ``(key, weights
    shape, model shape)``; ``filled``: number of model keys filled with equal shapes.
    """

    num_model_keys: int
    filled: int
    missing: List[str]
    unexpected: List[str]
    shape_mismatch: List[Tuple[str, tuple, tuple]]

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.shape_mismatch

    @property
    def complete(self) -> bool:
        return self.ok and not self.missing

    def summary(self, what: str = "model") -> str:
        lines = [
            f"  check  : {self.filled} of {self.num_model_keys} {what} tensors filled; "
            f"{len(self.missing)} keep the model's init; {len(self.unexpected)} unexpected; "
            f"{len(self.shape_mismatch)} shape mismatches"
        ]
        if self.missing:
            groups = OrderedDict()
            for k in self.missing:
                groups.setdefault(_prefix(k), []).append(k)
            lines.append("    not in the weights (model init): " + ", ".join(f"{p}* ({len(v)})" for p, v in groups.items()))
        if self.unexpected:
            lines.append("    unexpected: " + _abbreviate(self.unexpected, 8))
        for k, a, b in self.shape_mismatch[:8]:
            lines.append(f"    shape mismatch: {k}: weights {a} vs model {b}")
        return "\n".join(lines)


def _prefix(key: str, depth: int = 2) -> str:
    parts = key.split(".")
    return ".".join(parts[:depth]) + "." if len(parts) > depth else key


def check_against_state_dict(weights: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> CoverageReport:
    """Compare names and shapes of ``weights`` with a model's ``state_dict()``."""
    missing = [k for k in model_state if k not in weights]
    unexpected = [k for k in weights if k not in model_state]
    mism = [
        (k, tuple(weights[k].shape), tuple(model_state[k].shape))
        for k in weights
        if k in model_state and tuple(weights[k].shape) != tuple(model_state[k].shape)
    ]
    filled = sum(1 for k in weights if k in model_state) - len(mism)
    return CoverageReport(len(model_state), filled, missing, unexpected, mism)


def check_against_model(weights: Mapping[str, torch.Tensor], model: torch.nn.Module) -> CoverageReport:
    """:func:`check_against_state_dict` with ``model.state_dict()`` (persistent buffers included)."""
    return check_against_state_dict(weights, model.state_dict())


def model_state_shapes(cfg) -> "OrderedDict[str, torch.Tensor]":
    """The state dict of the model ``cfg`` builds, for name/shape checks only.

    Built on PyTorch's ``meta`` device (no memory, no initialisation: seconds less for HRNet-48)
    with the meta-architecture registered under ``MODEL.META_ARCHITECTURE``; if a model cannot be
    built that way, detectron2's ``build_model`` on CPU is used.
    """
    from detectron2.modeling import META_ARCH_REGISTRY, build_model

    try:
        with torch.device("meta"):
            model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        return model.state_dict()
    except Exception:  # noqa: BLE001 - fall back to the ordinary build
        cpu = cfg.clone()
        cpu.defrost()
        cpu.MODEL.DEVICE = "cpu"
        return build_model(cpu).state_dict()


def bn_counter() -> torch.Tensor:
    """A BatchNorm ``num_batches_tracked`` of 0 (long scalar)."""
    return torch.tensor(0, dtype=torch.long)

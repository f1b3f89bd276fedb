"""Convert published weights into a checkpoint ``MODEL.WEIGHTS`` loads by exact name.

    python -m bestie_d2.tools.convert_weights --source SOURCE --input IN --output OUT.pth \\
        [--target bestie|maskrcnn|pam] [--config-file CFG [KEY VALUE ...]] [--verbose]

Sources (see :mod:`bestie_d2.checkpoint.sources`): ``authors-bestie``, ``authors-pam``,
``hrnet-imagenet``, ``timm-hrnet``, ``torchvision-resnet``, ``torchvision-vgg16``,
``bestie-resnet``. Nothing is downloaded: ``--input`` is a local file.

Prints what was mapped, what was dropped (grouped by reason) and what was written without a
source tensor. With ``--config-file`` (plus optional ``KEY VALUE`` overrides, the same you will
pass to ``train_net.py``), the input convention is taken from that config, the model is built
(shapes only) and the weights are checked against it: the exit status is 1 when a weight has no place
in the model or the wrong shape, or when an ``authors-*`` checkpoint leaves a model tensor unfilled;
nothing is written then. Exit status 2: bad arguments or an input the chosen source does not
describe.
"""
import argparse
import sys
from typing import Dict

import bestie_d2  # noqa: F401  (prepares detectron2, registers the models)

__all__ = ["build_parser", "main", "cli"]


def build_parser() -> argparse.ArgumentParser:
    from bestie_d2.checkpoint import SOURCES

    p = argparse.ArgumentParser(
        prog="convert_weights",
        description=__doc__.split("\n\n")[0],
        epilog="sources:\n" + "\n".join(f"  {k:20s} {v.help} (target: {'/'.join(v.targets)})" for k, v in SOURCES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, choices=list(SOURCES), help="what --input is")
    p.add_argument("--input", required=True, help="the weight file to convert (.pth/.pt/.bin/.safetensors/.pkl)")
    p.add_argument("--output", required=True, help="the .pth to write (MODEL.WEIGHTS)")
    p.add_argument("--target", default=None, choices=["bestie", "maskrcnn", "pam"],
                   help="the model the weights are for (default: the source's first target)")
    p.add_argument("--config-file", default=None, metavar="FILE",
                   help="target config: input convention + a check of every tensor against the built model")
    p.add_argument("--bestie-config-file", default=None, metavar="FILE",
                   help="bestie-resnet only: the config the BESTIE model was trained with (default: RGB, torchvision statistics)")
    p.add_argument("--verbose", action="store_true", help="list every mapped / dropped / fresh tensor")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides of --config-file")
    return p


def _config(path, opts):
    from bestie_d2.config import load_config

    return load_config(path, list(opts or []) + ["MODEL.DEVICE", "cpu"])


def _config_differences(conv, cfg):
    """Config keys the weights assume that the config sets differently."""
    out = []
    for key, want in conv.config.items():
        node = cfg
        try:
            for part in key.split("."):
                node = node[part]
        except KeyError:
            continue
        have = node
        if isinstance(want, (list, tuple)):
            same = len(have) == len(want) and all(abs(float(a) - float(b)) < 1e-3 for a, b in zip(have, want))
        else:
            same = have == want
        if not same:
            out.append(f"{key}: the config has {have!r}, the weights assume {want!r}")
    return out


def main(argv=None) -> Dict:
    """Run the conversion; returns a summary dict (``mapped``, ``dropped``, ``fresh``, ``output``,
    ``check`` = None or {missing, unexpected, shape_mismatch, filled, model_keys}, ``ok``).
    Raises ``ConversionError`` / ``FileNotFoundError`` on bad input."""
    from bestie_d2.checkpoint import check_against_state_dict, convert, load_state_dict_file, save_conversion
    from bestie_d2.checkpoint.core import model_state_shapes

    args = build_parser().parse_args(argv)
    if args.opts and not args.config_file:
        raise SystemExit("convert_weights: KEY VALUE overrides need --config-file")
    cfg = _config(args.config_file, args.opts) if args.config_file else None
    bestie_cfg = _config(args.bestie_config_file, []) if args.bestie_config_file else None
    state = load_state_dict_file(args.input)
    conv = convert(args.source, state, args.target, cfg, bestie_cfg=bestie_cfg)
    print(f"input  : {args.input} ({len(state)} tensors)")
    print(conv.summary(verbose=args.verbose))

    result = {
        "source": args.source,
        "target": conv.target,
        "mapped": len(conv.mapped),
        "dropped": len(conv.dropped),
        "fresh": len(conv.fresh),
        "output": None,
        "check": None,
        "ok": True,
    }
    if cfg is not None:
        for line in _config_differences(conv, cfg):
            print(f"  WARNING: {line}")
        report = check_against_state_dict(conv.weights, model_state_shapes(cfg))
        print(report.summary())
        result["check"] = {
            "model_keys": report.num_model_keys,
            "filled": report.filled,
            "missing": report.missing,
            "unexpected": report.unexpected,
            "shape_mismatch": report.shape_mismatch,
        }
        must_fill = args.source.startswith("authors-")
        if not report.ok or (must_fill and report.missing):
            result["ok"] = False
            print(f"NOT written: the weights do not fit {args.config_file}" +
                  (" (an authors' checkpoint must fill every model tensor)" if must_fill and report.missing else ""))
            return result
    result["output"] = save_conversion(conv, args.output)
    print(f"wrote  : {args.output}  (use: MODEL.WEIGHTS {args.output})")
    return result


def cli(argv=None) -> int:
    """Console script ``bestie-convert-weights``: 0 on success, 1 when the check fails, 2 on bad input."""
    from bestie_d2.checkpoint import ConversionError
    from bestie_d2.config import ConfigKeyError

    try:
        res = main(argv)
    except (ConversionError, FileNotFoundError, ConfigKeyError) as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 2
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(cli())
